"""Faults a Pi in a shop meets, against the real daemon: signals (SIGTERM, SIGKILL, SIGHUP), a
second instance, a full disk (during a run and at start), a read-only state directory, a missing
camera, a source that gives up, an unreadable file, a corrupt model, a sink whose network thread
dies, and wall-clock steps (through the daemon's injected clock, not by patching libc).

Each test asserts what was published (seqs contiguous, windows not lost) and what was logged."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from functools import partial
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest
import yaml
from daemon_proc import REPO, LogLines, config, jsonl_sink, run_daemon, run_edge, spawn_daemon, walker, watch
from filesystems import failing_ext4, fill, tmpfs
from mqtt_broker import HOST, Broker
from mqtt_clients import LogWaiter, Subscriber, mqtt_sink

from edge.cli import main
from edge.daemon import Daemon
from edge.scenes import Scene, write_video
from edge.settings import parse_config
from edge.state_lock import StateLock
from edge.state_store import StateStore


def live_config(tmp_path: Path, **overrides: object) -> dict:
    """A config replaying a looping clip of one walker in real time, as a camera delivers frames."""
    video = write_video(Scene(640, 480, 10.0, 6.0, (walker(1.0, 4.0, 0.5),)), tmp_path / "loop.avi")
    source = {"type": "file", "path": str(video), "realtime": True, "loop": True}
    return config(tmp_path, video, source=source, **overrides)


def test_sigterm_closes_a_partial_window_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "windows.jsonl"
    doc = live_config(tmp_path, aggregation={"window_s": 3600, "min_cell": 1})
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
            row = db.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
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
    state_db = tmp_path / "state" / "state.sqlite3"
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


def test_a_lost_wal_after_sigkill_starts_a_new_stream_instead_of_reusing_seqs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What ``cp *.sqlite3`` to a backup and back, or an SD card that drops acknowledged writes,
    does: the store comes back older than what was published. Seqs 9-14 used to go out again with
    other windows under the same stream; a consumer de-duplicating on (device, stream, seq) dropped
    them silently."""
    doc = live_config(tmp_path, aggregation={"window_s": 1, "min_cell": 1})
    proc = spawn_daemon(tmp_path, doc)
    log = LogLines(proc.stderr)
    try:
        assert log.wait_for("window 4 ", 60), log.text()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    (tmp_path / "state" / "state.sqlite3-wal").unlink()
    before = published(tmp_path / "windows.jsonl")
    empty = write_video(Scene(640, 480, 10.0, 2.0, ()), tmp_path / "empty.avi")
    windows = run_daemon(tmp_path, dict(doc, source={"type": "file", "path": str(empty), "realtime": False}))
    later = windows[len(before) :]
    assert later and {w["stream"] for w in later}.isdisjoint({w["stream"] for w in before})
    assert min(w["seq"] for w in later) > max(w["seq"] for w in before)
    assert "cannot be trusted to continue stream" in caplog.text and "new stream" in caplog.text


def test_a_second_daemon_on_the_same_state_dir_is_refused_and_sighup_closes_the_window(tmp_path: Path) -> None:
    doc = live_config(tmp_path, aggregation={"window_s": 3600, "min_cell": 1})
    first = spawn_daemon(tmp_path, doc)
    seen: list[str] = []
    try:
        assert watch(first.stderr, "ready: models loaded", seen).wait(60), "".join(seen)
        second = run_edge("run", "--config", str(tmp_path / "config.yaml"))
        assert second.returncode == 2, second.stderr
        assert f"in use by another edge daemon (pid {first.pid})" in second.stderr
        first.send_signal(signal.SIGHUP)  # a closed terminal: close the window, do not just die
        assert first.wait(timeout=30) == 0, "".join(seen)
    finally:
        first.kill()
    windows = [json.loads(line) for line in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert windows and windows[-1]["window"]["partial"] is True
    assert "received SIGHUP" in "".join(seen)


def test_forget_refuses_while_a_daemon_holds_the_state_directory(tmp_path: Path) -> None:
    """A running daemon announces its device again at its next reconnect: forget says to stop it."""
    doc = config(tmp_path, Path("unused"), sink={"type": "mqtt", "host": HOST, "port": 1})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "state").mkdir()
    with StateLock(tmp_path / "state"):  # as the daemon holds it
        refused = run_edge("forget", "--config", str(tmp_path / "config.yaml"))
    assert refused.returncode == 2, refused.stderr
    assert f"(pid {os.getpid()})" in refused.stderr and "stop it first" in refused.stderr, refused.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a state directory whose disk can really fill up."""
    with tmpfs(tmp_path / "small-disk", "size=4m") as mount_point:
        yield mount_point


def published(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def contiguous(windows: list[dict]) -> bool:
    starts = [datetime.fromisoformat(w["window"]["start"].replace("Z", "+00:00")).timestamp() for w in windows]
    return all(b - a in (0, 1) for a, b in zip(starts, starts[1:]))  # 0: a window split by a restart


def test_a_full_disk_sends_windows_from_memory_then_restarts(tmp_path: Path, small_disk: Path) -> None:
    """Storage that fails while running: the windows go out from memory under a new stream, said
    once, and the daemon exits 1 after delivering them, so the service manager restarts it."""
    doc = live_config(
        tmp_path, aggregation={"window_s": 1, "min_cell": 1, "checkpoint_s": 0.5}, state_dir=str(small_disk / "state")
    )
    proc = spawn_daemon(tmp_path, doc, "-v")
    log = LogLines(proc.stderr)
    try:
        assert log.wait_for("window 3 ", 60), log.text()
        fill(small_disk)
        assert proc.wait(timeout=60) == 1, log.text()
    finally:
        proc.kill()
    text = log.text()
    assert text.count("cannot be written") >= 1 and "delivered from memory under a new stream" in text, text
    assert "stopping so the service restarts" in text and "(in memory only)" in text, text
    windows = published(tmp_path / "windows.jsonl")
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))  # none lost, none twice
    assert len({w["stream"] for w in windows}) == 2 and windows[-1]["window"]["partial"] is True
    assert contiguous(windows), [w["window"]["start"] for w in windows]


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


def test_starting_on_a_full_disk_counts_in_memory_and_says_so(tmp_path: Path, small_disk: Path) -> None:
    """A device rebooted with its disk full used to die in a restart loop; it counts on in memory
    (a restart would not help), says so in its log and health, and stops cleanly."""
    state = small_disk / "state"
    doc = live_config(tmp_path, aggregation={"window_s": 1, "min_cell": 1}, state_dir=str(state))
    run_daemon(tmp_path, dict(doc, source=dict(doc["source"], realtime=False, loop=False)))  # an earlier life
    before = len(published(tmp_path / "windows.jsonl"))
    fill(small_disk)
    proc = spawn_daemon(tmp_path, doc, "-v")
    log = LogLines(proc.stderr)
    try:
        assert log.wait_for("delivered from memory under a new stream", 60), log.text()
        assert log.wait_for('"storage":"failed"', 60), log.text()  # the health message (jsonl: debug log)
        assert log.wait_for("(in memory only)", 60), log.text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.text()
    finally:
        proc.kill()
    windows = published(tmp_path / "windows.jsonl")
    assert len(windows) - before >= 2
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
    assert len({w["stream"] for w in windows[before:]}) == 1 != len({w["stream"] for w in windows})


def test_a_card_turned_read_only_still_delivers_to_the_broker(tmp_path: Path, mqtt_broker: Broker) -> None:
    """The kernel remounts a failing SD card read-only mid-run: with the broker up, every finished
    window still reaches a subscriber (from memory), health says storage failed, the daemon exits 1
    after delivery; nothing numbered twice."""
    with failing_ext4(tmp_path / "card") as (card, fail):
        doc = live_config(
            tmp_path,
            aggregation={"window_s": 1, "min_cell": 1, "checkpoint_s": 0.5},
            state_dir=str(card / "state"),
            sink={"type": "mqtt", "host": HOST, "port": mqtt_broker.port, "health_interval_s": 0.5},
        )
        sub = Subscriber(mqtt_broker.port, ["edge/test-cam/counts", "edge/test-cam/health"])
        proc = spawn_daemon(tmp_path, doc, "-v")
        log = LogLines(proc.stderr)
        try:
            assert log.wait_for("window 3 ", 60), log.text()
            fail()
            assert proc.wait(timeout=90) == 1, log.text()
            assert sub.wait_for(
                lambda ms: any(m.topic.endswith("health") and '"storage":"failed"' in m.payload for m in ms)
            ), [m.payload for m in sub.messages]
        finally:
            proc.kill()
            sub.close()
    text = log.text()
    assert "cannot be written" in text and "stopping so the service restarts" in text, text
    windows = [json.loads(m.payload) for m in sub.messages if m.topic.endswith("counts")]
    numbered = [(w["stream"], w["seq"]) for w in windows]
    assert len(set(numbered)) == len({json.dumps(w, sort_keys=True) for w in windows})  # one window per key
    later = [w for w in windows if w["stream"] != windows[0]["stream"]]
    assert later and later[-1]["window"]["partial"] is True  # after the failure, up to the stop
    first = {w["seq"]: w for w in windows}
    assert sorted(first) == list(range(1, max(first) + 1))  # every finished window reached the broker
    assert contiguous(sorted(first.values(), key=lambda w: w["seq"]))


def test_a_read_only_state_directory_is_named(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        video = write_video(Scene(640, 480, 10.0, 1.0, ()), tmp_path / "empty.avi")
        for state in (read_only, read_only / "state"):
            proc = spawn_daemon(tmp_path, config(tmp_path, video, state_dir=str(state)))
            _, err = proc.communicate(timeout=60)
            assert proc.returncode in (1, 2), err
            assert str(state) in err and "Read-only file system" in err and "Traceback" not in err, err


def test_an_unreadable_or_missing_file_is_refused_before_anything_is_published(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    """``edge run`` does ``edge check``'s pre-start checks: a video file that is missing or does not
    decode stops it with exit 2 and the same words, before a window is made or published (a real
    subscriber sees none)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    missing = tmp_path / "missing.avi"
    sub = Subscriber(mqtt_broker.port, ["edge/#"])
    try:
        for video in (bad, missing):
            doc = config(tmp_path, video)
            doc["sink"] = {"type": "mqtt", "host": HOST, "port": mqtt_broker.port, "keepalive": 2}
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(doc))
            done = run_edge("run", "--config", str(path))
            check = run_edge("check", "--config", str(path))
            assert done.returncode == check.returncode == 2, done.stderr
            said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
            assert said and said == [line for line in check.stderr.splitlines() if line.startswith("error: ")]
            assert f"source.path: {video}" in said[0] or str(video) in said[0], said
        probe = Subscriber(mqtt_broker.port, ["probe/#"])  # anything the daemon sent is in by now
        mqtt_publish.single("probe/x", "1", hostname=HOST, port=mqtt_broker.port)
        assert probe.wait_for(lambda ms: len(ms) >= 1)
        probe.close()
        assert not [m.topic for m in sub.messages], [m.topic for m in sub.messages]
    finally:
        sub.close()


def test_a_corrupt_model_is_refused_by_check_and_run_with_both_checksums(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("*float32*"))
    target = models / "age_gender_int8.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: a bad SD card sector
    target.write_bytes(bytes(data))
    video = write_video(Scene(640, 480, 10.0, 1.0, ()), tmp_path / "empty.avi")
    doc = config(tmp_path, video, models={"dir": str(models)})
    for command in ("check", "run"):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(doc))
        done = run_edge(command, "--config", str(path))
        assert done.returncode == 2, (command, done.stderr)
        assert f"model file {target} does not match the manifest" in done.stderr, (command, done.stderr)
        assert "expected sha256" in done.stderr and "file has" in done.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sink.host", "broker..local"),
        ("sink.keepalive", 70000),
        ("sink.topic_prefix", "e" * 70000),
        ("sink.topic_prefix", "$SYS/edge/"),
        ("runtime.threads", 100000),
        ("source.reopen_backoff_s.initial", 1e300),
        ("site", "lobby \ud800"),
    ],
)
def test_values_that_used_to_crash_at_run_time_fail_edge_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: object
) -> None:
    doc: dict = {
        "device_id": "cam",
        "source": {"type": "file", "path": str(REPO / "edge" / "data" / "astronaut.jpg")},
        "sink": {"type": "mqtt"},
    }
    *parents, leaf = key.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=False), encoding="utf-8")
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{key}: expected" in err and "line" in err, err
    assert len(err) < 1000  # a long value is cut, never echoed whole


# --------------------------------------------------------------------------- the sink dies


def test_a_sink_whose_network_thread_dies_stops_the_daemon_with_1(tmp_path: Path) -> None:
    """Spooling on for ever while nothing is published would look healthy; the daemon stops with 1
    (systemd restarts it) and the finished window waits in the spool."""
    doc = live_config(tmp_path)
    handler = LogWaiter()
    logging.getLogger("edge").addHandler(handler)
    try:
        # A value validation refuses, given to the sink directly: the way a paho bug would kill the thread.
        stop, result = threading.Event(), []
        daemon = Daemon(parse_config(doc), stop, sink=lambda store: mqtt_sink(1883, store, "cam", host="broker..local"))
        runner = threading.Thread(target=lambda: result.append(daemon.run()))
        runner.start()
        runner.join(timeout=60)
        stop.set()  # a daemon that did not notice is stopped here, and the test fails below
        runner.join(timeout=60)
        assert result == [1], handler.lines
        with StateStore(tmp_path / "state" / "state.sqlite3", 100) as store:
            assert store.depth() == 1  # the window closed at the stop is kept for the next start
    finally:
        logging.getLogger("edge").removeHandler(handler)
    (line,) = [x for x in handler.lines if "stopping (finished windows stay in the spool" in x]
    assert "the MQTT network thread for broker..local:1883 stopped (UnicodeError" in line


# --------------------------------------------------------------------------- clock steps


class SteppableClock:
    """The machine's clocks, with a wall clock the test can step the way NTP does."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


def test_clock_steps_close_the_window_and_counting_resumes_on_the_new_clock(tmp_path: Path) -> None:
    """A Pi boots on a stale clock and NTP steps it: +1 h used to publish 3,600 empty windows in a
    burst, -1 h to hold one window open for an hour."""
    doc = live_config(tmp_path, aggregation={"window_s": 1, "min_cell": 1})
    clock, stop = SteppableClock(), threading.Event()
    handler = LogWaiter()
    logger = logging.getLogger("edge.daemon")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    out = tmp_path / "windows.jsonl"
    try:
        daemon = Daemon(parse_config(doc), stop, sink=partial(jsonl_sink, out), clock=clock)
        runner = threading.Thread(target=lambda: daemon.run())
        runner.start()
        try:
            assert handler.wait_for(r"^window 2 ", timeout=60), handler.lines
            stepped_at = time.time()
            clock.offset = 3600.0
            assert handler.wait_for("the wall clock stepped", timeout=30), handler.lines
            n = len(handler.lines)
            assert len(handler.wait_for(r"^window \d+ ", count=2, since=n, timeout=30)) >= 2, handler.lines
            clock.offset = 0.0
            assert len(handler.wait_for("the wall clock stepped", count=2, timeout=30)) == 2, handler.lines
            n = len(handler.lines)
            assert len(handler.wait_for(r"^window \d+ ", count=2, since=n, timeout=30)) >= 2, handler.lines
        finally:
            stop.set()
            runner.join(timeout=60)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    steps = [x for x in handler.lines if "the wall clock stepped" in x]
    assert steps[0].startswith("the wall clock stepped +3600 s") and steps[1].startswith(
        "the wall clock stepped -3600 s"
    )
    windows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
    assert len(windows) < 60  # no burst of empty windows for the hour that did not pass
    starts = [datetime.fromisoformat(w["window"]["start"].replace("Z", "+00:00")).timestamp() for w in windows]
    ahead = [i for i, s in enumerate(starts) if s >= stepped_at + 3000]
    assert ahead, starts  # counted on the new clock
    first, last = ahead[0], ahead[-1]
    assert windows[first - 1]["window"]["partial"] is True  # the window open at the step
    assert windows[last]["window"]["partial"] is True  # and the one open at the step back
    assert last + 1 < len(windows) and starts[last + 1] < stepped_at + 600  # back on the old clock
    # Back on the old clock the windows start before those the stream stored: a new stream from there.
    streams = [w["stream"] for w in windows]
    assert len(set(streams[: last + 1])) == 1 and set(streams[last + 1 :]) == {streams[-1]} != {streams[0]}
