"""The daemon end to end: generated videos with known visitors -> `edge run` -> windows."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest
from daemon_proc import LogLines, spawn_daemon, watch
from payload_schema import check

from edge.config import parse_config
from edge.daemon import CLOCK_STEP_S, Daemon, clock_step
from edge.scenes import Scene, Visitor, random_scene, write_video
from edge.sinks import JsonlSettings, JsonlSink

REPO = Path(__file__).resolve().parent.parent
ALLOWED_KEYS = {
    "schema",
    "device",
    "site",
    "seq",
    "stream",
    "observed_s",
    "today",
    "window",
    "visitors",
    "faces",
    "dwell_s",
    "gender",
    "age",
    "expression",
    "ethnicity",
    "suppressed",
}


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


def run_daemon(tmp_path: Path, doc: dict) -> list[dict]:
    cfg = parse_config(doc)
    out = tmp_path / "windows.jsonl"
    with JsonlSink(JsonlSettings(path=str(out))) as sink:
        assert Daemon(cfg, threading.Event(), sink=sink).run() == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def walker(enter: float, dwell: float, lane: float, mirror: bool = False) -> Visitor:
    return Visitor(enter, enter + dwell, lane, 60.0, 1 if lane < 0.5 else -1, mirror, (1.0, 1.0, 1.0))


def test_simple_scene_counts_every_visitor_once_in_the_right_window(tmp_path: Path) -> None:
    # Entries sit well inside windows: visitors become visitors about a second after entering.
    scene = Scene(
        640,
        480,
        10.0,
        40.0,
        (walker(2.0, 6.0, 0.25), walker(4.0, 5.0, 0.75), walker(13.0, 8.0, 0.25), walker(24.0, 6.0, 0.75, mirror=True)),
    )
    video = write_video(scene, tmp_path / "simple.avi")
    windows = run_daemon(tmp_path, config(tmp_path, video))
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
    assert [w["visitors"] for w in windows[:4]] == [2, 1, 1, 0]
    ended = [w["dwell_s"]["n"] for w in windows]
    assert sum(ended) == 4
    # Dwell: a track lasts from its first to its last detection; +-0.5 s of the scene's truth.
    dwell_truth = sorted(v.dwell_s for v in scene.visitors)
    measured = sorted(w["dwell_s"]["mean"] for w in windows if w["dwell_s"]["n"] == 1)
    assert len(measured) >= 2
    for m in measured:
        assert min(abs(m - d) for d in dwell_truth) <= 0.5
    assert sum(w["gender"]["female"] for w in windows) == 4  # the astronaut is a woman
    total, day = 0, None
    for w in windows:
        check("window", w)
        assert set(w) <= ALLOWED_KEYS and "ethnicity" not in w
        total = (total if w["today"]["date"] == day else 0) + w["visitors"]
        day = w["today"]["date"]
        assert w["today"]["visitors"] == total  # the day's running total
        assert set(w["window"]) == {"start", "end", "partial"}


def test_one_frame_false_positive_is_not_a_visitor(tmp_path: Path) -> None:
    flash = Visitor(5.0, 5.0, 0.5, 60.0, 1, False, (1.0, 1.0, 1.0))  # visible in a single frame
    scene = Scene(640, 480, 10.0, 12.0, (flash,))
    windows = run_daemon(tmp_path, config(tmp_path, write_video(scene, tmp_path / "flash.avi")))
    assert sum(w["visitors"] for w in windows) == 0
    assert sum(w["dwell_s"]["n"] for w in windows) == 0
    assert max(w["faces"]["peak"] for w in windows) == 1  # it was seen, just not counted


def test_crowded_scene_within_five_percent(tmp_path: Path) -> None:
    scene = random_scene(60, 90.0, fps=8.0, width=1280, height=720, face_px=(50.0, 60.0), seed=11)
    assert len(scene.visitors) >= 40
    video = write_video(scene, tmp_path / "crowd.avi")
    # Faces are 50-60 px: the operator says so (README "Face size"), 7 detector passes a frame, not 33.
    doc = config(tmp_path, video, aggregation={"window_s": 30, "min_cell": 1}, detector={"min_face_px": 40})
    counted = sum(w["visitors"] for w in run_daemon(tmp_path, doc))
    assert abs(counted - len(scene.visitors)) <= 0.05 * len(scene.visitors), (counted, len(scene.visitors))


def test_small_cells_are_suppressed_in_the_published_windows(tmp_path: Path) -> None:
    scene = Scene(640, 480, 10.0, 20.0, (walker(2.0, 5.0, 0.25), walker(3.0, 5.0, 0.75)))
    windows = run_daemon(
        tmp_path,
        config(tmp_path, write_video(scene, tmp_path / "two.avi"), aggregation={"window_s": 10, "min_cell": 5}),
    )
    for w in windows:
        assert w["visitors"] in (0, None)
        for key in ("gender", "age", "expression"):
            assert all(v is None or v == 0 or v >= 5 for v in w[key].values())
    assert any("visitors" in w["suppressed"] for w in windows)


def test_seq_continues_across_restarts(tmp_path: Path) -> None:
    scene = Scene(640, 480, 10.0, 12.0, (walker(2.0, 5.0, 0.5),))
    video = write_video(scene, tmp_path / "one.avi")
    first = run_daemon(tmp_path, config(tmp_path, video))  # the sink appends to the same file
    both = run_daemon(tmp_path, config(tmp_path, video))
    assert len(both) > len(first) >= 2
    assert [w["seq"] for w in both] == list(range(1, len(both) + 1))


def test_sigterm_closes_a_partial_window_and_exits_zero(tmp_path: Path) -> None:
    scene = Scene(640, 480, 10.0, 6.0, (walker(1.0, 4.0, 0.5),))
    video = write_video(scene, tmp_path / "loop.avi")
    out = tmp_path / "windows.jsonl"
    doc = config(
        tmp_path,
        video,
        source={"type": "file", "path": str(video), "realtime": True, "loop": True},
        aggregation={"window_s": 3600, "min_cell": 1},
    )
    proc = spawn_daemon(tmp_path, doc)
    seen: list[str] = []
    try:
        assert watch(proc.stderr, "ready: models loaded", seen).wait(60), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        proc.kill()
    windows = [json.loads(line) for line in out.read_text().splitlines()]
    assert windows and windows[-1]["window"]["partial"] is True


def saved_checkpoint(state_db: Path) -> dict | None:
    """The open window's checkpoint as the daemon last saved it (read-only, beside the writer)."""
    if not state_db.exists():
        return None
    with closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)) as db:
        try:
            row = db.execute("SELECT value FROM text_state WHERE key = 'checkpoint'").fetchone()
        except sqlite3.OperationalError:  # the tables are not created yet
            return None
    return None if row is None else json.loads(row[0])


def test_sigkill_loses_at_most_the_time_since_the_last_checkpoint(tmp_path: Path) -> None:
    video = write_video(Scene(640, 480, 10.0, 6.0, (walker(0.5, 4.0, 0.5),)), tmp_path / "loop.avi")
    out = tmp_path / "windows.jsonl"
    doc = config(
        tmp_path,
        video,
        source={"type": "file", "path": str(video), "realtime": True, "loop": True},
        aggregation={"window_s": 3600, "min_cell": 1, "checkpoint_s": 0.5},
    )
    proc = spawn_daemon(tmp_path, doc, "-v")
    seen: list[str] = []
    state_db = tmp_path / "state" / "seq.sqlite3"
    try:
        assert watch(proc.stderr, ": 1 visitors so far", seen).wait(90), "".join(seen)  # a checkpoint with a visitor
        proc.kill()  # no chance to close the window
        proc.wait(timeout=10)
    finally:
        proc.kill()
    saved = saved_checkpoint(state_db)
    assert saved is not None
    before = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    # The next run (here on an empty recording) publishes the interrupted window first, as partial.
    empty = write_video(Scene(640, 480, 10.0, 2.0, ()), tmp_path / "empty.avi")
    run_daemon(tmp_path, dict(doc, source={"type": "file", "path": str(empty), "realtime": False}))
    windows = [json.loads(line) for line in out.read_text().splitlines()]
    recovered = windows[len(before)]
    assert recovered["window"]["start"] == saved["window"]["start"] and recovered["window"]["partial"] is True
    assert recovered["visitors"] >= saved["visitors"] >= 1 and recovered["observed_s"] > 0
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
    assert len({w["stream"] for w in windows}) == 1
    assert saved_checkpoint(state_db) is None  # a clean stop leaves none


def test_a_second_daemon_on_the_same_state_dir_is_refused_and_sighup_closes_the_window(tmp_path: Path) -> None:
    video = write_video(Scene(640, 480, 10.0, 6.0, (walker(1.0, 4.0, 0.5),)), tmp_path / "loop.avi")
    doc = config(
        tmp_path,
        video,
        source={"type": "file", "path": str(video), "realtime": True, "loop": True},
        aggregation={"window_s": 3600, "min_cell": 1},
    )
    first = spawn_daemon(tmp_path, doc)
    seen: list[str] = []
    try:
        assert watch(first.stderr, "ready: models loaded", seen).wait(60), "".join(seen)
        second = subprocess.run(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(tmp_path / "config.yaml")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert f"in use by another edge daemon (pid {first.pid})" in second.stderr
        first.send_signal(signal.SIGHUP)  # a closed terminal: close the window, do not just die
        assert first.wait(timeout=30) == 0, "".join(seen)
    finally:
        first.kill()
    windows = [json.loads(line) for line in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert windows and windows[-1]["window"]["partial"] is True
    assert "received SIGHUP" in "".join(seen)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root, as in CI): a state directory whose disk can really fill up."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full."""
    filler = folder / "filler"
    # Unbuffered: every write reaches the disk, so the full disk shows there and not at close.
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_holds_finished_windows_in_memory_until_space_returns(tmp_path: Path, small_disk: Path) -> None:
    video = write_video(Scene(640, 480, 10.0, 6.0, (walker(1.0, 4.0, 0.5),)), tmp_path / "loop.avi")
    doc = config(
        tmp_path,
        video,
        source={"type": "file", "path": str(video), "realtime": True, "loop": True},
        aggregation={"window_s": 1, "min_cell": 1, "checkpoint_s": 0.5},
        state_dir=str(small_disk / "state"),
    )
    proc = spawn_daemon(tmp_path, doc, "-v")
    log = LogLines(proc.stderr)
    try:
        assert log.wait_for("window 3 ", 60), log.text()
        filler = fill(small_disk)
        assert log.wait_for("cannot store window", 30), log.text()
        stored = log.count("window ")
        # Later windows finish while the disk is full: held, not lost, and the error is logged once.
        assert log.wait_for("(3 held)", 30), log.text()
        filler.unlink()  # space returns
        assert log.wait_for("storage works again", 30), log.text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.text()
    finally:
        proc.kill()
    assert log.count("cannot store window") == 1 and stored >= 3
    windows = [json.loads(line) for line in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
    starts = [datetime.fromisoformat(w["window"]["start"].replace("Z", "+00:00")).timestamp() for w in windows]
    assert all(b - a == 1 for a, b in zip(starts, starts[1:])), starts  # no finished window missing


def test_missing_camera_is_reported_and_retried(tmp_path: Path) -> None:
    doc = config(
        tmp_path,
        Path("unused"),
        source={"type": "v4l2", "device": "/dev/video99", "reopen_backoff_s": {"initial": 0.05, "max": 0.1}},
    )
    proc = spawn_daemon(tmp_path, doc)
    seen: list[str] = []
    try:
        assert watch(proc.stderr, "retry 3", seen).wait(60), "".join(seen)
        assert any("camera /dev/video99 not found" in line for line in seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        proc.kill()


def test_malformed_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("device_id: cam\nsource: {type: file, path: x.avi}\naggregation: {window_s: -5}\n")
    for command in ("check", "run"):
        proc = subprocess.run(
            [sys.executable, "-m", "edge.cli", command, "--config", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert "aggregation.window_s" in proc.stderr and "-5" in proc.stderr


def test_logs_and_state_hold_no_per_person_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scene = Scene(640, 480, 10.0, 12.0, (walker(2.0, 5.0, 0.25), walker(3.0, 6.0, 0.75)))
    video = write_video(scene, tmp_path / "two.avi")
    with caplog.at_level("DEBUG"):
        windows = run_daemon(tmp_path, config(tmp_path, video))
    assert sum(w["visitors"] for w in windows) == 2
    for record in caplog.records:
        text = record.getMessage().lower()
        assert "box" not in text and "track_key" not in text and "detection(" not in text, text
    # The state directory holds the durable counters (seq, stream, day total, the open window's
    # aggregate checkpoint) and the instance lock (a pid): no images, no tracks.
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert all(name.startswith("seq.sqlite3") or name == "daemon.lock" for name in files), files
    assert (tmp_path / "state" / "daemon.lock").read_text().strip().isdigit()
    with closing(sqlite3.connect(tmp_path / "state" / "seq.sqlite3")) as db:
        keys = {k for (k,) in db.execute("SELECT key FROM text_state")} | {
            k for (k,) in db.execute("SELECT key FROM seq_state")
        }
    assert keys <= {"next", "stream", "day", "checkpoint"}, keys


def test_switched_off_attributes_are_left_out_of_the_windows(tmp_path: Path) -> None:
    scene = Scene(640, 480, 10.0, 10.0, (walker(2.0, 4.0, 0.5),))
    windows = run_daemon(
        tmp_path,
        config(tmp_path, write_video(scene, tmp_path / "one.avi"), attributes={"expression": False, "age": False}),
    )
    assert windows and all("expression" not in w and "age" not in w and "gender" in w for w in windows)


def test_a_source_that_gives_up_exits_1_with_the_reason(tmp_path: Path) -> None:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here; this test needs it missing")
    proc = spawn_daemon(tmp_path, config(tmp_path, Path("unused"), source={"type": "picamera2"}))
    try:
        _, log = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, log
    assert "picamera2 is not installed" in log and "gave up" in log
    windows = [json.loads(line) for line in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert windows[-1]["window"]["partial"] is True and windows[-1]["visitors"] == 0


def test_clock_steps_are_told_from_time_passing() -> None:
    assert clock_step(1000.0, 50.0, 1000.2, 50.2) == 0.0  # a frame later
    assert clock_step(1000.0, 50.0, 1030.0, 80.0) == 0.0  # a 30 s camera outage: both clocks moved
    assert clock_step(1000.0, 50.0, 1000.0 + CLOCK_STEP_S - 1, 50.1) == 0.0  # drift and jitter
    assert clock_step(1000.0, 50.0, 4600.2, 50.2) == pytest.approx(3600.0)  # NTP set the clock forward
    assert clock_step(4600.0, 50.0, 1000.2, 50.2) == pytest.approx(-3600.0)  # and back
