"""The shipped models: manifest integrity, loading in each interpreter, real-photo behaviour."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.detector import FaceDetector
from edge.interpreter import BACKENDS
from edge.models import DEFAULT_DIR, Manifest, ModelError, sha256_of

MANIFEST = json.loads((DEFAULT_DIR / "manifest.json").read_text())
KEYS = ["detector", "detector_320", "age_gender", "expression", "ethnicity", "face_mesh", "person"]
INSTALLED = [
    name
    for name, b in BACKENDS.items()
    if name != "tensorflow" and importlib.util.find_spec(b.module.split(".")[0]) is not None
]


def test_manifest_lists_every_model_with_matching_files() -> None:
    assert sorted(MANIFEST["models"]) == sorted(KEYS)
    for key, entry in MANIFEST["models"].items():
        for record in (entry, entry["float"]):
            path = DEFAULT_DIR / record["file"]
            assert path.stat().st_size == record["bytes"], key
            assert sha256_of(path) == record["sha256"], key
        assert entry["variant"] == "int8" and entry["input"]["dtype"] == "uint8"
        assert entry["source"]["integrity"].startswith("sha512-")
        assert entry["source"]["license"] and entry["source"]["package"].startswith("@vladmandic/")
        assert entry["bars"] and entry["proof"]
    for key, count in (("detector", 5118), ("detector_320", 2034)):
        anchors = MANIFEST["models"][key]["anchors"]
        assert anchors["count"] == count
        assert sha256_of(DEFAULT_DIR / anchors["file"]) == anchors["sha256"]
    assert MANIFEST["models"]["ethnicity"]["opt_in"] is True
    assert not any(MANIFEST["models"][k]["opt_in"] for k in KEYS if k != "ethnicity")


def test_model_card_carries_the_proof_table() -> None:
    card = (DEFAULT_DIR / "README.md").read_text()
    table = (DEFAULT_DIR / "proof.txt").read_text().strip()
    assert table in card
    assert "ethnicity (opt-in)" in card and "Art. 5(1)(g)" in card


@pytest.mark.skipif(not INSTALLED, reason="no TFLite interpreter package installed")
@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize("variant", ["int8", "float"])
@pytest.mark.parametrize("key", KEYS)
def test_every_model_loads_and_returns_documented_shapes(key: str, variant: str, backend: str) -> None:
    info, model = Manifest().load(key, variant, backend=backend, threads=1)
    shape = [2 if d in (None, -1) else d for d in info.input["shape"]]
    if info.input["shape"][0] not in (None, -1):
        shape[0] = info.input["shape"][0]
    batch = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = model.run(batch)
    assert set(out) == set(info.outputs)
    for name, spec in info.outputs.items():
        expected = [shape[0] if d == -1 else d for d in spec["shape"]]
        assert list(out[name].shape) == expected, (key, name)
        assert np.all(np.isfinite(out[name]))
        if spec.get("meaning") == "softmax":
            np.testing.assert_allclose(out[name].sum(axis=1), 1.0, atol=0.05)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(Manifest(), "int8", score_threshold=0.5)


def test_int8_detector_finds_the_astronaut(detector: FaceDetector, astronaut: np.ndarray) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    # Eileen Collins' face sits around x 170-290, y 30-190 in the 512x512 photo.
    assert 140 < (x1 + x2) / 2 < 300 and 40 < (y1 + y2) / 2 < 180
    assert 60 < x2 - x1 < 200 and faces[0].score > 0.8


def test_int8_detector_finds_nothing_in_blank_or_noise(detector: FaceDetector) -> None:
    rng = np.random.default_rng(1)
    frames = [
        np.zeros((480, 640, 3), np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
        np.full((720, 1280, 3), 255, np.uint8),
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
    ]
    for frame in frames:
        assert detector.detect(frame) == []


def test_corrupt_or_mismatched_model_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(DEFAULT_DIR, copy)
    target = copy / MANIFEST["models"]["expression"]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        Manifest(copy).load("expression")
    message = str(err.value)
    assert str(target) in message
    assert MANIFEST["models"]["expression"]["sha256"] in message and sha256_of(target) in message


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="manifest.json not found"):
        Manifest(tmp_path)
