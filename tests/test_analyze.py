"""The analysis engine through its CLI (``edge analyze`` / ``edge eval``) and its Python API."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.attention import AttentionConfig, looking
from edge.attributes import VIEW_MARGINS, AttributesConfig, settle_views
from edge.boxes import iou_matrix
from edge.cli import main
from edge.evaluation.labels import Sample
from edge.evaluation.outcomes import Outcome
from edge.evaluation.parity import parity
from edge.evaluation.report import parity_table
from edge.models import DEFAULT_DIR
from edge.preprocess import face_views
from edge.records import Face
from edge.synthetic import crowd_frame

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-footage"
FACE_KEYS = {"box", "score", "age", "gender", "gender_score", "expression", "expression_score"}
RECORD_KEYS = {"source", "frame", "width", "height", "faces", "timings_ms"}


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(AnalyzerConfig(threads=2))


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_analyze_json_schema_on_a_real_photo(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    photo = write_rgb(tmp_path / "astronaut.png", astronaut)
    code, out, err = run_cli(capsys, "analyze", "--json", str(photo))
    assert code == 0, err
    (line,) = out.splitlines()
    record = json.loads(line)
    assert set(record) == RECORD_KEYS
    assert record["source"] == str(photo) and record["frame"] == 0
    assert (record["width"], record["height"]) == (512, 512)
    assert set(record["timings_ms"]) == {"detect", "pose", "attributes", "total"}
    (face,) = record["faces"]
    assert set(face) == FACE_KEYS
    assert len(face["box"]) == 4 and 0.5 <= face["score"] <= 1
    assert face["gender"] in ("female", "male") and 0.5 <= face["gender_score"] <= 1
    assert face["expression"] in ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    assert 10 < face["age"] < 70
    # Eileen Collins is smiling in this portrait.
    assert face["expression"] == "happy"


def test_analyze_pose_gives_yaw_pitch_roll_and_looking(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    h, w = astronaut.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 20.0, 1.0)  # 20 deg counter-clockwise on screen
    rolled = cv2.warpAffine(astronaut, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
    paths = [write_rgb(tmp_path / "a.png", astronaut), write_rgb(tmp_path / "b.png", rolled)]
    code, out, err = run_cli(capsys, "analyze", "--json", "--pose", *map(str, paths))
    assert code == 0, err
    upright, tilted = (json.loads(line) for line in out.splitlines())
    assert set(upright["timings_ms"]) == {"detect", "pose", "attributes", "total"}
    (face,) = upright["faces"]
    assert set(face) == FACE_KEYS | {"pose", "looking"}
    # The portrait faces the camera: inside the default cone, and level.
    assert abs(face["pose"]["yaw"]) < 10 and abs(face["pose"]["pitch"]) < 20 and abs(face["pose"]["roll"]) < 8
    assert face["looking"] is True
    # Turning the picture rolls the head the other way on screen and leaves where it looks about the same.
    (turned,) = tilted["faces"]
    assert -25 < turned["pose"]["roll"] - face["pose"]["roll"] < -10
    assert abs(turned["pose"]["yaw"] - face["pose"]["yaw"]) < 10 and turned["looking"] is True
    _, out, _ = run_cli(capsys, "analyze", str(paths[0]), "--pose")
    assert "(looking)" in out and "yaw " in out


@pytest.mark.skipif(not (CLIPS / "head-pose-face-detection-female.avi").is_file(), reason="no development clips")
def test_a_head_turned_aside_is_not_looking_and_its_mirror_turns_the_other_way(analyzer: Analyzer) -> None:
    cap = cv2.VideoCapture(str(CLIPS / "head-pose-face-detection-female.avi"))
    ok, bgr = cap.read()  # the first frame: her head turned well to the image's left
    cap.release()
    assert ok
    posed = Analyzer(replace(analyzer.config, pose=True))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    (left,) = [f.detection.pose for f in posed.analyze(rgb)]
    (right,) = [f.detection.pose for f in posed.analyze(np.ascontiguousarray(rgb[:, ::-1]))]
    assert left is not None and right is not None
    assert left.yaw < -30 and right.yaw > 30 and abs(left.yaw + right.yaw) < 5
    assert not looking(left, AttentionConfig()) and not looking(right, AttentionConfig())


def test_ethnicity_is_absent_unless_enabled(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    photo = write_rgb(tmp_path / "a.png", astronaut)
    _, out, _ = run_cli(capsys, "analyze", "--json", str(photo))
    assert set(json.loads(out)["faces"][0]) == FACE_KEYS
    code, out, err = run_cli(capsys, "analyze", "--json", "--ethnicity", str(photo))
    assert code == 0, err
    (face,) = json.loads(out)["faces"]
    assert set(face) == FACE_KEYS | {"ethnicity", "ethnicity_score"}
    assert face["ethnicity"] in ("white", "black", "asian", "indian", "other")


def test_a_face_too_small_to_judge_is_found_not_described_and_an_unsure_gender_is_not_named(
    tmp_path: Path, astronaut: np.ndarray, capsys
) -> None:
    """The daemon's rules for a face seen once: a face under attributes.min_face_px (36) keeps its
    box and null attributes; a gender under min_gender_score (0.8) is null, the rest stays."""
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)  # her face: about 27 px
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[160:320, 240:400] = small
    photo = write_rgb(tmp_path / "small.png", canvas)
    code, out, err = run_cli(capsys, "analyze", "--json", str(photo))
    assert code == 0, err
    (face,) = json.loads(out)["faces"]
    assert set(face) == FACE_KEYS and min(face["box"][2] - face["box"][0], face["box"][3] - face["box"][1]) < 36
    assert all(face[k] is None for k in FACE_KEYS - {"box", "score"}), face
    _, out, _ = run_cli(capsys, "analyze", "--json", "--describe-min-face", "0", str(photo))
    (face,) = json.loads(out)["faces"]
    assert face["expression"] is not None and face["age"] is not None
    # Her gender scores 0.91: named at the default gate, null above it, with age and expression kept.
    big = write_rgb(tmp_path / "big.png", astronaut)
    _, out, _ = run_cli(capsys, "analyze", "--json", str(big))
    (face,) = json.loads(out)["faces"]
    assert face["gender"] == "female" and face["gender_score"] >= 0.8
    _, out, _ = run_cli(capsys, "analyze", "--json", "--min-gender-score", str(face["gender_score"] + 0.01), str(big))
    (unsure,) = json.loads(out)["faces"]
    assert unsure["gender"] is None and unsure["gender_score"] is None
    assert unsure["age"] == face["age"] and unsure["expression"] == face["expression"]
    with pytest.raises(SystemExit):
        main(["analyze", "--min-gender-score", "-1", str(big)])
    assert "--min-gender-score: expected a number >= 0, got '-1'" in capsys.readouterr().err


def test_ethnicity_flag_help_says_it_is_restricted(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "Art. 5(1)(g)" in capsys.readouterr().out.replace("\n", " ")


def test_api_finds_every_face_of_a_composite_and_none_in_noise(analyzer: Analyzer) -> None:
    frame, truth = crowd_frame(6, 960, 540, face_px=70, seed=3)
    faces = analyzer.analyze(frame)
    assert all(isinstance(f, Face) for f in faces)
    assert len(faces) == len(truth) == 6
    matched = iou_matrix(np.array(truth), np.array([f.detection.box for f in faces])).max(axis=1)
    assert np.all(matched > 0.5)
    noise = np.random.default_rng(0).integers(0, 256, (540, 960, 3), dtype=np.uint8)
    assert analyzer.analyze(noise) == []


def test_attributes_switch_off(astronaut: np.ndarray) -> None:
    only_gender = Analyzer(AnalyzerConfig(attributes=AttributesConfig(age=False, expression=False), threads=1))
    (face,) = only_gender.analyze(astronaut)
    a = face.attributes
    assert a.gender in ("female", "male") and a.age is None and a.expression is None and a.ethnicity is None


def test_views_average_the_crops_of_shifted_and_scaled_boxes_near_a_decision() -> None:
    """An estimate over 7 views is the single-crop estimate of the box where that is far from any
    decision, and the mean of single-crop estimates on the 7 view boxes where it is near one (a
    gender gate at the face's own score puts every face near), face by face (several faces per
    frame, so a mix-up of faces and views would show)."""
    frame, _ = crowd_frame(4, 640, 480, face_px=90, seed=5)
    config = AnalyzerConfig(attributes=AttributesConfig(expression=False), threads=1)
    one = Analyzer(replace(config, attribute_views=1))
    detections = one.detect(frame)
    assert len(detections) == 4
    for d in detections:
        boxes = face_views(d.box, 7)
        assert len(boxes) == 7 and np.allclose(boxes[0], d.box)
        assert np.allclose(boxes[1:5].mean(axis=0), d.box) and not np.allclose(boxes[1], d.box)
    singles = [
        one.attributes.estimate(frame, [replace(d, box=tuple(b)) for b in face_views(d.box, 7)]) for d in detections
    ]
    margins = [abs(2 * s[0].gender_score - 1) for s in singles]  # distance between the two gender scores
    assert any(m >= 2 * VIEW_MARGINS["gender"] for m in margins), "every face is near a decision: one case untested"
    for gate in (None, "own"):
        for d, views, margin in zip(detections, singles, margins):
            gender_gate = views[0].gender_score if gate == "own" else None
            (a,) = Analyzer(replace(config, attribute_views=7, gender_gate=gender_gate)).attributes.estimate(frame, [d])
            if gate is None and margin >= 2 * VIEW_MARGINS["gender"]:  # far from 0.5, no gate: the box alone
                assert (a.age, a.gender, a.gender_score) == (views[0].age, views[0].gender, views[0].gender_score)
                continue
            assert a.age == pytest.approx(np.mean([s.age for s in views]), abs=1e-4)
            male = [s.gender_score if s.gender == "male" else 1 - s.gender_score for s in views]
            assert (a.gender == "male") == (np.mean(male) >= 0.5)
            assert a.gender_score == pytest.approx(max(np.mean(male), 1 - np.mean(male)), abs=1e-5)


def test_settle_views_runs_and_averages_only_where_the_first_view_is_near_a_decision() -> None:
    """The converter's proof combines views as the estimator does: the first view of each face, or
    the mean of its views where that first view's best two scores are close, or its best score is
    close to a gate; the other views are asked for only for those faces."""
    margin = VIEW_MARGINS["gender"]
    far, near = [0.9, 0.1], [0.5 + margin / 2, 0.5 - margin / 2]
    gender = np.array([far, [0.5, 0.5], near, [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
    age = np.arange(6, dtype=np.float32)[:, None]
    rows = {"gender": gender, "age": age}  # three faces of two views, one row per view
    first = {k: v[::2] for k, v in rows.items()}
    asked: list[list[int]] = []

    def more_views(faces: np.ndarray) -> dict[str, np.ndarray]:
        asked.append(faces.tolist())
        return {k: v[faces * 2 + 1] for k, v in rows.items()}

    out = settle_views(first, more_views, 2, ["gender"])
    assert asked == [[1, 2]]
    assert np.allclose(out["gender"], [far, np.mean([near, [0.1, 0.9]], axis=0), [0.5, 0.5]])
    assert np.allclose(out["age"], [[0.0], [2.5], [4.5]])
    assert np.allclose(first["age"], [[0.0], [2.0], [4.0]])  # the first views' outputs are kept
    gated = settle_views(first, more_views, 2, ["gender"], {"gender": 0.9 + margin / 2})
    assert asked[-1] == [0, 1, 2]  # 0.9 lies within the margin of the gate
    assert np.allclose(gated["age"], [[0.5], [2.5], [4.5]])
    asked.clear()
    assert np.allclose(settle_views({"gender": gender}, more_views, 1, ["gender"])["gender"], gender)
    assert asked == []


def test_an_unknown_view_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"views must be one of \(1, 5, 7\), got 3"):
        Analyzer(AnalyzerConfig(attribute_views=3))


def test_video_frames_are_analysed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(6):
        frame, _ = crowd_frame(1 + i % 2, 640, 480, 60, seed=i)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    code, out, err = run_cli(capsys, "analyze", "--json", "--every", "2", str(path))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in records] == [0, 2, 4]
    assert [len(r["faces"]) for r in records] == [1, 1, 1]  # frames 0, 2, 4 hold one face each


def test_gif_files_are_read_like_videos(tmp_path: Path, capsys) -> None:
    from PIL import Image  # ships with scikit-image, a test dependency

    path = tmp_path / "walk.gif"
    pictures = [Image.fromarray(crowd_frame(1 + i % 2, 640, 480, 60, seed=i)[0]) for i in range(3)]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    code, out, err = run_cli(capsys, "analyze", "--json", str(path), str(tmp_path))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2] * 2  # the file, then the folder holding it
    assert [len(r["faces"]) for r in records[:3]] == [1, 2, 1]


def test_bad_inputs_are_reported_per_file_and_the_rest_still_runs(
    tmp_path: Path, astronaut: np.ndarray, capsys
) -> None:
    good = write_rgb(tmp_path / "good.jpg", astronaut)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    missing = tmp_path / "missing.png"
    code, out, err = run_cli(capsys, "analyze", "--json", str(corrupt), str(text), str(missing), str(good))
    assert code == 1
    assert [json.loads(line)["source"] for line in out.splitlines()] == [str(good)]
    assert f"{corrupt}: not a readable image" in err
    assert f"{text}: unsupported file type .txt" in err
    assert f"{missing}: no such file or folder" in err


def test_corrupt_model_is_refused_with_both_checksums(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    models = tmp_path / "models"
    shutil.copytree(DEFAULT_DIR, models)
    manifest = json.loads((models / "manifest.json").read_text())
    target = models / manifest["models"]["detector"]["file"]
    target.write_bytes(target.read_bytes()[:-100])  # truncated copy
    photo = write_rgb(tmp_path / "a.png", astronaut)
    code, out, err = run_cli(capsys, "analyze", "--model-dir", str(models), str(photo))
    assert code == 2 and out == ""
    assert str(target) in err and manifest["models"]["detector"]["sha256"] in err and "file has" in err


def small_labelled_folder(tmp_path: Path, astronaut: np.ndarray) -> Path:
    folder = tmp_path / "faces"
    folder.mkdir()
    rows = []
    # Tight crops around the astronaut's face, like UTKFace's, plus one image with no face.
    for i, (x1, y1, x2, y2) in enumerate([(150, 40, 300, 200), (140, 30, 310, 210), (160, 50, 290, 190)]):
        crop = np.ascontiguousarray(astronaut[y1:y2, x1:x2])
        write_rgb(folder / f"face{i}.jpg", cv2.resize(crop, (200, 200)))
        rows.append({"file": f"face{i}.jpg", "age": 42, "gender": "female", "race": "white"})
    write_rgb(folder / "wall.jpg", np.full((200, 200, 3), 90, np.uint8))
    rows.append({"file": "wall.jpg", "age": 30, "gender": "male", "race": "black"})
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "age", "gender", "race"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_eval_on_a_small_labelled_folder(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    folder = small_labelled_folder(tmp_path, astronaut)
    code, out, err = run_cli(capsys, "eval", "--utkface", str(folder), "--json", "--int8-only")
    assert code == 0, err
    doc = json.loads(out)
    assert "parity" not in doc  # int8 only: nothing to compare with
    assert {"n", "detected", "gender_accuracy", "age_mae", "age_mae_adult", "groups"} <= set(doc)
    assert doc["n"] == 4 and doc["detected"] == 3
    assert doc["gender_accuracy"] == 1.0
    assert 0 <= doc["age_mae"] < 30 and doc["age_mae_adult"] == doc["age_mae"]
    assert doc["groups"]["race_x_gender"]["white female"]["n"] == 3
    assert doc["groups"]["race_x_gender"]["black male"]["detected"] == 0
    assert "ethnicity_accuracy" not in doc


def test_eval_reports_a_missing_folder(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "eval", "--utkface", str(tmp_path / "nope"))
    assert code == 2 and "no such folder" in err


def test_eval_reads_utkface_file_names_without_labels_csv(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    folder = tmp_path / "utk"
    folder.mkdir()
    crop = cv2.resize(np.ascontiguousarray(astronaut[40:200, 150:300]), (200, 200))
    write_rgb(folder / "42_1_0_20170109150557335.jpg", crop)  # 42 years, female, white
    write_rgb(folder / "30_0_1_20170109150557336.jpg", np.full((200, 200, 3), 90, np.uint8))  # no face
    write_rgb(folder / "notes.jpg", crop)  # not a UTKFace name: not a sample
    code, out, err = run_cli(capsys, "eval", "--utkface", str(folder), "--json", "--int8-only")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n"] == 2 and doc["detected"] == 1
    assert doc["groups"]["race_x_gender"]["white female"]["n"] == 1
    assert doc["groups"]["race_x_gender"]["black male"]["n"] == 1


def test_eval_names_the_layout_it_expects(tmp_path: Path, capsys) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"")
    code, _, err = run_cli(capsys, "eval", "--utkface", str(tmp_path))
    assert code == 2 and "labels.csv" in err and "AGE_GENDER_RACE_DATE" in err


SIZE_ROW_KEYS = {
    "face_px",
    "n",
    "detected",
    "detection_rate",
    "box_short_side_median",
    "detector_score_median",
    "gender_accuracy_adult",
    "age_mae_adult",
    "gender_accuracy_adult_by_score",
    "detection_rate_strong",
}


@pytest.fixture
def astronaut_folder(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """Three tight 200x200 crops of the astronaut's face, UTKFace-like, labelled 42, female, white."""
    folder = tmp_path / "faces"
    folder.mkdir()
    rows = []
    for i, (x1, y1, x2, y2) in enumerate([(150, 40, 300, 200), (140, 30, 310, 210), (160, 50, 290, 190)]):
        write_rgb(folder / f"face{i}.jpg", cv2.resize(np.ascontiguousarray(astronaut[y1:y2, x1:x2]), (200, 200)))
        rows.append({"file": f"face{i}.jpg", "age": 42, "gender": "female", "race": "white"})
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "age", "gender", "race"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_eval_face_px_reports_one_row_per_size(astronaut_folder: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "eval", "--utkface", str(astronaut_folder), "--face-px", "128,8", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "face_px" and doc["frame"] == [640, 480]
    assert list(doc["variants"]) == ["int8"]  # int8 only unless --with-float
    assert doc["detector_input"] == 512 and doc["images"] == 3 and doc["seconds"] > 0
    tiny, big = doc["sizes"]
    assert (tiny["face_px"], big["face_px"]) == (8, 128)  # sorted
    for row in (tiny, big):
        assert set(row) >= SIZE_ROW_KEYS and row["n"] == 3
        assert set(row["gender_accuracy_adult_by_score"]) == {"0.7", "0.8", "0.9"}
    assert tiny["detected"] == 0 and tiny["box_short_side_median"] is None
    assert tiny["detection_rate"]["value"] < big["detection_rate"]["value"]
    found = big["detected"]
    assert found >= 2 and big["gender_accuracy_adult"]["n"] == big["age_mae_adult"]["n"] == found
    assert big["gender_accuracy_adult"]["value"] == 1.0
    # Within the crop (these crops hold some hair and background around the face), never beyond it.
    assert 32 <= big["box_short_side_median"] <= 140 and 0.5 <= big["detector_score_median"] <= 1
    kept = big["gender_accuracy_adult_by_score"]["0.7"]
    assert kept["kept"] <= found and kept["coverage"] == kept["kept"] / found


def test_eval_face_px_table_and_limit(astronaut_folder: Path, capsys) -> None:
    code, out, err = run_cli(
        capsys, "eval", "--utkface", str(astronaut_folder), "--face-px", "8,128", "--limit", "2", "--int8-only"
    )
    assert code == 0, err
    assert "stratified sample of 2 of 3" in out and "crop px" in out and "detector input 512" in out
    rows = [line for line in out.splitlines() if line.startswith("| 8 |") or line.startswith("| 128 |")]
    assert [r.split("|")[1:3] for r in rows] == [[" 8 ", " 2 "], [" 128 ", " 2 "]]


def test_eval_face_px_in_an_hd_frame_runs_the_detection_plan(astronaut_folder: Path, capsys) -> None:
    argv = ["eval", "--utkface", str(astronaut_folder), "--face-px", "40", "--frame", "1280x720", "--json"]
    code, out, err = run_cli(capsys, *argv, "--threshold", "0.25")
    assert code == 0, err
    single = json.loads(out)
    assert single["frame"] == [1280, 720] and single["detection_plan"] == "1280x720: one full-frame pass"
    code, out, err = run_cli(capsys, *argv, "--threshold", "0.25", "--min-face", "20")
    assert code == 0, err
    planned = json.loads(out)
    assert planned["score_threshold"] == 0.25 and "tiles" in planned["detection_plan"]
    # 40 px faces at 1280x720: one full-frame pass (scale 0.4) sees them at 16 px and misses them.
    (row,) = planned["sizes"]
    assert single["sizes"][0]["detected"] < row["detected"] == 3, (single["sizes"], row)
    assert row["detection_rate_strong"]["value"] <= row["detection_rate"]["value"]


def test_eval_refuses_a_bad_frame(astronaut_folder: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "eval", "--utkface", str(astronaut_folder), "--face-px", "30", "--frame", "big")
    assert code == 2 and "--frame" in err and "'big'" in err


@pytest.mark.parametrize("value", ["abc", "16,,24", "0", "16,1000", "-8"])
def test_eval_face_px_refuses_bad_sizes(tmp_path: Path, value: str, capsys) -> None:
    code, out, err = run_cli(capsys, "eval", "--utkface", str(tmp_path), f"--face-px={value}")
    assert code == 2 and out == ""
    assert "--face-px" in err and repr(value) in err


def test_eval_face_px_is_not_for_clips(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "eval", "--clips", str(tmp_path), "--face-px", "32")
    assert code == 2 and "--face-px" in err and "--utkface" in err


def test_bench_pipeline_reports_the_plan_and_frames_per_resolution(capsys) -> None:
    argv = ["bench", "--pipeline", "--faces", "1", "--duration", "1", "--fps", "4", "--json"]
    assert main([*argv, "--resolution", "256x192,1280x720"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    runs = json.loads(line)["pipeline"]
    assert [(r["width"], r["height"], r["frames"]) for r in runs] == [(256, 192, 4), (1280, 720, 4)]
    assert runs[0]["passes"] == 1 and runs[1]["passes"] > 1  # HD needs tiles for 20 px faces
    assert all(r["fps"] > 0 for r in runs)
    # Attention and people are on by default: every face's head pose is read, the person detector
    # runs on every frame, and their costs are reported.
    assert set(runs[0]["stage_ms_p50"]) == {"person", "detect", "pose", "track", "attributes"}
    assert all(r["pose_ms_per_face"] > 0 and r["person_ms_per_run"] > 0 for r in runs)
    assert main([*argv, "--resolution", "256x192", "--no-attention", "--no-people"]) == 0
    (off,) = json.loads(capsys.readouterr().out)["pipeline"]
    assert off["pose_ms_per_face"] == 0.0 and off["person_ms_per_run"] == 0.0


def test_bench_refuses_a_bad_resolution(capsys) -> None:
    assert main(["bench", "--pipeline", "--resolution", "640by480"]) == 2
    assert "--resolution" in capsys.readouterr().err


def test_eval_compares_int8_with_float_face_by_face(tmp_path: Path, astronaut: np.ndarray, capsys) -> None:
    folder = small_labelled_folder(tmp_path, astronaut)
    code, out, err = run_cli(capsys, "eval", "--utkface", str(folder), "--json")
    assert code == 0, err
    parity = json.loads(out)["parity"]
    assert parity["overall"]["n"] == 3  # the faces both variants found
    assert parity["overall"]["gender"]["reference"] == parity["overall"]["gender"]["candidate"] == 1.0
    assert parity["overall"]["gender_agreement"]["value"] == 1.0
    assert set(parity["groups"]["race_x_gender"]) == {"white female"}
    code, out, err = run_cli(capsys, "eval", "--utkface", str(folder))
    assert "Quantisation parity: int8 against float on the same faces" in out
    assert "| white female | 3 | 100.0 | 100.0 |" in out


def test_parity_holds_groups_to_the_bar_with_a_paired_interval() -> None:
    def faces(race: str, gender: str, n: int, flipped: int) -> tuple[list[Outcome], list[Outcome]]:
        other = "female" if gender == "male" else "male"
        samples = [Sample(f"{race}-{gender}-{i}.jpg", 30, gender, race) for i in range(n)]
        reference = [Outcome(s, True, 30.0, gender, expression="happy") for s in samples]
        candidate = [
            Outcome(s, True, 31.0, other if i < flipped else gender, expression="happy") for i, s in enumerate(samples)
        ]
        return reference, candidate

    big_ref, big_int8 = faces("asian", "male", 50, 10)  # loses 20 points: over the bar
    small_ref, small_int8 = faces("black", "female", 20, 5)  # loses 25 points, but too few faces to hold
    fine_ref, fine_int8 = faces("white", "female", 60, 1)  # loses 1.7 points: within
    p = parity(big_ref + small_ref + fine_ref, big_int8 + small_int8 + fine_int8)
    groups = p.groups.race_x_gender
    big = groups["asian male"].gender
    assert big.change == pytest.approx(-0.2) and big.ci95 is not None and big.ci95[1] < 0
    assert groups["asian male"].age_mae_change.value == pytest.approx(1.0)
    assert groups["white female"].expression_agreement.value == 1.0
    assert p.bar.groups_over == ("asian male",)
    assert p.weakest.gender_change == "asian male"
    assert p.to_dict()["bar"]["groups_over"] == ["asian male"]  # the JSON keeps its lists
    assert "asian male" in parity_table(p, "float", "int8").splitlines()[-2]


@pytest.mark.skipif(not (CLIPS / "one-by-one-person-detection.avi").is_file(), reason="no development clips")
def test_analyze_people_finds_a_person_without_a_face_and_draws_the_configured_line(tmp_path: Path, capsys) -> None:
    clip = str(CLIPS / "one-by-one-person-detection.avi")
    code, out, err = run_cli(capsys, "analyze", "--json", "--people", "--every", "19", clip)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3
    for record in records:  # the back of a head: no face, one person, standing on the floor
        assert record["faces"] == [] and len(record["people"]) == 1 and "people" in record["timings_ms"]
        (person,) = record["people"]
        x1, y1, x2, y2 = person["box"]
        assert person["score"] >= 0.3 and y2 > 0.8 * record["height"] and (x2 - x1) < (y2 - y1) * 1.2
    code, out, _ = run_cli(capsys, "analyze", "--json", "--every", "19", clip)
    assert "people" not in json.loads(out.splitlines()[0])  # only when asked
    config = tmp_path / "edge.yaml"
    config.write_text(
        "device_id: door\nsource: {type: file, path: x.mp4}\n"
        "people: {line: {start: [0.1, 0.5], end: [0.9, 0.5]}, zones: {aisle: [[0.6, 0.2], [0.9, 0.2], [0.9, 0.9]]}}\n"
    )
    code, out, err = run_cli(
        capsys, "analyze", "--people", "--every", "100", "--config", str(config), "--annotate", str(tmp_path), clip
    )
    assert code == 0 and "1 person(s)" in out, err
    (drawn,) = tmp_path.glob("*_annotated.jpg")
    img = cv2.imread(str(drawn))
    mid = round(0.5 * (img.shape[0] - 1))
    band = img[mid - 2 : mid + 3].astype(int)  # the line's rows (a JPEG: a little spread and shifted)
    red = ((band[..., 2] > 150) & (band[..., 2] - band[..., 1] > 80)).any(axis=0)
    assert red[round(0.2 * img.shape[1]) : round(0.8 * img.shape[1])].mean() > 0.9  # the line, drawn where it is
    assert red[: round(0.05 * img.shape[1])].mean() < 0.2
