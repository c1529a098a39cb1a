"""``edge demo`` as a user runs it: stopping it loses nothing and leaves nothing behind.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group; systemd or ``kill`` send
SIGTERM to the process. Either way the daemon must publish the open window as partial, the viewer
must print it, the private broker must be stopped by the demo (not orphaned, not killed first), and
no reconnect warning may appear. Real processes throughout: the CLI, mosquitto, the sample video.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from daemon_proc import REPO
from mqtt_broker import MOSQUITTO_MISSING

from edge.commands.demo import DEVICE_ID, VIDEO_NAME, ensure_video
from edge.state_store import StateStore

pytestmark = pytest.mark.skipif(bool(MOSQUITTO_MISSING), reason=MOSQUITTO_MISSING)

COUNTS = f"edge/{DEVICE_ID}/counts "
STATUS = f"edge/{DEVICE_ID}/status "
FIRST_WINDOW_TIMEOUT_S = 180.0  # model loading and the first 2 s window, on a loaded 2-core machine
SHUTDOWN_TIMEOUT_S = 90.0
FAILURE_WORDS = ("lost connection", "reconnect", "did not complete", "did not reach", "Traceback")


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once for the module with the demo's own code; each test starts from a copy,
    which also exercises the demo's cache (it must not regenerate it)."""
    return ensure_video(tmp_path_factory.mktemp("demo-video"), io.StringIO())


def broker_pids(conf: Path) -> list[int]:
    """Live mosquitto processes started with ``conf`` (a tmp path, so unique to one test)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited while we looked
        if any(a.endswith(b"mosquitto") for a in args[:1]) and str(conf).encode() in args:
            pids.append(int(proc.name))
    return pids


def lines_of(stream: IO[str]) -> queue.SimpleQueue[str | None]:
    """Every line of ``stream`` as it arrives, then None at EOF (read on a thread: waits take timeouts)."""
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def reader() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    return lines


def sigint_to_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # exactly what a terminal does on Ctrl-C


def sigterm_to_process(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)  # what systemd or `kill` do


@pytest.mark.parametrize("stop", [sigint_to_group, sigterm_to_process], ids=["ctrl-c", "sigterm"])
def test_stop_publishes_open_window_as_partial_and_stops_the_broker(
    tmp_path: Path, sample_video: Path, stop: Callable[[subprocess.Popen[str]], None]
) -> None:
    shutil.copy(sample_video, tmp_path / VIDEO_NAME)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "demo", "--window", "2", "--workdir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = lines_of(proc.stdout), lines_of(proc.stderr)
    seen: list[str] = []
    conf = tmp_path / "mosquitto.conf"
    try:
        while not any(line.startswith(COUNTS) for line in seen):
            line = out.get(timeout=FIRST_WINDOW_TIMEOUT_S)
            assert line is not None, f"demo ended before its first window:\n{''.join(seen)}"
            seen.append(line)
        first_seq = json.loads(seen[-1].split(" ", 1)[1])["seq"]
        assert broker_pids(conf), "the demo's mosquitto should be running"

        stop(proc)
        while (line := out.get(timeout=SHUTDOWN_TIMEOUT_S)) is not None:
            seen.append(line)
        assert proc.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0, "".join(seen)
        stderr = "".join(iter(lambda: err.get(timeout=SHUTDOWN_TIMEOUT_S), None))

        assert any(line.startswith(f"sample video: {tmp_path / VIDEO_NAME} (cached)") for line in seen)
        windows = [json.loads(line.split(" ", 1)[1]) for line in seen if line.startswith(COUNTS)]
        last = windows[-1]
        assert last["seq"] > first_seq, "the window open at the signal must be published, after the first"
        assert last["window"]["partial"] is True
        assert [line for line in seen if line.startswith(STATUS)][-1].split()[-1] == "offline"
        with StateStore(tmp_path / "state" / "state.sqlite3", 100) as spool:
            assert spool.depth() == 0, "every window reached the broker"
        assert broker_pids(conf) == [], "the demo must stop its own mosquitto (no orphan)"
        assert not [w for w in FAILURE_WORDS if w.lower() in stderr.lower()], stderr
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in broker_pids(conf):  # never leave an orphan behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
