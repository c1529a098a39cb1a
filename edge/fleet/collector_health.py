"""The collector's running figures, the health message made of them, and warnings that a
misbehaving device cannot flood the log with (one line per device and cause per hour)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge import __version__


@dataclass
class Counters:
    """The collector's running figures (published in its health message)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    below_min_cell: int = 0
    batches: int = 0
    db_errors: int = 0
    stale_acks: int = 0  # messages of a dropped connection: the broker redelivers them
    last_commit_ms: float = 0.0
    connected: bool = False
    db_ok: bool = False
    started: float = field(default_factory=time.monotonic)
    rejected_by_kind: Counter[str] = field(default_factory=Counter)  # edge.fleet.messages.REJECTION_KINDS


class HourlyWarnings:
    """One log line per key (a device and what is wrong) per ``every_s``, saying how many more there
    were: a device that sends a bad message every window must not fill the log."""

    def __init__(self, logger: logging.Logger, every_s: float = 3600.0) -> None:
        self._log = logger
        self._every_s = every_s
        self._last: dict[tuple[str, ...], float] = {}
        self._held: Counter[tuple[str, ...]] = Counter()

    def warn(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every_s:
            self._held[key] += 1
            return
        held = self._held.pop(key, 0)
        suffix = f" ({held} more like it in the last {self._every_s / 3600:g} h, not logged)" if held else ""
        self._log.warning(message + suffix, *args)
        self._last[key] = now


def health_message(c: Counters, collector: str, queued: int) -> dict[str, Any]:
    """The collector's retained health message (its own topic; never a device's data)."""
    return {
        "schema": 1,
        "collector": collector,
        "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": __version__,
        "uptime_s": round(time.monotonic() - c.started, 1),
        "connected": c.connected,
        "database_ok": c.db_ok,
        "received": c.received,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "rejected": c.rejected,
        "rejected_by_kind": dict(sorted(c.rejected_by_kind.items())),
        "statuses": c.statuses,
        "below_min_cell": c.below_min_cell,
        "batches": c.batches,
        "db_errors": c.db_errors,
        "stale_acks": c.stale_acks,
        "queue": queued,
        "last_commit_ms": round(c.last_commit_ms, 2),
    }
