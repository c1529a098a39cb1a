"""The health message: the daemon's running figures plus what a Raspberry Pi reports about itself."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge.state_store import StateStore

HEALTH_SCHEMA = 1


def _read_cpu_temp_c(path: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware).
_THROTTLE_BITS = {
    "under_voltage": 0,
    "freq_capped": 1,
    "throttled": 2,
    "soft_temp_limit": 3,
    "under_voltage_occurred": 16,
    "freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}


def _read_throttled() -> dict[str, Any] | None:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2, check=True).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
    return {"raw": hex(value), **{name: bool(value >> bit & 1) for name, bit in _THROTTLE_BITS.items()}}


def pi_health(spool: StateStore | None = None) -> dict[str, Any]:
    """CPU temperature, Raspberry Pi throttling flags (None where unavailable) and spool figures.

    Under-voltage and thermal throttling are the usual causes of a Pi that
    "works on the bench" but drops frames in the field, so they are reported.
    """
    health: dict[str, Any] = {"cpu_temp_c": _read_cpu_temp_c(), "throttled": _read_throttled()}
    if spool is not None:
        health["spool"] = spool.stats()
    return health


def build_health(
    fields: Mapping[str, Any], *, device_id: str, spool: StateStore | None = None, now: float | None = None
) -> dict[str, Any]:
    """A health message: the caller's ``fields`` plus device, timestamp and (when given) spool figures."""
    ts = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    msg: dict[str, Any] = {
        "schema": HEALTH_SCHEMA,
        "device": device_id,
        "ts": ts.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    msg.update(fields)
    if spool is not None:
        msg["spool"] = spool.stats(now)
    return msg
