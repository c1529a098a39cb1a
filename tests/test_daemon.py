"""The daemon end to end: generated videos with known visitors -> `edge run` -> windows.

Its behaviour under faults (signals, full disk, clock steps, ...) is in tests/faults/."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from daemon_proc import config, run_daemon, run_edge, walker
from payload_schema import check

from edge.daemon import CLOCK_STEP_S, clock_step
from edge.scenes import Scene, Visitor, crossing_scene, random_scene, write_video

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
    "people",
    "people_with_face",
    "passers_by",
    "stayers",
    "viewers",
    "viewer_rate",
    "attention_s",
    "viewers_by",
    "gender",
    "age",
    "expression",
    "ethnicity",
    "suppressed",
}


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
    # The astronaut is a woman: never published male. One walker's crops score under
    # min_gender_score (0.8) and do not agree enough (edge.tracker.agreed_gender), so she may stay unknown.
    genders = {g: sum(w["gender"][g] for w in windows) for g in ("female", "male", "unknown")}
    assert genders["male"] == 0 and genders["female"] + genders["unknown"] == 4, genders
    assert genders["female"] >= 3, genders
    # The walkers face the camera all the way across: each is a viewer (attention on by default), and
    # no window's attention exceeds its visitors' dwell.
    assert sum(w["viewers"] for w in windows) == 4
    # People counting is on by default: every visitor is also a person, with a face.
    assert sum(w["people"] for w in windows) >= sum(w["people_with_face"] for w in windows) >= 4
    for w in windows:
        assert w["attention_s"]["sum"] <= w["dwell_s"]["n"] * (w["dwell_s"]["mean"] or 0.0) + 1e-6
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


def crowd_counts(tmp_path: Path, scenes: list[Scene]) -> tuple[int, int]:
    """Visitors ``edge run`` counts over ``scenes`` (1280x720 crowds with 50-60 px faces), and the truth."""
    counted, truth = 0, 0
    for i, scene in enumerate(scenes):
        work = tmp_path / str(i)
        work.mkdir()
        video = write_video(scene, work / "scene.avi")
        # Faces are 50-60 px: the operator says so (README "Face size"), 7 detector passes a frame, not 33.
        doc = config(work, video, aggregation={"window_s": 30, "min_cell": 1}, detector={"min_face_px": 40})
        counted += sum(w["visitors"] for w in run_daemon(work, doc))
        truth += len(scene.visitors)
    return counted, truth


def test_crowded_scenes_within_ten_percent(tmp_path: Path) -> None:
    # Three seeded crowds, summed: one seed alone decides nothing (seed 11 alone once passed a 5% bar
    # that seeds 12 and 13 showed the daemon did not meet; 2026-12-03: +8% over the three; 2026-12-04:
    # 43, 40, 40 of 43, 40, 40, docs/accuracy.md "Counting in crowds").
    scenes = [
        random_scene(60, 90.0, fps=8.0, width=1280, height=720, face_px=(50.0, 60.0), seed=seed)
        for seed in (11, 12, 13)
    ]
    assert all(len(scene.visitors) >= 40 for scene in scenes)
    counted, truth = crowd_counts(tmp_path, scenes)
    assert abs(counted - truth) <= 0.10 * truth, (counted, truth)


def test_faces_passing_behind_each_other_are_counted_once(tmp_path: Path) -> None:
    # Walkers crossing in one lane: for a few frames one face is cut to a piece or hidden by the
    # other. Measured 2026-12-04 on these three seeds (72 people): tracks extrapolating box sizes
    # from the last two boxes counted 99 (+38%); keeping the size, smoothing the velocity and
    # coasting through a piece of a box: 72.
    counted, truth = crowd_counts(tmp_path, [crossing_scene(12, seed=seed) for seed in (1, 2, 3)])
    assert abs(counted - truth) <= 0.05 * truth, (counted, truth)


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


def test_malformed_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("device_id: cam\nsource: {type: file, path: x.avi}\naggregation: {window_s: -5}\n")
    for command in ("check", "run"):
        proc = run_edge(command, "--config", str(path), timeout=60)
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
    # The state directory holds the state store (seq, stream, day totals, the open window's
    # aggregate checkpoint, unsent windows), its mark and the instance lock (a pid): no images, no
    # tracks.
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert all(name.startswith("state.sqlite3") or name in ("state.mark", "daemon.lock") for name in files), files
    assert (tmp_path / "state" / "daemon.lock").read_text().strip().isdigit()
    with closing(sqlite3.connect(tmp_path / "state" / "state.sqlite3")) as db:
        keys = {k for (k,) in db.execute("SELECT key FROM meta")}
        days = db.execute("SELECT * FROM days").fetchall()
        unsent = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    assert keys <= {"next", "stream", "evicted", "last_start", "opened_at", "checkpoint"}, keys
    assert sum(visitors for _, visitors in days) == 2 and unsent == 0  # written to the jsonl file, acknowledged
    mark = json.loads((tmp_path / "state" / "state.mark").read_text())
    assert set(mark) == {"stream", "seq", "days"}


def test_switched_off_attributes_are_left_out_of_the_windows(tmp_path: Path) -> None:
    scene = Scene(640, 480, 10.0, 10.0, (walker(2.0, 4.0, 0.5),))
    windows = run_daemon(
        tmp_path,
        config(tmp_path, write_video(scene, tmp_path / "one.avi"), attributes={"expression": False, "age": False}),
    )
    assert windows and all("expression" not in w and "age" not in w and "gender" in w for w in windows)


def test_clock_steps_are_told_from_time_passing() -> None:
    assert clock_step(1000.0, 50.0, 1000.2, 50.2) == 0.0  # a frame later
    assert clock_step(1000.0, 50.0, 1030.0, 80.0) == 0.0  # a 30 s camera outage: both clocks moved
    assert clock_step(1000.0, 50.0, 1000.0 + CLOCK_STEP_S - 1, 50.1) == 0.0  # drift and jitter
    assert clock_step(1000.0, 50.0, 4600.2, 50.2) == pytest.approx(3600.0)  # NTP set the clock forward
    assert clock_step(4600.0, 50.0, 1000.2, 50.2) == pytest.approx(-3600.0)  # and back
