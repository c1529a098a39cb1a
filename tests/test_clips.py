"""`edge eval --clips`: the daemon's counting scored against labelled clips.

Synthetic clips (the scene generator knows every visitor) prove the plumbing and the
error messages; the real development clips, when present beside the checkout, hold the
product's bars: every visitor count exact, no gender over-counted, frame recall >= 0.90
with <= 5% extra boxes, and a named gender right >= 85% of the time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main
from edge.scenes import Scene, random_scene, write_video

REAL_FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-footage"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def labelled_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    walkers = random_scene(3, 16.0, fps=8.0, dwell_s=(3.0, 5.0), seed=6)  # two at once, then one more
    assert len(walkers.visitors) == 3
    empty = Scene(640, 480, 10.0, 4.0, (), seed=6)
    write_video(walkers, folder / "walkers.avi")
    write_video(empty, folder / "empty.avi")
    labels = {
        "walkers": {"visitors": 3, "female": 3, "male": 0, "faces_per_frame": None, "viewers": 3},
        "empty": {"visitors": 0, "female": 0, "male": 0, "faces_per_frame": 0},
    }
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder


def test_clips_are_counted_as_the_daemon_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = labelled_folder(tmp_path)
    code, out, err = run_cli(capsys, "eval", "--clips", str(folder), "--json")
    assert code == 0, err
    doc = json.loads(out)
    by_clip = {c["clip"]: c for c in doc["clips"]}
    walkers, empty = by_clip["walkers"], by_clip["empty"]
    assert walkers["visitors"] == 3 and walkers["visitors_truth"] == 3
    assert walkers["male"] == 0 and walkers["female"] + walkers["unknown"] == 3  # the astronaut is a woman
    assert walkers["recall"] is None  # faces_per_frame not labelled
    # The walkers face the camera as they cross: each is a viewer, for at most the time it was seen.
    assert walkers["viewers"] == walkers["viewers_truth"] == 3 and empty["viewers_truth"] is None
    assert 3 * 2.0 < walkers["attention_s"] <= 3 * 5.0
    assert empty["visitors"] == 0 and empty["boxes"] == 0 and empty["extra_rate"] == 0.0
    assert doc["total"]["visitors"] == 3 and doc["total"]["frames"] == walkers["frames"] + empty["frames"]
    # The table names every clip and the total.
    code, out, _ = run_cli(capsys, "eval", "--clips", str(folder))
    assert code == 0 and "walkers" in out and "empty" in out and "total" in out


@pytest.mark.parametrize(
    "labels, expected",
    [
        (None, "labels.json not found"),
        ("{not json", "not valid JSON"),
        ({"walkers": {"visitors": 1}}, "expected keys visitors, female, male"),
        ({"walkers": {"visitors": -1, "female": 0, "male": 0}}, "walkers.visitors: expected a count >= 0, got -1"),
        ({"missing": {"visitors": 1, "female": 0, "male": 1}}, "no video named missing"),
        ({"walkers": {"visitors": 1, "female": 0, "male": 0, "viewers": "two"}}, "walkers.viewers: expected a count"),
        ({"walkers": {"visitors": 0, "female": 0, "male": 0, "people": 1.5}}, "walkers.people: expected a count"),
        (
            {"walkers": {"visitors": 0, "female": 0, "male": 0, "crossings": {"in": 1}}},
            'walkers.crossings: expected {..., "in": N, "out": N}',
        ),
        (
            {"walkers": {"visitors": 0, "female": 0, "male": 0, "crossings": {"start": [0, 2], "in": 1, "out": 0}}},
            "start: expected a point [x, y]",
        ),
    ],
)
def test_bad_labels_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: object, expected: str
) -> None:
    folder = tmp_path / "clips"
    write_video(Scene(64, 48, 5.0, 1.0, ()), folder / "walkers.avi")
    if labels is not None:
        (folder / "labels.json").write_text(labels if isinstance(labels, str) else json.dumps(labels))
    code, _, err = run_cli(capsys, "eval", "--clips", str(folder))
    assert code == 2 and expected in err, err


@pytest.mark.skipif(not REAL_FOOTAGE.is_dir(), reason="the real development clips are not beside this checkout")
def test_real_development_clips_meet_the_bars(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", "--clips", str(REAL_FOOTAGE), "--json")
    assert code == 0, err
    doc = json.loads(out)
    for clip in doc["clips"]:
        assert clip["visitors"] == clip["visitors_truth"], clip
        assert clip["female"] <= clip["female_truth"] and clip["male"] <= clip["male_truth"], clip
        # Everyone who showed a face is a person, once; no more people than were there.
        assert clip["visitors"] <= clip["people"] <= clip["people_truth"], clip
    walking_away = next(c for c in doc["clips"] if c["clip"] == "one-by-one-person-detection")
    assert (walking_away["people"], walking_away["visitors"]) == (1, 0)
    total = doc["total"]
    assert total["recall"] >= 0.90, total
    assert total["extra_rate"] <= 0.05, total
    assert total["gender_accuracy"] is None or total["gender_accuracy"] >= 0.85, total


@pytest.mark.skipif(not REAL_FOOTAGE.is_dir(), reason="the real development clips are not beside this checkout")
def test_crossings_of_a_labelled_line_are_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The person walking away from the camera steps over a line drawn across the floor near the
    frame's bottom (the way in: up the image, left of the line drawn left to right)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    clip = "one-by-one-person-detection"
    (folder / f"{clip}.avi").symlink_to(REAL_FOOTAGE / f"{clip}.avi")
    line = {"start": [0.1, 0.93], "end": [0.9, 0.93], "in_side": "left", "in": 1, "out": 0}
    labels = {clip: {"visitors": 0, "female": 0, "male": 0, "people": 1, "crossings": line}}
    (folder / "labels.json").write_text(json.dumps(labels))
    code, out, err = run_cli(capsys, "eval", "--clips", str(folder), "--json")
    assert code == 0, err
    (scored,) = json.loads(out)["clips"]
    assert scored["crossings"] == scored["crossings_truth"] == [1, 0]
    assert scored["people"] == 1 and scored["people_with_face"] == 0
    flipped = dict(labels[clip], crossings=dict(line, in_side="right"))
    (folder / "labels.json").write_text(json.dumps({clip: flipped}))
    code, out, err = run_cli(capsys, "eval", "--clips", str(folder), "--json")
    assert code == 0 and json.loads(out)["clips"][0]["crossings"] == [0, 1], err
