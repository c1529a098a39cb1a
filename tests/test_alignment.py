"""Tilted faces are turned upright before the attribute models: the face mesh reads the tilt from
the eye line, the patch turns the frame about the face, and a tilted real face is then judged as
its upright self is."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.attributes import MIN_ROLL_DEG
from edge.face_mesh import FaceMesh
from edge.models import DEFAULT_DIR, Manifest
from edge.preprocess import upright_patch

REAL_FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-footage"
ASTRONAUT_FACE = (181.0, 71.0, 267.0, 175.0)  # her face in skimage's photo, as the detector finds it


def turned(rgb: np.ndarray, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """The image turned counter-clockwise on screen by ``angle`` degrees about ``centre``."""
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    return cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REFLECT_101)


def test_an_upright_patch_at_zero_degrees_is_the_frame_and_a_quarter_turn_moves_pixels_as_a_turn_does() -> None:
    frame = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = (60.0, 30.0, 100.0, 70.0)  # centre (80, 50)
    patch, (left, top) = upright_patch(frame, box, 0.0, 1.5)
    assert patch.shape == (60, 60, 3)
    assert np.array_equal(patch, frame[top : top + 60, left : left + 60])
    # Turned 90 degrees counter-clockwise on screen: what lay right of the centre now lies above it,
    # and what lay above it now lies left of it.
    patch, (left, top) = upright_patch(frame, box, 90.0, 1.5)
    cx, cy = 80 - left, 50 - top
    assert np.array_equal(patch[cy - 10, cx], frame[50, 80 + 10])
    assert np.array_equal(patch[cy, cx - 10], frame[50 - 10, 80])


def test_the_mesh_reads_a_tilt_from_the_eye_line(astronaut: np.ndarray) -> None:
    mesh = FaceMesh(Manifest(DEFAULT_DIR))
    x1, y1, x2, y2 = ASTRONAUT_FACE
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    upright = mesh.read(astronaut, ASTRONAUT_FACE)
    assert upright.face > 0.9 and abs(upright.roll_deg) < MIN_ROLL_DEG
    assert 0.3 < upright.eye_distance_px / (x2 - x1) < 0.9
    # Turned counter-clockwise on screen, the eye on the image's right rises: the roll turns negative.
    # The mesh expects upright crops and reads a large tilt short (about 0.6 of it beyond 20 degrees).
    for angle in (15.0, 30.0):
        left, right = (mesh.read(turned(astronaut, sign * angle, centre), ASTRONAUT_FACE) for sign in (1, -1))
        assert -angle - 3 < left.roll_deg - upright.roll_deg < -0.5 * angle, (angle, left.roll_deg)
        assert 0.5 * angle < right.roll_deg - upright.roll_deg < angle + 3, (angle, right.roll_deg)


@pytest.mark.skipif(not REAL_FOOTAGE.is_dir(), reason="the development clips are not beside the checkout")
def test_a_tilted_real_face_is_judged_as_it_would_be_upright() -> None:
    """A man's head-pose clip, turned 20 degrees: as cropped, the age/gender model calls him female
    in many frames; turned upright first, male in nearly all, as in the clip itself (all 62)."""
    plain, aligned = Analyzer(AnalyzerConfig()), Analyzer(AnalyzerConfig(align=True))
    cap = cv2.VideoCapture(str(REAL_FOOTAGE / "head-pose-face-detection-male.avi"))
    calls: dict[str, list[str]] = {"plain": [], "aligned": []}
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, fx=2, fy=2)
        rgb = turned(rgb, 20.0, (rgb.shape[1] / 2, rgb.shape[0] / 2))
        faces = plain.analyze(rgb)
        if not faces:
            continue
        best = max(faces, key=lambda f: f.detection.score)
        calls["plain"].append(str(best.attributes.gender))
        calls["aligned"].append(str(aligned.attributes.estimate(rgb, [best.detection])[0].gender))
    n = len(calls["aligned"])
    assert n >= 55, n
    male = {k: v.count("male") / n for k, v in calls.items()}
    assert male["aligned"] >= 0.95, male
    assert male["aligned"] - male["plain"] >= 0.2, male
