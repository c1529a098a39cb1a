#!/usr/bin/env python3
"""The real daemon against a real Home Assistant: MQTT discovery, states, availability, forget.

The unit and broker tests check what the daemon publishes; only Home Assistant itself can say
what it makes of it (entity ids, which keys it honours, what a null renders as, what it logs).
This script installs a pinned Home Assistant Core in its own Python 3.13 venv (cached, keyed by
the lock's hash), starts it headless next to a private mosquitto, creates the owner through the
onboarding REST API, sets up MQTT through the REST config flow, and then runs ``edge run`` on a
generated looping video and checks over REST and the websocket API that:

1. the device and one entity per discovery config appear (entity ids are reported against the
   configs' ``default_entity_id``), the viewer sensors (Viewers, Viewer rate %, Attention and
   Median attention in s, duration) and the people sensors (People, People with a face,
   Passers-by, Stayers, Crossings in/out of a counting line, occupancy peak and mean of two zones,
   no unit) with their units;
2. every entity's state follows each window, the viewer and people sensors' included (the daemon
   starts after Home Assistant's birth message: a state published before it is lost);
3. SIGKILL mid-window makes every entity unavailable through the Last Will;
4. a restart with ``attributes.gender: false``, without the counting line and one of the zones (and
   ``min_cell: 3``, so that cells are suppressed) publishes the killed run's checkpointed window,
   removes the gender, crossing and that zone's entities, and they stay away;
5. SIGSTOP (a hung daemon, a dead network) makes them unavailable after the keepalive, SIGCONT
   brings them back;
6. a restart with ``attention.enabled: false`` removes the viewer entities, and they stay away;
7. a restart with ``people.enabled: false`` removes the people entities, and they stay away;
8. ``edge forget`` removes the device from Home Assistant;
9. ``home-assistant.log`` has no WARNING/ERROR about mqtt, the device or templates;
10. with ``--statistics``: 5-minute long-term statistics of ``visitors_today`` (Home Assistant's
    wall clock shifted with libfaketime so that a 5-minute boundary falls early in the run).

A failed assertion in 4, 6 or 7 is recorded and the later phases still run. It is a script, not a pytest
module (a minute or two, a 0.8 GB venv, Python >= 3.13). Run it with the project's venv
(``.venv/bin/python tests/ha/check_ha.py run``). Exit status: 0 when every assertion held, 1 when
one failed (the temporary directory is kept), 2 on a setup error, 3 when no Python >= 3.13 is
available (SKIPPED). The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE.parent) not in sys.path:  # the tests' broker launcher and poll helper (tests/), run as a script
    sys.path.insert(0, str(HERE.parent))
from mqtt_broker import MOSQUITTO, MOSQUITTO_MISSING, Broker, accepts, free_port  # noqa: E402
from polling import poll  # noqa: E402

PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
LOCK = HERE / "ha-requirements.lock"
TOOL_REQUIREMENTS = HERE / "tool-requirements.txt"  # uv, to install the HA venv from the lock
HA_VERSION = "2025.4.4"  # the newest release whose Requires-Python admits 3.13.0 (later ones need >= 3.13.2)
# Requirements HA checks at run time for this config that homeassistant itself does not depend on
# (found with ha_requirements.py; the versions are those of HA's package_constraints.txt).
EXTRA_REQUIREMENTS = (
    "paho-mqtt==2.1.0",  # mqtt
    "home-assistant-frontend==20250411.0",  # frontend (a DEFAULT_INTEGRATION; recovery mode without it)
    "pyotp==2.8.0",  # auth.mfa_modules.totp, loaded at core start: the core fails to initialise without it
    "PyQRCode==1.2.1",  # auth.mfa_modules.totp
)
CHECKED_DOMAINS = ("homeassistant", "http", "api", "logger", "recorder", "mqtt", "sensor")
HOST = "127.0.0.1"
DEVICE_ID = "ha-check"
DISCOVERY_PREFIX = "homeassistant"
WINDOW_S = 5
# The sensors of windows made with attention on (edge.sinks.discovery): object id -> (unit, device class).
ATTENTION_SENSORS = {
    "viewers": (None, None),
    "viewer_rate": ("%", None),
    "attention_sum": ("s", "duration"),
    "attention_median": ("s", "duration"),
}
# The sensors of windows made with people counting on, a counting line and zones: object id -> (unit,
# device class); all counts like Visitors (no unit).
PEOPLE_SENSORS = dict.fromkeys(("people", "people_with_face", "passers_by", "stayers"), (None, None))
LINE_SENSORS = dict.fromkeys(("crossings_in", "crossings_out"), (None, None))
# The first run counts across a vertical line in the middle and in two zones, the frame's halves;
# "2nd_floor" is no Jinja identifier (its templates subscript it) and goes at the restart without gender.
LINE = {"start": [0.5, 0.0], "end": [0.5, 1.0], "in_side": "left"}
ZONES = {"aisle": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "2nd_floor": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
DROPPED_ZONE = "2nd_floor"
ZONE_SENSORS = {f"zone_{z}_{figure}": (None, None) for z in ZONES for figure in ("peak", "mean")}
EXIT_FAILED, EXIT_SETUP, EXIT_SKIPPED = 1, 2, 3
# Problem lines in home-assistant.log that have nothing to do with the daemon (this machine's build).
UNRELATED_LOG = (
    re.compile(r"zlib_ng and isal are not available"),
    re.compile(r"libturbojpeg"),
    # Home Assistant's own timing warnings ("Updating state for sensor.x (...) took 0.432 seconds",
    # "Update of sensor.x is taking over 10 seconds"): they name our entities but say only that the
    # machine is busy; every functional assertion stands on its own.
    re.compile(r"Updating state for \S+ .*took [0-9.]+ seconds"),
    re.compile(r"Update of \S+ is taking over [0-9.]+ seconds"),
    # HA's MQTT client waiting on an acknowledgement it has not read yet: HA's own event loop stalled
    # (seen on a loaded machine while HA removed entities one every few seconds, the broker's log
    # showing the UNSUBACK sent at once; also after the statistics phase shifts HA's clock).
    re.compile(r"\[homeassistant\.components\.mqtt\.client\] No ACK from MQTT server in [0-9.]+ seconds"),
)
RELEVANT_LOG = re.compile(r"mqtt|value_json|template|" + re.escape(DEVICE_ID) + "|" + DEVICE_ID.replace("-", "_"), re.I)

T = TypeVar("T")


class CheckFailed(AssertionError):
    """An assertion about Home Assistant or the daemon did not hold."""


class SetupError(RuntimeError):
    """The check could not be set up (install, missing tool): not a finding about the daemon."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy (an exception other than CheckFailed counts as
    not yet, and is named if time runs out); CheckFailed after ``timeout`` seconds."""
    last_exc: BaseException | None = None

    def attempt() -> T | None:
        nonlocal last_exc
        try:
            return fn()
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - polling: remember and retry
            last_exc = exc
            return None

    value = poll(attempt, timeout, interval)
    if not value:
        raise CheckFailed(
            f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else "")
        )
    return value


def clean_env() -> dict[str, str]:
    """The environment without the driver's venv, for processes that run another interpreter."""
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}


# --------------------------------------------------------------------------- Python >= 3.13 and the cached venv


def python_version(exe: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-I", "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=20,
            env=clean_env(),
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1]), int(out[2])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def find_python(explicit: str | None) -> tuple[str, tuple[int, int, int]] | None:
    """A Python >= 3.13 for Home Assistant: ``--python``/``$EDGE_HA_PYTHON``, else pyenv's versions
    dir, else PATH. The 3.13 series is preferred (the lock's binary wheels are built for it)."""
    if explicit:
        version = python_version(explicit)
        if version is None or version < (3, 13):
            raise SetupError(f"--python {explicit}: not a Python >= 3.13 ({version})")
        return explicit, version
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob("3.*/bin/python3"))]
    candidates += [w for name in ("python3.13", "python3.14", "python3") if (w := shutil.which(name))]
    found: dict[str, tuple[int, int, int]] = {}
    for cand in candidates:
        real = os.path.realpath(cand)
        if real not in found and (version := python_version(cand)) is not None and version >= (3, 13):
            found[real] = version
    if not found:
        return None
    return min(found.items(), key=lambda item: (item[1][:2] != (3, 13), -item[1][2], item[1]))


def cache_root() -> Path:
    base = os.environ.get("EDGE_HA_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-ha-check"


def venv_dir(python: tuple[int, int, int]) -> Path:
    """The cached HA venv for this lock and interpreter version."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    return cache_root() / f"ha-{HA_VERSION}-py{'.'.join(map(str, python))}-{digest}"


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One installer at a time per cache (two CI jobs on one machine)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / "install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_logged(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(cmd))
    try:
        return subprocess.run(cmd, check=True, text=True, **kw)
    except subprocess.CalledProcessError as exc:
        raise SetupError(f"{cmd[0]} failed with exit status {exc.returncode}") from exc


def find_uv() -> str:
    """``$UV``, else the pinned uv in its own venv in the cache (created on first use with pip)."""
    if os.environ.get("UV"):
        return os.environ["UV"]
    pin = TOOL_REQUIREMENTS.read_text()
    tools = cache_root() / ("uv-" + hashlib.sha256(pin.encode()).hexdigest()[:12])
    uv = tools / "bin" / "uv"
    if not (tools / ".complete").exists():
        shutil.rmtree(tools, ignore_errors=True)
        run_logged([sys.executable, "-m", "venv", str(tools)])
        run_logged([str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(TOOL_REQUIREMENTS)])
        (tools / ".complete").write_text(pin)
    return str(uv)


def install(python: str, version: tuple[int, int, int], resolve: bool = False) -> dict[str, Any]:
    """(Re)create the cached HA venv: from the lock, or resolved afresh (the lock is then rewritten)."""
    uv = find_uv()
    t0 = time.monotonic()
    env = clean_env()
    if resolve:
        scratch = cache_root() / "resolve"
        run_logged([uv, "venv", "--clear", "-q", "-p", python, str(scratch)], env=env)
        py = str(scratch / "bin" / "python")
        # HA pins its tested versions in homeassistant/package_constraints.txt inside the wheel. Without
        # them the resolver takes the newest transitive releases (bleak 3, habluetooth 6, ...).
        run_logged([uv, "pip", "install", "-q", "--no-deps", "-p", py, f"homeassistant=={HA_VERSION}"], env=env)
        constraints = subprocess.run(
            [py, "-c", "import homeassistant, os; print(os.path.dirname(homeassistant.__file__))"],
            check=True,
            text=True,
            capture_output=True,
            env=env,
        ).stdout.strip()
        run_logged(
            [uv, "pip", "install", "-q", "-p", py, "-c", constraints + "/package_constraints.txt"]
            + [f"homeassistant=={HA_VERSION}", *EXTRA_REQUIREMENTS],
            env=env,
        )
        frozen = subprocess.run(
            [uv, "pip", "freeze", "-p", py], check=True, text=True, capture_output=True, env=env
        ).stdout
        LOCK.write_text(
            f"# homeassistant=={HA_VERSION} on Python 3.13, resolved with HA's package_constraints.txt plus\n"
            f"# {' '.join(EXTRA_REQUIREMENTS)}\n" + frozen
        )
        shutil.rmtree(scratch, ignore_errors=True)
        log(f"wrote {LOCK}")
    venv = venv_dir(version)  # keyed by the lock's hash
    marker = venv / ".complete"
    marker.unlink(missing_ok=True)
    run_logged([uv, "venv", "--clear", "-q", "-p", python, str(venv)], env=env)
    py = str(venv / "bin" / "python")
    run_logged([uv, "pip", "install", "-q", "--compile-bytecode", "-p", py, "-r", str(LOCK)], env=env)
    check_requirements(venv)
    info = {"install_s": round(time.monotonic() - t0, 1), "venv": str(venv), "python": python}
    marker.write_text(json.dumps(info))
    log(f"installed Home Assistant {HA_VERSION} in {info['install_s']} s: {venv}")
    return info


def check_requirements(venv: Path) -> None:
    """Every requirement HA would pip-install at run time for CHECKED_DOMAINS is already in the venv."""
    r = subprocess.run(
        [str(venv / "bin" / "python"), str(HERE / "ha_requirements.py"), "--check", *CHECKED_DOMAINS],
        check=False,
        text=True,
        capture_output=True,
        env=clean_env(),
    )
    if r.returncode != 0:
        raise SetupError(f"the HA venv lacks run-time requirements:\n{r.stdout}{r.stderr}")


def ensure_venv(python: str, version: tuple[int, int, int]) -> tuple[Path, dict[str, Any]]:
    """The cached venv, installed first if it is missing or half-installed."""
    venv = venv_dir(version)
    with cache_lock():
        if (venv / ".complete").exists():
            return venv, {"cached": True, "venv": str(venv)}
        return venv, {"cached": False, **install(python, version)}


# --------------------------------------------------------------------------- processes


CONFIGURATION_YAML = """\
homeassistant:
  name: Edge HA check
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
  language: en
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
logger:
  default: warning
  logs:
    homeassistant.bootstrap: info
    homeassistant.components.mqtt: info
recorder:
  commit_interval: 1
"""


def find_libfaketime() -> str | None:
    if os.environ.get("LIBFAKETIME"):
        return os.environ["LIBFAKETIME"] if os.path.exists(os.environ["LIBFAKETIME"]) else None
    found = sorted(
        glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1")
    )
    return found[0] if found else None


class HomeAssistantProc:
    def __init__(self, venv: Path, config_dir: Path, skip_pip: bool, clock_offset_s: int | None) -> None:
        self.port = free_port()
        self.config_dir = config_dir
        self.log_file = config_dir / "home-assistant.log"
        (config_dir / "configuration.yaml").write_text(CONFIGURATION_YAML.format(port=self.port))
        env = clean_env()
        # HA installs missing requirements with `python -m uv pip install`: make that fail at once (and name
        # the package in the log) instead of reaching for an index or uv's cache.
        env.update(UV_OFFLINE="1", UV_NO_CACHE="1", PIP_NO_INDEX="1")
        if clock_offset_s is not None:
            libfaketime = find_libfaketime()
            assert libfaketime is not None
            # HA's wall clock runs ahead by the offset; its monotonic clock (asyncio timers) is left alone.
            env.update(LD_PRELOAD=libfaketime, FAKETIME=f"+{clock_offset_s}s", FAKETIME_DONT_FAKE_MONOTONIC="1")
        cmd = [str(venv / "bin" / "python"), "-m", "homeassistant", "--config", str(config_dir)]
        if skip_pip:
            cmd.append("--skip-pip")
        self.started = time.monotonic()
        self._out = open(config_dir / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.base = f"http://{HOST}:{self.port}"

    def alive_or_fail(self) -> None:
        if self.proc.poll() is not None:
            raise CheckFailed(f"Home Assistant exited with {self.proc.returncode}; see {self.config_dir}/stdout.log")
        # On a core failure HA logs this and then hangs instead of exiting.
        if "Home Assistant core failed to initialize" in self.log_text():
            raise CheckFailed("Home Assistant core failed to initialize:\n" + "\n".join(problems(self.log_text())[:20]))

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return time.monotonic() - t0


class DaemonProc:
    """``edge run`` as a real process (SIGKILL must be a real SIGKILL), its log in the work dir."""

    def __init__(self, python: str, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._out = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [python, "-m", "edge.cli", "run", "--config", str(config)],
            cwd=config.parent,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()

    def alive_or_fail(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise CheckFailed(f"the daemon exited with {self.proc.returncode}:\n{tail}")

    def signal(self, sig: signal.Signals, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
            raise CheckFailed(f"the daemon did not exit within {timeout:.0f}s of {sig.name}") from None
        finally:
            self._out.close()
        return rc

    def problems(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [line for line in text.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]


# --------------------------------------------------------------------------- HTTP / websocket


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        auth: bool = True,
        raw: bool = False,
    ) -> Any:
        headers = {}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        if status not in (200, 201):
            raise CheckFailed(f"{method} {path} -> {status}: {body[:500]!r}")
        if raw:
            return body.decode()
        return json.loads(body) if body else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {}, **kw)

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.get("/api/states")}


class WebSocket:
    """Just enough RFC 6455 client for HA's /api/websocket (text frames, ping/pong, no extensions)."""

    def __init__(self, port: int, token: str, timeout: float = 30) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /api/websocket HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CheckFailed("websocket handshake: connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise CheckFailed(f"websocket handshake refused: {head[:200]!r}")
        self.next_id = 1
        hello = self.recv()
        if hello.get("type") != "auth_required":
            raise CheckFailed(f"websocket: expected auth_required, got {hello}")
        self.send({"type": "auth", "access_token": token})
        reply = self.recv()
        if reply.get("type") != "auth_ok":
            raise CheckFailed(f"websocket auth failed: {reply}")

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise CheckFailed("websocket closed by Home Assistant")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, msg: dict[str, Any]) -> None:
        self._send_frame(0x1, json.dumps(msg).encode())

    def recv(self) -> dict[str, Any]:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._exact(8))
            mask = self._exact(4) if b1 & 0x80 else None
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise CheckFailed(f"websocket closed by Home Assistant: {payload!r}")
            parts.append(payload)
            if b0 & 0x80:
                result: dict[str, Any] = json.loads(b"".join(parts))
                return result

    def call(self, type_: str, **kw: Any) -> Any:
        msg_id = self.next_id
        self.next_id += 1
        self.send({"id": msg_id, "type": type_, **kw})
        while True:
            msg = self.recv()
            if msg.get("id") == msg_id and msg.get("type") == "result":
                if not msg.get("success"):
                    raise CheckFailed(f"websocket {type_} failed: {msg.get('error')}")
                return msg.get("result")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()


# --------------------------------------------------------------------------- what the broker carries


class Watcher:
    """An MQTT client that records HA's birth message, the daemon's windows and status, and the
    device's retained discovery configs: the ground truth that HA's view is compared with."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.cv = threading.Condition()
        self.birth_at: float | None = None
        self.windows: list[tuple[float, dict[str, Any]]] = []  # (arrival, payload)
        self.configs: dict[str, dict[str, Any]] = {}  # retained discovery config topic -> config
        self.config_events: list[tuple[float, str, bool]] = []  # (arrival, topic, config or empty payload)
        self.status: list[tuple[float, str]] = []
        self.filters = [
            f"{DISCOVERY_PREFIX}/status",
            f"edge/{DEVICE_ID}/#",
            f"{DISCOVERY_PREFIX}/sensor/{DEVICE_ID}/+/config",
        ]
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edge-ha-check-watcher")
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in self.filters])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise CheckFailed("watcher: no SUBACK from mosquitto")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        with self.cv:
            if msg.topic == f"{DISCOVERY_PREFIX}/status":
                if msg.payload == b"online" and self.birth_at is None:
                    self.birth_at = now
            elif msg.topic.endswith("/config"):
                if msg.payload:
                    self.configs[msg.topic] = json.loads(msg.payload)
                else:
                    self.configs.pop(msg.topic, None)
                self.config_events.append((now, msg.topic, bool(msg.payload)))
            elif msg.topic == f"edge/{DEVICE_ID}/counts":
                self.windows.append((now, json.loads(msg.payload)))
            elif msg.topic == f"edge/{DEVICE_ID}/status":
                self.status.append((now, msg.payload.decode()))
            self.cv.notify_all()

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], list[tuple[float, dict[str, Any]]]]:
        with self.cv:
            return dict(self.configs), list(self.windows)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- HA's view of one window

_TEMPLATE = re.compile(r"\{\{ value_json((?:\.[A-Za-z_]\w*|\[\"[^\"]*\"\])+) \}\}")
_SEGMENT = re.compile(r"\.([A-Za-z_]\w*)|\[\"([^\"]*)\"\]")
_PERCENT = re.compile(
    r"\{\{ \(value_json\.([A-Za-z_]\w*) \* 100\) \| round\(1\) if value_json\.\1 is number else none \}\}"
)
Reader = tuple[str, Callable[[dict[str, Any]], Any]]  # (what it reads, payload -> the value HA shows)


def template_path(template: str) -> tuple[str, ...]:
    """``{{ value_json.age["65+"] }}`` -> ("age", "65+"): the payload value a sensor shows."""
    m = _TEMPLATE.fullmatch(template)
    if not m:
        raise CheckFailed(f"unexpected value_template {template!r}: this check reads plain value_json paths and shares")
    return tuple(a or b for a, b in _SEGMENT.findall(m.group(1)))


def template_reader(template: str) -> Reader:
    """The payload value a sensor shows: a plain path, or a 0..1 share as a percentage rounded to 0.1
    (Jinja's round is Python's; a null or missing share renders "None", unknown in HA)."""
    m = _PERCENT.fullmatch(template)
    if m is None:
        path = template_path(template)
        return ".".join(path), lambda payload: lookup(payload, path)
    key = m.group(1)

    def percent(payload: dict[str, Any]) -> Any:
        share = payload.get(key)
        return round(share * 100, 1) if isinstance(share, int | float) and not isinstance(share, bool) else None

    return f"{key} * 100", percent


_MISSING = object()


def lookup(payload: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = payload
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def state_matches(state: str, value: Any) -> bool:
    """HA's state string for a template that rendered ``value``: a null renders "None", which the MQTT
    sensor turns into "unknown"; a missing key keeps the old state (and logs a template error)."""
    if value is None:
        return state == "unknown"
    if value is _MISSING or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isclose(float(state), float(value), rel_tol=1e-9, abs_tol=1e-9)
    except ValueError:
        return False


def is_gender(unique_id: str) -> bool:
    """A gender cell's entity, or the viewers among one (``gender_female``, ``viewers_gender_female``)."""
    return "_gender_" in unique_id


def is_attention(unique_id: str) -> bool:
    """An entity that only windows made with attention on feed: the viewer sensors, viewers-by cells."""
    obj = unique_id.removeprefix(f"{DEVICE_ID}_")
    return obj in ATTENTION_SENSORS or obj.startswith("viewers_")


def is_people(unique_id: str) -> bool:
    """An entity that only windows made with people counting on feed: counts, crossings, zones."""
    obj = unique_id.removeprefix(f"{DEVICE_ID}_")
    return obj in PEOPLE_SENSORS or obj in LINE_SENSORS or obj.startswith("zone_")


def is_line_or_dropped_zone(unique_id: str) -> bool:
    """A crossing entity, or one of the zone that the restart without gender no longer configures."""
    obj = unique_id.removeprefix(f"{DEVICE_ID}_")
    return obj in LINE_SENSORS or obj.startswith(f"zone_{DROPPED_ZONE}_")


def ha_slug(text: str) -> str:
    """HA's entity id slug for ASCII text (homeassistant.util.slugify): runs of other characters -> "_"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --------------------------------------------------------------------------- home-assistant.log

LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (\w+) ")


def log_records(text: str) -> Iterator[tuple[str, str]]:
    """(level, record) for each record of home-assistant.log; tracebacks stay with their record."""
    level, lines = "", list[str]()
    for line in text.splitlines():
        m = LOG_RECORD.match(line)
        if m:
            if lines:
                yield level, "\n".join(lines)
            level, lines = m.group(1), [line]
        elif lines:
            lines.append(line)
    if lines:
        yield level, "\n".join(lines)


def problems(text: str) -> list[str]:
    return [rec for lvl, rec in log_records(text) if lvl in ("WARNING", "ERROR", "CRITICAL")]


def sort_problems(found: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(unrelated, relevant, other): HA's own noise, records about mqtt/the device/templates (a
    failure), and the rest (reported, not a failure)."""
    unrelated = [p for p in found if any(r.search(p) for r in UNRELATED_LOG)]
    relevant = [p for p in found if p not in unrelated and RELEVANT_LOG.search(p)]
    other = [p for p in found if p not in unrelated and p not in relevant]
    return unrelated, relevant, other


def distinct(records: list[str]) -> list[str]:
    """Records without their timestamps, each once, with how often it occurred."""
    counts: dict[str, int] = {}
    for rec in records:
        key = LOG_RECORD.sub(lambda m: m.group(1) + " ", rec, count=1)[:800]
        counts[key] = counts.get(key, 0) + 1
    return [f"{n}x {key}" for key, n in counts.items()]


# --------------------------------------------------------------------------- the check


def write_scene(path: Path) -> Path:
    """20 s of four visitors in two lanes (looped by the daemon): counts in most 5 s windows."""
    from edge.scenes import Scene, Visitor, write_video

    def walker(enter: float, dwell: float, lane: float, mirror: bool = False) -> Visitor:
        return Visitor(enter, enter + dwell, lane, 64.0, 1 if lane < 0.5 else -1, mirror, (1.0, 1.0, 1.0))

    scene = Scene(
        640,
        480,
        10.0,
        20.0,
        (walker(0.5, 7.0, 0.3), walker(3.0, 7.0, 0.7, True), walker(10.0, 7.0, 0.3, True), walker(12.0, 7.0, 0.7)),
    )
    return write_video(scene, path)


def people_section(enabled: bool = True, line: bool = True, zones: tuple[str, ...] = tuple(ZONES)) -> dict[str, Any]:
    """The daemon's ``people`` section: counting on, across ``LINE`` (if ``line``) and in ``zones``."""
    section: dict[str, Any] = {"enabled": enabled}
    if enabled and line:
        section["line"] = LINE
    if enabled and zones:
        section["zones"] = {z: ZONES[z] for z in zones}
    return section


def daemon_config(
    workdir: Path,
    video: Path,
    broker_port: int,
    min_cell: int,
    attention: bool = True,
    people: dict[str, Any] | None = None,
    **attributes: bool,
) -> dict[str, Any]:
    return {
        "device_id": DEVICE_ID,
        "site": "ha-check",
        "source": {"type": "file", "path": str(video), "loop": True, "realtime": True},
        "detector": {"min_face_px": 40},  # the scene's faces are 64 px: fewer detector passes per frame
        "attributes": {"age": True, "gender": True, "expression": True, **attributes},
        # checkpoint_s 1: a SIGKILL always leaves a checkpointed open window for the next run to publish
        "aggregation": {"window_s": WINDOW_S, "min_cell": min_cell, "checkpoint_s": 1},
        "attention": {"enabled": attention},
        "people": people if people is not None else people_section(),
        "sink": {
            "type": "mqtt",
            "host": HOST,
            "port": broker_port,
            "keepalive": 5,
            "health_interval_s": 2,
        },
        "state_dir": str(workdir / "state"),
        "log_level": "INFO",
    }


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timings: dict[str, float] = {}
        self.findings: dict[str, Any] = {}
        self.t0 = time.monotonic()
        self.api: Http
        self.ws: WebSocket
        self.watcher: Watcher
        self.daemons: list[DaemonProc] = []
        self.daemon_config: Path | None = None  # the last daemon's config (edge forget reads it)
        self.workdir: Path
        self.killed_checkpoint: str | None = None  # window start of the checkpoint a SIGKILL left behind
        self.windows_at_kill = 0
        self.failures: list[str] = []  # assertions that failed without stopping the later phases
        self.first_today_at: datetime | None = None  # HA clock: visitors_today's first numeric state

    def soft_fail(self, msg: str) -> None:
        """Record a failed assertion and go on: the later phases still have something to say."""
        log(f"FAILED (going on): {msg}")
        self.failures.append(msg)

    def mark(self, name: str, since: float) -> float:
        self.timings[name] = round(time.monotonic() - since, 2)
        log(f"{name}: {self.timings[name]} s")
        return self.timings[name]

    # ------------------------------------------------------------------ driver

    def run(self, python: str, version: tuple[int, int, int]) -> int:
        args = self.args
        t = time.monotonic()
        venv, info = ensure_venv(python, version)
        self.findings["ha_venv"] = info
        self.mark("venv_ready_s", t)
        offset = None
        if args.statistics:
            if find_libfaketime() is None:
                log("SKIPPED statistics: libfaketime is not installed (apt-get install libfaketime)")
                self.findings["statistics"] = "skipped: libfaketime not installed"
            else:
                # HA's wall clock is shifted so that a 5-minute boundary (statistics compile) falls
                # --stats-lead seconds after HA starts, instead of anywhere in the next 5 minutes.
                target = time.time() + args.stats_lead
                offset = int(-(-target // 300) * 300 - target) % 300
                self.findings["clock_offset_s"] = offset
        self.workdir = Path(tempfile.mkdtemp(prefix="edge-ha-check-"))
        config_dir = self.workdir / "config"
        config_dir.mkdir()
        broker: Broker | None = None
        ha: HomeAssistantProc | None = None
        ok = False
        try:
            if MOSQUITTO_MISSING:
                raise SetupError(f"mosquitto not found ({MOSQUITTO}): apt-get install mosquitto")
            broker = Broker(self.workdir)  # the tests' launcher: anonymous, its log in workdir/mosquitto.log
            broker.start()
            t = time.monotonic()
            video = write_scene(self.workdir / "scene.avi")
            self.mark("scene_video_s", t)
            ha = HomeAssistantProc(venv, config_dir, skip_pip=args.skip_pip, clock_offset_s=offset)
            log(f"HA on :{ha.port}, mosquitto on :{broker.port}, work dir {self.workdir}")
            self.check(ha, broker, video, offset is not None)
            ok = not self.failures
        except CheckFailed as exc:
            log(f"FAILED: {exc}")
            self.failures.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug here or an unexpected answer: still clean up and report
            traceback.print_exc()
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            for daemon in self.daemons:
                daemon.close()
            with contextlib.suppress(AttributeError):
                self.ws.close()
            with contextlib.suppress(AttributeError):
                self.watcher.close()
            if ha:
                self.timings["ha_stop_s"] = round(ha.stop(), 2)
                ok = self.read_log(ha) and ok
            if broker:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    broker.stop()
                broker.kill()  # if it ignored SIGTERM
            self.findings["daemon_log_problems"] = [p for d in self.daemons for p in d.problems()]
            self.findings["failures"] = self.failures
            self.timings["total_s"] = round(time.monotonic() - self.t0, 1)
            if args.keep or not ok:
                log(f"kept {self.workdir}")
                self.findings["workdir"] = str(self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        summary = {"ok": ok, "homeassistant": HA_VERSION, "python": python, "timings": self.timings, **self.findings}
        print(json.dumps(summary, default=str))
        return 0 if ok else EXIT_FAILED

    def check(self, ha: HomeAssistantProc, broker: Broker, video: Path, statistics: bool) -> None:
        self.start_ha(ha, broker)
        configs_a, ids_a = self.phase_discovery(video, broker)
        self.phase_windows("first run", configs_a, ids_a, windows=3)
        self.phase_kill(ids_a)
        restarted = time.monotonic()
        configs_b, ids_b = self.phase_restart_without_gender(video, broker, ids_a)
        self.phase_windows("restart without gender", configs_b, ids_b, windows=2)
        self.assert_stays_away("gender", is_gender, restarted)
        self.assert_stays_away("line and zone", is_line_or_dropped_zone, restarted)
        self.phase_freeze(ids_b)
        restarted = time.monotonic()
        off = {"attention": False, "people": people_section(zones=("aisle",), line=False), "gender": False}
        configs_c, ids_c = self.phase_restart_without("attention", is_attention, video, broker, ids_b, "daemon-c", off)
        self.phase_windows("restart without attention", configs_c, ids_c, windows=2)
        self.assert_stays_away("attention", is_attention, restarted)
        restarted = time.monotonic()
        off["people"] = people_section(enabled=False)
        configs_d, ids_d = self.phase_restart_without("people", is_people, video, broker, ids_c, "daemon-d", off)
        self.phase_windows("restart without people", configs_d, ids_d, windows=2)
        self.assert_stays_away("people", is_people, restarted)
        if statistics:
            self.phase_statistics(ids_d)
        self.phase_forget(ids_d)

    # ------------------------------------------------------------------ HA up, owner, MQTT

    def start_ha(self, ha: HomeAssistantProc, broker: Broker) -> None:
        api = self.api = Http(ha.base)

        # /api/onboarding needs no auth (polling /api/ unauthenticated logs a warning per try).
        def onboarding() -> Any:
            ha.alive_or_fail()
            return api.get("/api/onboarding", auth=False) if accepts(ha.port) else None

        wait_for("HA's HTTP server", onboarding, self.args.start_timeout, 0.25)
        self.mark("ha_http_ready_s", ha.started)
        t = time.monotonic()
        client_id = f"{ha.base}/"
        user = {"client_id": client_id, "name": "Check", "username": "check", "password": "check-password-123"}
        code = api.post("/api/onboarding/users", {**user, "language": "en"}, auth=False)["auth_code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        api.token = api.request("POST", "/auth/token", form=form, auth=False)["access_token"]
        # core_config is not posted: it starts config flows for google_translate, met, radio_browser and
        # shopping_list (their requirements, the network).
        api.post("/api/onboarding/analytics")
        api.post("/api/onboarding/integration", {"client_id": client_id, "redirect_uri": f"{ha.base}/?auth_callback=1"})
        ws = WebSocket(ha.port, api.token)
        api.token = ws.call("auth/long_lived_access_token", client_name="edge_ha_check", lifespan=1)
        ws.close()
        self.ws = WebSocket(ha.port, api.token)
        self.mark("auth_s", t)

        def running() -> bool:
            ha.alive_or_fail()
            return bool(api.get("/api/config")["state"] == "RUNNING")

        wait_for("HA state RUNNING", running, self.args.start_timeout)
        self.mark("ha_running_s", ha.started)
        self.findings["ha_version_running"] = api.get("/api/config")["version"]

        # The watcher subscribes before the MQTT entry exists, so it sees HA's birth message.
        self.watcher = Watcher(broker.port)
        t = time.monotonic()
        flow = api.post("/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        if flow["type"] != "form" or flow["step_id"] != "broker":
            raise CheckFailed(f"mqtt flow: expected the broker form, got {flow}")
        done = api.post(f"/api/config/config_entries/flow/{flow['flow_id']}", {"broker": HOST, "port": broker.port})
        if done["type"] != "create_entry":
            raise CheckFailed(f"mqtt flow: expected create_entry, got {done}")
        wait_for(
            "the mqtt entry to load",
            lambda: [e for e in api.get("/api/config/config_entries/entry?domain=mqtt") if e["state"] == "loaded"],
            30,
        )
        loaded = time.monotonic()
        self.mark("mqtt_setup_s", t)
        # HA publishes its birth (homeassistant/status online) once discovery and subscriptions have been quiet
        # for a while; a non-retained state published before that is lost. The daemon starts after it.
        wait_for("HA's birth message on homeassistant/status", lambda: self.watcher.birth_at, 60, 0.05)
        assert self.watcher.birth_at is not None
        self.timings["birth_after_mqtt_entry_loaded_s"] = round(self.watcher.birth_at - loaded, 2)

    # ------------------------------------------------------------------ the device appears

    def start_daemon(
        self,
        video: Path,
        broker: Broker,
        name: str,
        min_cell: int,
        attention: bool = True,
        people: dict[str, Any] | None = None,
        **attributes: bool,
    ) -> DaemonProc:
        import yaml

        path = self.daemon_config = self.workdir / f"{name}.yaml"
        config = daemon_config(self.workdir, video, broker.port, min_cell, attention, people, **attributes)
        path.write_text(yaml.safe_dump(config))
        daemon = DaemonProc(self.args.edge_python, path, self.workdir / f"{name}.log")
        self.daemons.append(daemon)
        return daemon

    def registry(self) -> dict[str, str]:
        """unique_id -> entity_id of this device's MQTT entities in HA's entity registry."""
        return {
            e["unique_id"]: e["entity_id"]
            for e in self.ws.call("config/entity_registry/list")
            if e["platform"] == "mqtt" and e["unique_id"].startswith(f"{DEVICE_ID}_")
        }

    def devices(self) -> list[dict[str, Any]]:
        return [d for d in self.ws.call("config/device_registry/list") if ["mqtt", DEVICE_ID] in d["identifiers"]]

    def entities_for(self, configs: dict[str, dict[str, Any]], what: str) -> dict[str, str]:
        """Wait until every config has an entity with a state: unique_id -> entity_id."""

        def present() -> dict[str, str] | None:
            self.daemons[-1].alive_or_fail()
            ids = self.registry()
            states = self.api.states()
            wanted = {c["unique_id"] for c in configs.values()}
            if wanted <= set(ids) and all(ids[u] in states for u in wanted):
                return {u: ids[u] for u in wanted}
            return None

        return wait_for(what, present, 60, 0.5)

    def phase_discovery(self, video: Path, broker: Broker) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        t = time.monotonic()
        daemon = self.start_daemon(video, broker, "daemon-a", min_cell=1)

        needed = {"visitors", "visitors_today", "dwell_mean", "faces_peak", "gender_female", "age_65_plus"}
        needed |= {*ATTENTION_SENSORS, "viewers_gender_female", "viewers_age_65_plus"}
        needed |= {*PEOPLE_SENSORS, *LINE_SENSORS, *ZONE_SENSORS}
        missing = sorted(needed)

        def configs_published() -> dict[str, dict[str, Any]] | None:
            nonlocal missing
            daemon.alive_or_fail()
            configs, _ = self.watcher.snapshot()
            missing = sorted(needed - {c["unique_id"].removeprefix(f"{DEVICE_ID}_") for c in configs.values()})
            return None if missing else configs

        try:
            configs = wait_for("the daemon's discovery configs on the broker", configs_published, 120, 0.2)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}; no config for {missing}") from None
        self.mark("daemon_start_to_discovery_configs_s", t)
        t = time.monotonic()
        ids = self.entities_for(configs, "an HA entity for every discovery config")
        self.mark("discovery_configs_to_entities_s", t)

        # The device: one, with what the configs say.
        devices = self.devices()
        if len(devices) != 1:
            raise CheckFailed(f"expected one device with identifiers mqtt/{DEVICE_ID}, got {devices}")
        block = next(iter(configs.values()))["device"]
        got = {k: devices[0].get(k) for k in ("name", "manufacturer", "model", "sw_version")}
        if got != {k: block.get(k) for k in got}:
            raise CheckFailed(f"device registry entry {got} differs from the discovery device block {block}")
        self.findings["device"] = got

        # Entity ids: honoured default_entity_id, or HA's own <device name>_<entity name>?
        table: dict[str, dict[str, str | None]] = {}
        unexpected = []
        for cfg in configs.values():
            uid, actual = cfg["unique_id"], ids[cfg["unique_id"]]
            wanted = cfg.get("default_entity_id")
            from_name = f"sensor.{ha_slug(block['name'] + ' ' + cfg['name'])}"
            table[uid.removeprefix(f"{DEVICE_ID}_")] = {"default_entity_id": wanted, "entity_id": actual}
            if actual not in (wanted, from_name):
                unexpected.append(f"{uid}: {actual} (default_entity_id {wanted}, from the name {from_name})")
        if unexpected:
            raise CheckFailed(
                "entity ids neither default_entity_id nor derived from the name:\n" + "\n".join(unexpected)
            )
        differ = {k: v for k, v in table.items() if v["default_entity_id"] and v["default_entity_id"] != v["entity_id"]}
        self.findings["entity_ids"] = {k: v["entity_id"] for k, v in sorted(table.items())}
        self.findings["default_entity_id"] = {
            "sent": sum(1 for v in table.values() if v["default_entity_id"]),
            "honoured": sum(1 for v in table.values() if v["default_entity_id"] == v["entity_id"]),
            "differs": {k: f"{v['default_entity_id']} -> {v['entity_id']}" for k, v in sorted(differ.items())},
        }
        if differ:
            log(
                f"NOTE: HA {HA_VERSION} ignores default_entity_id: {len(differ)} of {len(table)} entity ids differ "
                f"(e.g. {next(iter(differ.values()))})"
            )

        # Attributes HA shows come from the config.
        states = self.api.states()
        wrong = []
        for cfg in configs.values():
            attrs = states[ids[cfg["unique_id"]]]["attributes"]
            for key in ("state_class", "unit_of_measurement", "device_class", "icon"):
                if cfg.get(key) != attrs.get(key):
                    wrong.append(f"{ids[cfg['unique_id']]}.{key}: config {cfg.get(key)!r}, HA {attrs.get(key)!r}")
        if wrong:
            raise CheckFailed("entity attributes differ from the discovery configs:\n" + "\n".join(wrong))
        self.check_units("attention", ATTENTION_SENSORS, states, ids)
        self.check_units("people", PEOPLE_SENSORS | LINE_SENSORS | ZONE_SENSORS, states, ids)

        # status is retained "online": every entity turns available (before the first window: "unknown").
        def available() -> dict[str, dict[str, Any]] | None:
            states = self.api.states()
            return states if all(states[e]["state"] != "unavailable" for e in ids.values()) else None

        states = wait_for("every entity available (status online)", available, 15)
        self.findings["states_once_available"] = sorted({states[e]["state"] for e in ids.values()})
        # The Storage sensor reads the retained health message: "ok" while the state store writes.
        storage = ids[f"{DEVICE_ID}_storage"]
        wait_for("the Storage sensor to say ok", lambda: self.api.states()[storage]["state"] == "ok" or None, 60, 0.5)
        return configs, ids

    def check_units(
        self,
        what: str,
        sensors: Mapping[str, tuple[str | None, str | None]],
        states: dict[str, dict[str, Any]],
        ids: dict[str, str],
    ) -> None:
        """The ``what`` sensors as HA shows them: one number a window, with their units."""
        shown, wrong = {}, []
        for obj, (unit, device_class) in sensors.items():
            entity = ids[f"{DEVICE_ID}_{obj}"]
            attrs = states[entity]["attributes"]
            got = (attrs.get("unit_of_measurement"), attrs.get("device_class"), attrs.get("state_class"))
            shown[obj] = {"entity_id": entity, "unit": got[0], "device_class": got[1], "state_class": got[2]}
            if got != (unit, device_class, "measurement"):
                wrong.append(f"{entity}: HA {got}, expected {(unit, device_class, 'measurement')}")
            log(f"{what} sensor {entity}: unit {got[0]}, device_class {got[1]}, state_class {got[2]}")
        self.findings[f"{what}_sensors"] = shown
        if wrong:
            raise CheckFailed(f"{what} sensors with the wrong units or classes:\n" + "\n".join(wrong))

    # ------------------------------------------------------------------ states follow the windows

    def phase_windows(self, label: str, configs: dict[str, dict[str, Any]], ids: dict[str, str], windows: int) -> None:
        """For ``windows`` successive windows: every entity shows the window's value (a window that
        arrives while polling replaces the one awaited), and Visitors' last_updated moves each time."""
        # The window sensors; the Storage sensor reads the health topic (checked in phase_discovery).
        readers = {
            ids[c["unique_id"]]: template_reader(c["value_template"])
            for c in configs.values()
            if c["state_topic"].endswith("/counts")
        }
        attention = {obj: ids[f"{DEVICE_ID}_{obj}"] for obj in ATTENTION_SENSORS if f"{DEVICE_ID}_{obj}" in ids}
        people = {u.removeprefix(f"{DEVICE_ID}_"): e for u, e in sorted(ids.items()) if is_people(u)}
        visitors = ids[f"{DEVICE_ID}_visitors"]
        today = ids[f"{DEVICE_ID}_visitors_today"]
        _, seen = self.watcher.snapshot()
        start_index = len(seen)
        matched: list[dict[str, Any]] = []
        last_updated: str | None = None
        daemon = self.daemons[-1]
        t_phase = time.monotonic()
        while len(matched) < windows:

            def next_window() -> tuple[float, dict[str, Any]] | None:
                daemon.alive_or_fail()
                _, got = self.watcher.snapshot()
                fresh = got[start_index:]
                done = {m["seq"] for m in matched}
                return next(((t, w) for t, w in fresh if w["seq"] not in done), None)

            arrived, _ = wait_for(f"a window from the daemon ({label})", next_window, 60, 0.1)
            mismatch: list[str] = []

            def shown(previous: str | None = last_updated) -> dict[str, Any] | None:
                nonlocal mismatch
                _, got = self.watcher.snapshot()
                payload = got[-1][1]
                states = self.api.states()
                mismatch = [
                    f"{e}: HA {states.get(e, {}).get('state')!r}, window seq {payload['seq']} "
                    f"{what} = {read(payload) if read(payload) is not _MISSING else '(missing)'}"
                    for e, (what, read) in readers.items()
                    if not state_matches(states.get(e, {}).get("state", "absent"), read(payload))
                ]
                if mismatch or states[visitors]["last_updated"] == previous:
                    return None
                return {"payload": payload, "states": states}

            try:
                result = wait_for(f"HA to show the window ({label})", shown, 20, 0.2)
            except CheckFailed as exc:
                raise CheckFailed(f"{exc}; still different:\n" + "\n".join(mismatch[:30])) from None
            payload, states = result["payload"], result["states"]
            last_updated = states[visitors]["last_updated"]
            if self.first_today_at is None:
                self.first_today_at = datetime.fromisoformat(states[today]["last_updated"])
            if any(m["seq"] == payload["seq"] for m in matched):
                continue  # the same window again (a newer one had not arrived): wait for the next
            matched.append(
                {
                    "seq": payload["seq"],
                    "partial": payload["window"]["partial"],
                    "visitors": payload["visitors"],
                    "today": payload["today"]["visitors"],
                    "ha_after_s": round(time.monotonic() - arrived, 2),
                    "null_cells": sorted(what for what, read in readers.values() if read(payload) is None),
                }
            )
            log(f"{label}: window seq {payload['seq']} shown by every entity ({matched[-1]['ha_after_s']} s)")
            if attention:
                figures = {obj: [readers[e][1](payload), states[e]["state"]] for obj, e in attention.items()}
                matched[-1]["attention"] = figures
                log(f"{label}: window seq {payload['seq']} attention (window -> HA): {figures}")
            if people:
                figures = {obj: [readers[e][1](payload), states[e]["state"]] for obj, e in people.items()}
                matched[-1]["people"] = figures
                log(f"{label}: window seq {payload['seq']} people (window -> HA): {figures}")
        self.findings.setdefault("windows", {})[label] = matched
        self.mark(f"windows_{label.replace(' ', '_')}_s", t_phase)

    # ------------------------------------------------------------------ availability

    def checkpoint(self) -> dict[str, Any] | None:
        """The open window's checkpoint in the daemon's state database (read-only), if there is one."""
        db = self.workdir / "state" / "state.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
        return json.loads(row[0]) if row else None

    def phase_kill(self, ids: dict[str, str]) -> None:
        # Killed right after a window the daemon would leave nothing to recover; a real SIGKILL or power cut
        # comes mid-window, after a checkpoint (every second here).
        def mid_window() -> dict[str, Any] | None:
            saved = self.checkpoint()
            published = {w["window"]["start"] for _, w in self.watcher.snapshot()[1]}
            return saved if saved and saved["window"]["start"] not in published else None

        saved = wait_for("a checkpoint of the open window", mid_window, 15, 0.2)
        self.killed_checkpoint = saved["window"]["start"]
        self.windows_at_kill = len(self.watcher.snapshot()[1])
        t = time.monotonic()
        self.daemons[-1].signal(signal.SIGKILL)

        def unavailable() -> bool:
            states = self.api.states()
            return all(states[e]["state"] == "unavailable" for e in ids.values())

        wait_for("every entity unavailable after SIGKILL (Last Will)", unavailable, 20, 0.2)
        self.findings["sigkill_to_unavailable_s"] = self.mark("sigkill_to_unavailable_s", t)
        with self.watcher.cv:
            self.findings["status_after_sigkill"] = self.watcher.status[-1][1] if self.watcher.status else None

    def phase_restart_without_gender(
        self, video: Path, broker: Broker, ids_a: dict[str, str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """SIGKILLed, then restarted with gender off, without the counting line and one zone: the
        checkpointed window (made with all of them) comes first, their entities leave HA."""
        gender = {u: e for u, e in ids_a.items() if is_gender(u)}
        dropped = {u: e for u, e in ids_a.items() if is_line_or_dropped_zone(u)}
        kept = {u: e for u, e in ids_a.items() if u not in gender and u not in dropped}
        t = time.monotonic()
        # min_cell 3 as well: suppressed cells (null in the payload) must show as "unknown", not fail a template
        people = people_section(line=False, zones=tuple(z for z in ZONES if z != DROPPED_ZONE))
        self.start_daemon(video, broker, "daemon-b", min_cell=3, people=people, gender=False)

        # The killed run's checkpointed window comes first (made with gender on: it carries gender counts).
        def recovered() -> dict[str, Any] | None:
            self.daemons[-1].alive_or_fail()
            after_kill = self.watcher.snapshot()[1][self.windows_at_kill :]
            return next((w for _, w in after_kill if w["window"]["start"] == self.killed_checkpoint), None)

        window = wait_for("the killed run's checkpointed window, published by the restarted daemon", recovered, 90)
        self.findings["recovered_window"] = {
            "seq": window["seq"],
            "start": window["window"]["start"],
            "partial": window["window"]["partial"],
            "carries_gender": "gender" in window,
            "carries_crossings": "crossings" in window,
            f"carries_zone_{DROPPED_ZONE}": DROPPED_ZONE in window.get("zones", {}),
        }

        def back() -> bool:
            self.daemons[-1].alive_or_fail()
            states = self.api.states()
            return all(states.get(e, {}).get("state") not in (None, "unavailable") for e in kept.values())

        wait_for("the entities the new config keeps available again", back, 60, 0.3)
        self.mark("restart_to_available_s", t)
        self.await_removed("gender", is_gender, gender, t)
        self.await_removed("line and zone", is_line_or_dropped_zone, dropped, t)
        configs_b = {
            k: c
            for k, c in self.watcher.snapshot()[0].items()
            if not is_gender(c["unique_id"]) and not is_line_or_dropped_zone(c["unique_id"])
        }
        return configs_b, kept

    def phase_restart_without(
        self,
        what: str,
        member: Callable[[str], bool],
        video: Path,
        broker: Broker,
        ids: dict[str, str],
        name: str,
        config: dict[str, Any],
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """A clean stop, then ``config`` (``start_daemon``'s keywords: ``what`` switched off): the
        entities ``member`` picks (by unique id) leave HA, the others come back."""
        rc = self.daemons[-1].signal(signal.SIGTERM)
        if rc != 0:
            raise CheckFailed(f"the daemon exited with {rc} after SIGTERM")
        gone = {u: e for u, e in ids.items() if member(u)}
        kept = {u: e for u, e in ids.items() if u not in gone}
        t = time.monotonic()
        self.start_daemon(video, broker, name, min_cell=3, **config)

        def back() -> bool:
            self.daemons[-1].alive_or_fail()
            states = self.api.states()
            return all(states.get(e, {}).get("state") not in (None, "unavailable") for e in kept.values())

        wait_for(f"the entities without {what} available again", back, 60, 0.3)
        self.mark(f"restart_without_{what}_to_available_s", t)
        self.await_removed(what, member, gone, t)
        configs = {k: c for k, c in self.watcher.snapshot()[0].items() if not member(c["unique_id"])}
        return configs, kept

    def await_removed(self, what: str, member: Callable[[str], bool], gone: dict[str, str], since: float) -> None:
        """Wait until the ``gone`` entities (``member`` picks them) have left HA's registry and states;
        a timeout is recorded with the configs the broker carried since the restart, and the check goes on."""
        key = what.replace(" ", "_")
        if not gone:
            self.soft_fail(f"no {what} entities before the restart that should remove them")

        def removed() -> bool:
            ids = self.registry()
            states = self.api.states()
            return not any(u in ids for u in gone) and not any(e in states for e in gone.values())

        try:
            wait_for(f"the {what} entities removed from HA", removed, 20, 0.3)
            self.findings[f"restart_to_{key}_removed_s"] = self.mark(f"restart_to_{key}_removed_s", since)
            log(f"{what} entities removed from HA's states and registry: {sorted(gone.values())}")
        except CheckFailed as exc:
            configs = self.timeline(since, member)
            self.soft_fail(f"{exc}; {what} discovery configs on the broker since the restart:\n{configs}")
        self.findings[f"{key}_configs_since_restart"] = self.timeline(since, member).splitlines()

    def timeline(self, since: float, member: Callable[[str], bool]) -> str:
        """The config messages since ``since`` of the entities ``member`` picks (by unique id)."""
        with self.watcher.cv:
            events = [
                e for e in self.watcher.config_events if e[0] >= since and member(f"{DEVICE_ID}_{e[1].split('/')[-2]}")
            ]
        return "\n".join(
            f"+{at - since:.2f} s {topic}: {'config (retained)' if present else 'empty payload (cleared)'}"
            for at, topic, present in events
        )

    def phase_freeze(self, ids: dict[str, str]) -> None:
        """A hung daemon (or a dead network) leaves its socket open: the broker notices after 1.5 keepalives
        (5 s here) and publishes the Last Will; when the daemon runs again it reconnects and says online."""
        daemon = self.daemons[-1]
        t = time.monotonic()
        daemon.proc.send_signal(signal.SIGSTOP)
        try:

            def unavailable() -> bool:
                states = self.api.states()
                return all(states[e]["state"] == "unavailable" for e in ids.values())

            wait_for("every entity unavailable while the daemon is stopped (keepalive, Last Will)", unavailable, 20)
            self.findings["sigstop_to_unavailable_s"] = self.mark("sigstop_to_unavailable_s", t)
        finally:
            daemon.proc.send_signal(signal.SIGCONT)
        t = time.monotonic()

        def available() -> bool:
            daemon.alive_or_fail()
            states = self.api.states()
            return all(states[e]["state"] != "unavailable" for e in ids.values())

        wait_for("every entity available again after SIGCONT (reconnect, status online)", available, 60)
        self.findings["sigcont_to_available_s"] = self.mark("sigcont_to_available_s", t)

    def assert_stays_away(self, what: str, member: Callable[[str], bool], restarted: float) -> None:
        """After windows of the restarted daemon: no config on the broker, no entity in HA of those
        ``member`` picks (by unique id), the ``what`` the new config switched off."""
        ids = self.registry()
        back = sorted(ids[u] for u in ids if member(u))
        retained = sorted(k.split("/")[-2] for k, c in self.watcher.snapshot()[0].items() if member(c["unique_id"]))
        if back or retained:
            msg = f"{what} entities present after the restart without {what}: HA {back}, retained {retained}"
            if not any(f.startswith("timed out") and what in f for f in self.failures):
                self.soft_fail(msg + "\n" + self.timeline(restarted, member))
            self.findings[f"{what}_after_restart"] = {"ha": back, "retained_configs": retained}

    # ------------------------------------------------------------------ long-term statistics

    def phase_statistics(self, ids: dict[str, str]) -> None:
        """Wait for the recorder's 5-minute compile (at mm:00/05/.. +10 s, HA's UTC clock) after
        visitors_today's first state, and read the row back."""
        t = time.monotonic()
        sid = ids[f"{DEVICE_ID}_visitors_today"]

        def ha_now() -> datetime:  # HA's wall clock (shifted)
            return datetime.fromisoformat(
                self.api.post("/api/template", {"template": "{{ utcnow().isoformat() }}"}, raw=True)
            )

        first = self.first_today_at or ha_now()
        boundary = first.replace(second=0, microsecond=0) + timedelta(minutes=5 - first.minute % 5)
        now = ha_now()
        log(
            f"statistics: waiting for the compile of the period ending {boundary:%H:%M:%S} UTC (HA clock; "
            f"{max(0.0, (boundary - now).total_seconds()):.0f} s away)"
        )
        start = (boundary - timedelta(minutes=5)).isoformat()

        def compiled() -> list[dict[str, Any]] | None:
            res = self.ws.call(
                "recorder/statistics_during_period",
                start_time=start,
                statistic_ids=[sid],
                period="5minute",
                types=["state", "sum", "change"],
            )
            rows: list[dict[str, Any]] | None = res.get(sid)
            return rows

        rows = wait_for("5-minute statistics of visitors_today", compiled, (boundary - now).total_seconds() + 90, 2.0)
        row = rows[0]
        end = datetime.fromtimestamp(row["end"] / 1000, timezone.utc)
        listed = [
            x for x in self.ws.call("recorder/list_statistic_ids", statistic_type="sum") if x["statistic_id"] == sid
        ]
        validation = self.ws.call("recorder/validate_statistics")
        self.findings["statistics"] = {
            "rows_5minute": rows,
            "visible_s_after_period_end": round((ha_now() - end).total_seconds(), 1),
            "list_statistic_ids": listed,
            "validate_statistics": validation.get(sid, []),
        }
        self.mark("statistics_wait_s", t)
        published = {float(w["today"]["visitors"]) for _, w in self.watcher.snapshot()[1]}
        if row.get("state") not in published or (row.get("sum") or 0) < 0:
            raise CheckFailed(f"statistics row {row}: state not a published today.visitors ({sorted(published)})")
        if not listed or not listed[0].get("has_sum"):
            raise CheckFailed(f"{sid} not listed with has_sum: {listed}")
        if validation.get(sid):
            raise CheckFailed(f"recorder/validate_statistics reports {sid}: {validation[sid]}")

    # ------------------------------------------------------------------ edge forget

    def phase_forget(self, ids: dict[str, str]) -> None:
        t = time.monotonic()
        daemon = self.daemons[-1]
        rc = daemon.signal(signal.SIGTERM)
        if rc != 0:
            raise CheckFailed(f"the daemon exited with {rc} after SIGTERM")
        self.mark("sigterm_exit_s", t)
        t = time.monotonic()
        config = self.daemon_config
        assert config is not None
        out = subprocess.run(
            [self.args.edge_python, "-m", "edge.cli", "forget", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
            check=False,
        )
        if out.returncode != 0:
            raise CheckFailed(f"edge forget exited with {out.returncode}: {out.stdout}{out.stderr}")
        self.findings["forget_output"] = out.stdout.splitlines()[0] if out.stdout else ""

        def gone() -> bool:
            states = self.api.states()
            return not self.registry() and not self.devices() and not any(e in states for e in ids.values())

        wait_for("the device, its entities and states gone after edge forget", gone, 30, 0.3)
        self.mark("forget_to_device_gone_s", t)

    # ------------------------------------------------------------------ the log

    def read_log(self, ha: HomeAssistantProc) -> bool:
        text = ha.log_text()
        found = problems(text)
        unrelated, relevant, other = sort_problems(found)
        installs = [rec.splitlines()[0] for _, rec in log_records(text) if "Attempting install" in rec]
        init = re.search(r"Home Assistant initialized in ([0-9.]+)s", text)  # bootstrap logs at info
        self.findings["ha_log"] = {
            "file": str(ha.log_file),
            "ha_initialized_in_s": float(init.group(1)) if init else None,
            "warnings_errors": len(found),
            "about_mqtt_device_or_templates": distinct(relevant),
            "other": distinct(other),
            "pip_installs": installs,
        }
        for line in self.findings["ha_log"]["about_mqtt_device_or_templates"]:
            log(f"HA LOG PROBLEM: {line}")
        for line in self.findings["ha_log"]["other"]:
            log(f"HA log (other, not a failure): {line}")
        if relevant:
            self.failures.append(f"{len(relevant)} WARNING/ERROR record(s) about mqtt/the device/templates in HA's log")
        return not relevant


def reexec_in_project_venv() -> None:
    """The driver needs the project (edge.scenes, yaml) and paho-mqtt: run it with the project's venv."""
    try:
        import paho.mqtt.client  # noqa: F401
        import yaml  # noqa: F401

        import edge.scenes  # noqa: F401
    except ImportError as exc:
        if PROJECT_PYTHON.exists() and Path(sys.prefix).resolve() != PROJECT_PYTHON.parent.parent.resolve():
            os.execv(str(PROJECT_PYTHON), [str(PROJECT_PYTHON), __file__, *sys.argv[1:]])
        raise SystemExit(f"run this with the project's venv ({PROJECT_PYTHON}): {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", help="the Python >= 3.13 for Home Assistant (default: pyenv's versions, then PATH)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("install", help="(re)create the cached HA venv")
    pi.add_argument("--resolve", action="store_true", help="resolve afresh with HA's constraints and rewrite the lock")
    pr = sub.add_parser("run", help="run the check (installs the HA venv first if it is not cached)")
    pr.add_argument(
        "--statistics",
        action="store_true",
        help="also check 5-minute long-term statistics (HA's clock shifted with libfaketime; skipped without it)",
    )
    pr.add_argument("--stats-lead", type=float, default=90, help="seconds from HA start to its first 5-minute boundary")
    pr.add_argument("--skip-pip", action="store_true", help="start HA with --skip-pip")
    pr.add_argument("--keep", action="store_true", help="keep the temporary directory (always kept on failure)")
    pr.add_argument("--start-timeout", type=float, default=180, help="seconds for HA to start")
    pr.add_argument("--edge-python", default=sys.executable, help="python that runs `edge` (default: this one)")
    args = p.parse_args(argv)
    reexec_in_project_venv()
    try:
        found = find_python(args.python or os.environ.get("EDGE_HA_PYTHON"))
        if found is None:
            msg = (
                "SKIPPED: no Python >= 3.13 found (looked in pyenv's versions dir and PATH); "
                f"Home Assistant {HA_VERSION} needs it (pyenv install 3.13, or --python)"
            )
            print(msg, flush=True)
            print(json.dumps({"ok": False, "skipped": msg}))
            return EXIT_SKIPPED
        python, version = found
        log(f"Home Assistant's Python: {python} ({'.'.join(map(str, version))})")
        if args.cmd == "install":
            with cache_lock():
                print(json.dumps(install(python, version, resolve=args.resolve)))
            return 0
        return Check(args).run(python, version)
    except SetupError as exc:
        print(f"SETUP ERROR: {exc}", flush=True)
        print(json.dumps({"ok": False, "setup_error": str(exc)}))
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
