"""A crash at each step of finishing a window, against the real daemon: inside the state store's
transaction (every row written, no COMMIT), after the COMMIT before the continuity mark, and after
the mark before the sink has the window. The fault is injected through the store the daemon uses
(a subclass that ends the process with ``os._exit``, as SIGKILL or a power cut would), not by
tracing system calls. The next run must publish the window (from the spool, or from its checkpoint
as partial), number nothing twice, and keep ``today`` equal to the visitors published that day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from daemon_proc import REPO, config, run_daemon, walker

from edge.scenes import Scene, write_video

CRASH = textwrap.dedent("""
    import os, sys, threading
    import yaml
    from edge import daemon
    from edge.settings import parse_config
    from edge.state_store import StateStore

    point = sys.argv[2]

    class Crashing(StateStore):
        armed = False

        def finish(self, window):
            saved = self.checkpoint()
            if window.visitors and not (saved and saved.span.start == window.span.start and saved.visitors):
                # What was counted after the last checkpoint is lost by design, and a loaded
                # machine may checkpoint late: take the checkpoint an idle one would have taken.
                self.save_checkpoint(window.as_partial())
            Crashing.armed = bool(window.visitors)  # the first window with someone in it
            payload = super().finish(window)
            if Crashing.armed and point == "after the mark":
                os._exit(9)
            return payload

        def _write(self, change):
            if not (Crashing.armed and point == "inside the transaction"):
                return super()._write(change)

            def then_die(c):
                change(c)
                os._exit(9)

            return super()._write(then_die)

        def _write_mark(self, c):
            if Crashing.armed and point == "after the commit":
                os._exit(9)
            super()._write_mark(c)

    daemon.StateStore = Crashing
    daemon.Daemon(parse_config(yaml.safe_load(open(sys.argv[1]))), threading.Event()).run()
    sys.exit(3)  # the crash never came
""")


@pytest.mark.parametrize("point", ["inside the transaction", "after the commit", "after the mark"])
def test_a_crash_while_a_window_is_finished_loses_nothing_checkpointed(tmp_path: Path, point: str) -> None:
    video = write_video(Scene(640, 480, 10.0, 8.0, (walker(0.5, 5.0, 0.5),)), tmp_path / "one.avi")
    doc = config(
        tmp_path,
        video,
        source={"type": "file", "path": str(video), "realtime": True},
        aggregation={"window_s": 2, "min_cell": 1, "checkpoint_s": 0.2},
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path / "config.yaml"), point],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr
    out = tmp_path / "windows.jsonl"
    before = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert all(w["visitors"] == 0 for w in before)  # the window with the visitor was being finished

    empty = write_video(Scene(640, 480, 10.0, 1.0, ()), tmp_path / "empty.avi")
    windows = run_daemon(tmp_path, dict(doc, source={"type": "file", "path": str(empty), "realtime": False}))

    by_key: dict[tuple[str, int], dict] = {}
    for w in windows:
        key = (w["stream"], w["seq"])
        assert by_key.setdefault(key, w) == w, f"{key} published with two contents"  # redelivery is the same
    distinct = sorted(by_key.values(), key=lambda w: w["seq"])
    assert [w["seq"] for w in distinct] == list(range(1, len(distinct) + 1))
    assert sum(w["visitors"] for w in distinct) >= 1, "the visitor counted before the crash was lost"
    per_day: dict[str, int] = defaultdict(int)
    for w in distinct:
        per_day[w["today"]["date"]] += w["visitors"] or 0
        assert w["today"]["visitors"] == per_day[w["today"]["date"]], (point, distinct)
    if point == "inside the transaction":
        assert any(w["window"]["partial"] and w["visitors"] for w in distinct)  # from its checkpoint
