"""The aarch64 check's own parts, on this machine: the x86-64 vs aarch64 comparison
(tests/aarch64/compare.py) fails on what a broken Pi build produces (a flipped label, a lost face,
a box or an age beyond the stated tolerance, other counts), and the check says why it skips."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "aarch64"))
from compare import Tolerance, compare_records, compare_totals, read_records, run_totals  # noqa: E402

FACE = {"box": [180.6, 70.0, 265.0, 176.7], "age": 28.0, "gender": "female", "expression": "happy"}
OTHER = {"box": [20.0, 30.0, 60.0, 80.0], "age": 51.0, "gender": "male", "expression": "neutral"}


def records(tmp_path: Path, faces_per_picture: dict[str, list[dict]], name: str) -> dict[str, list[dict]]:
    path = tmp_path / f"{name}.jsonl"
    lines = [
        json.dumps({"source": f"/somewhere/{name}/{pic}", "frame": 0, "faces": faces})
        for pic, faces in faces_per_picture.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return read_records(path)


def test_records_are_paired_by_picture_name_and_face_position(tmp_path: Path) -> None:
    x86 = records(tmp_path, {"a.jpg": [FACE, OTHER], "b.jpg": []}, "x86")
    moved = copy.deepcopy(OTHER)
    moved["box"] = [v + 1.5 for v in moved["box"]]
    moved["age"] += 2.5
    arm = records(tmp_path, {"a.jpg": [moved, FACE], "b.jpg": []}, "arm")  # other order, other folder
    cmp = compare_records(x86, arm)
    assert (cmp.pictures, cmp.faces) == (2, 2)
    assert cmp.box_px == pytest.approx(1.5) and cmp.age_years == pytest.approx(2.5)
    assert cmp.failures(Tolerance()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.update(gender="male"), "gender female against male"),
        (lambda f: f.update(expression="neutral"), "expression happy against neutral"),
        (lambda f: f.update(ethnicity="asian"), "ethnicity None against asian"),
        (lambda f: f.update(box=[v + 2.5 for v in f["box"]]), "a box corner moved 2.5 px"),
        (lambda f: f.update(age=f["age"] + 3.5), "an age moved 3.5 y"),
    ],
)
def test_each_kind_of_difference_beyond_tolerance_fails(tmp_path: Path, change, expected: str) -> None:
    face = copy.deepcopy(FACE)
    change(face)
    cmp = compare_records(records(tmp_path, {"a.jpg": [FACE]}, "x86"), records(tmp_path, {"a.jpg": [face]}, "arm"))
    failures = cmp.failures(Tolerance())
    assert len(failures) == 1 and expected in failures[0]


def test_a_lost_face_or_picture_fails(tmp_path: Path) -> None:
    x86 = records(tmp_path, {"a.jpg": [FACE, OTHER], "b.jpg": [FACE]}, "x86")
    arm = records(tmp_path, {"a.jpg": [FACE]}, "arm")
    failures = compare_records(x86, arm).failures(Tolerance())
    assert failures == ["a.jpg#0: 2 faces against 1", "b.jpg#0: analysed on one side only"]


def test_daemon_runs_compare_totals_not_wall_clock_windows(tmp_path: Path) -> None:
    def window(seq: int, visitors: int, ended: int, start: str) -> dict:
        return {
            "seq": seq,
            "window": {"start": start, "end": start, "partial": False},
            "today": {"date": start[:10], "visitors": visitors},
            "visitors": visitors,
            "dwell_s": {"n": ended, "mean": 4.0 if ended else None},
            "gender": {"female": ended, "male": 0},
        }

    def write(name: str, windows: list[tuple[int, int]], start: str) -> dict:
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(window(i + 1, v, n, start)) for i, (v, n) in enumerate(windows)))
        return run_totals(path)

    x86 = write("x86.jsonl", [(1, 0), (2, 1), (0, 2)], "2026-12-03T05:00:00Z")
    # Cut elsewhere (another start second): other windows, same totals.
    assert compare_totals(x86, write("arm.jsonl", [(3, 1), (0, 2)], "2026-12-04T09:30:02Z")) == []
    diffs = compare_totals(x86, write("arm2.jsonl", [(2, 1), (0, 1)], "2026-12-04T09:30:02Z"))
    assert diffs == [
        "dwell_s: 12.0 against 8.0",
        "ended_tracks: 3 against 2",
        "gender.female: 3 against 2",
        "visitors: 3 against 2",
    ]


def test_without_root_the_check_skips_and_says_why() -> None:
    # The unprivileged process runs a copy in a folder anyone may read: a checkout may live where
    # only its owner can (a `mktemp -d` folder, root's home), which says nothing about the check.
    here = Path(tempfile.mkdtemp(prefix="pi-check-", dir="/tmp"))
    try:
        here.chmod(0o755)
        for name in ("pi_check.py", "compare.py"):
            shutil.copy(Path(__file__).parent / "aarch64" / name, here / name)
            (here / name).chmod(0o644)
        cmd = [sys.executable, str(here / "pi_check.py"), "--cache", "/nonexistent/never-created"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("setpriv (util-linux) is needed to drop root")
            cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=here)
    finally:
        shutil.rmtree(here, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("SKIPPED: aarch64 (Raspberry Pi) check: needs root"), proc.stdout
    assert not Path("/nonexistent/never-created").exists()
