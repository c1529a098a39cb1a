"""The face check: real faces the detector scores weakly for their size are confirmed and found; what
is not a face is refused and stays as weak as the detector scored it."""

from __future__ import annotations

import numpy as np
import pytest

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.face_check import CANDIDATE_SCORE, CONFIRMED_SCORE, FACE_MIN, FaceCheck
from edge.face_mesh import FaceMesh
from edge.models import DEFAULT_DIR, Manifest

# The astronaut's face in skimage's photo (x1, y1, x2, y2), as the detector finds it.
ASTRONAUT_FACE = (181.0, 71.0, 267.0, 175.0)


def placed(image: np.ndarray, scale: float, centre: tuple[float, float], size: int = 512) -> np.ndarray:
    """``image`` scaled by ``scale`` (nearest pixels: exact and the same everywhere) with ``centre``
    at the middle of a grey square the detector's input size, so a box there is its network size."""
    h, w = image.shape[:2]
    ys = np.floor((np.arange(size) - size / 2) / scale + centre[1]).astype(int)
    xs = np.floor((np.arange(size) - size / 2) / scale + centre[0]).astype(int)
    inside = (ys[:, None] >= 0) & (ys[:, None] < h) & (xs[None, :] >= 0) & (xs[None, :] < w)
    out = image[np.clip(ys, 0, h - 1)[:, None], np.clip(xs, 0, w - 1)[None, :]]
    out[~inside] = 128
    return np.ascontiguousarray(out)


@pytest.fixture(scope="module")
def check() -> FaceCheck:
    return FaceCheck(FaceMesh(Manifest(DEFAULT_DIR)))


def test_a_face_is_confirmed_and_what_surrounds_it_is_not(astronaut: np.ndarray, check: FaceCheck) -> None:
    x1, y1, x2, y2 = ASTRONAUT_FACE
    side = x2 - x1
    # It is a second opinion on what the detector found, not a face detector of its own: a box on
    # her suit's chest, just under the face, scores 0.8 (the proof: 98.8% of non-face crops refused).
    elsewhere = [
        (x1 + 2.2 * side, y1 + 2 * side, x2 + 2.2 * side, y2 + 2 * side),  # the flag and the suit's arm
        (10.0, 10.0, 10.0 + side, 10.0 + side),  # the background
    ]
    scores = check.face_scores(astronaut, np.array([ASTRONAUT_FACE, *elsewhere]))
    assert scores[0] >= FACE_MIN, scores
    assert (scores[1:] < FACE_MIN).all(), scores


def test_faces_in_the_weak_size_bands_are_found(astronaut: np.ndarray) -> None:
    """Between two of the SSD's anchor scales the detector scores a face under 0.5; where it scores
    it clearly inside the candidates' range, the check confirms it and the face is found."""
    raw = Analyzer(AnalyzerConfig(score_threshold=0.2, face_check=False))
    with_check, without = Analyzer(AnalyzerConfig()), Analyzer(AnalyzerConfig(face_check=False))
    x1, y1, x2, y2 = ASTRONAUT_FACE
    centre, side = ((x1 + x2) / 2, (y1 + y2) / 2), min(x2 - x1, y2 - y1)
    weak = []
    for size in range(20, 82):
        frame = placed(astronaut, size / side, centre)
        scores = [d.score for d in raw.detect(frame)]
        if len(scores) == 1 and CANDIDATE_SCORE + 0.03 <= scores[0] <= CONFIRMED_SCORE - 0.03:
            weak.append((size, frame))
    assert weak, "no size where the face scores between the candidates' bounds"
    for size, frame in weak:
        assert without.detect(frame) == [], size
        (found,) = with_check.detect(frame)
        assert found.score > CONFIRMED_SCORE, size
