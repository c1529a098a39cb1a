"""A second opinion on detector boxes in the SSD's weak size bands: is there a face in this box?

The SSD's anchors come in scales about 2x apart, and a real face whose size in the network input falls
between two of them (about 24-32 px and 56-64 px) scores a median 0.6 where faces of 40 or 80 px score
0.9: at the start threshold of 0.5 a quarter to a third of such faces were lost (models/README.md
"Recall against face size", on real faces). Lowering the threshold there finds them, and also the back
of a head, which the SSD scores as high. MediaPipe Face Mesh's face-presence output tells the two apart
(on the development footage: every back-of-head and background box under 0.06, 96% of the real faces in
those bands at 0.5 or more), so a box in a band that scores ``CANDIDATE_SCORE`` up to 0.5 counts as a
face when the check confirms it, and stays what the detector said when it does not.
"""

from __future__ import annotations

import numpy as np

from edge.face_mesh import FaceMesh

FACE_MIN = 0.2  # face flag from which a crop shows a face (the converter proves int8 against float here)
CANDIDATE_SCORE = 0.25  # detector scores from here to CONFIRMED_SCORE are asked about
CONFIRMED_SCORE = 0.5  # what a confirmed candidate's score becomes at least: the start threshold
CANDIDATE_MIN_PX = 24.0  # shorter box side in the network input: below it false positives crowd


def promoted(score: float) -> float:
    """A confirmed candidate's score: ``CANDIDATE_SCORE``..0.5 stretched onto 0.51..0.6, in order
    (above the start threshold, which a score must exceed, and under what the detector gives a
    face it is sure of)."""
    return CONFIRMED_SCORE + 0.01 + (score - CANDIDATE_SCORE) * 0.09 / (CONFIRMED_SCORE - CANDIDATE_SCORE)


class FaceCheck:
    """The face mesh's face-presence flag, read on one crop per box."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh

    def face_scores(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """The face flag (0..1) of each box [N, 4] (x1, y1, x2, y2 in frame pixels)."""
        return np.asarray([self.mesh.read(frame_rgb, box).face for box in boxes], dtype=np.float32)
