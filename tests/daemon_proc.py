"""Daemon test helpers: a config for a generated video, the daemon in-process or as a real
process (for signals: SIGTERM, SIGKILL), and its log followed without sleeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from typing import TextIO

import yaml

from edge.daemon import Daemon
from edge.scenes import Visitor
from edge.settings import parse_config
from edge.sinks.jsonl import JsonlSink, JsonlSinkConfig
from edge.state_store import StateStore

REPO = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, video: Path, **overrides: object) -> dict:
    doc = {
        "device_id": "test-cam",
        "site": "lab",
        "source": {"type": "file", "path": str(video), "realtime": False},
        "aggregation": {"window_s": 10, "min_cell": 1},
        "sink": {"type": "jsonl", "path": str(tmp_path / "windows.jsonl")},
        "state_dir": str(tmp_path / "state"),
    }
    doc.update(overrides)  # a section given replaces the default one whole
    return doc


def jsonl_sink(path: Path, store: StateStore) -> JsonlSink:
    """A jsonl sink writing to ``path`` that delivers from the daemon's state store."""
    return JsonlSink(JsonlSinkConfig(path=str(path)), spool=store)


def run_daemon(tmp_path: Path, doc: dict) -> list[dict]:
    cfg = parse_config(doc)
    out = tmp_path / "windows.jsonl"
    sink = partial(jsonl_sink, out)
    assert Daemon(cfg, threading.Event(), sink=sink).run() == 0  # the daemon closes its sink
    return [json.loads(line) for line in out.read_text().splitlines()]


def walker(enter: float, dwell: float, lane: float, mirror: bool = False) -> Visitor:
    return Visitor(enter, enter + dwell, lane, 60.0, 1 if lane < 0.5 else -1, mirror, (1.0, 1.0, 1.0))


EDGE = [sys.executable, "-m", "edge.cli"]  # the command line from this checkout


def run_edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``edge ARGS`` to the end, as an operator runs it; the exit status and output come back."""
    return subprocess.run([*EDGE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def spawn_daemon(tmp_path: Path, config: dict, *options: str) -> subprocess.Popen:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [*EDGE, "run", "--config", str(path), *options],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def watch(stream: TextIO, needle: str, seen: list[str]) -> threading.Event:
    """Keep reading ``stream`` into ``seen`` (so the child never blocks on a full pipe);
    the returned event is set once a line contains ``needle``. Callers wait on it with a timeout."""
    found = threading.Event()

    def reader() -> None:
        for line in stream:
            seen.append(line)
            if needle in line:
                found.set()

    threading.Thread(target=reader, daemon=True).start()
    return found


class LogLines:
    """Reads a child's log in a thread (so it never blocks on a full pipe) and lets a test wait,
    on a condition rather than a sleep, for a line containing a given text."""

    def __init__(self, stream: TextIO) -> None:
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()

    def wait_for(self, needle: str, timeout: float, after: int = 0) -> bool:
        """Whether a line from index ``after`` on contains ``needle`` within ``timeout`` seconds."""
        with self._cv:
            return self._cv.wait_for(lambda: any(needle in line for line in self.lines[after:]), timeout)

    def count(self, needle: str) -> int:
        with self._cv:
            return sum(needle in line for line in self.lines)

    def text(self) -> str:
        with self._cv:
            return "".join(self.lines)
