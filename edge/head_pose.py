"""Head pose (yaw, pitch, roll) from the face mesh's 3D landmarks.

The face mesh already runs on a face's box (the face check, turning faces upright), and its 468
landmarks carry depth: the head's rotation follows from three of its lines, with no second model
and no generic 3D face to fit. Two lines span the face: the outer eye corners (left to right) and
the forehead's top to the chin (top to bottom); their cross product points into the head. The
three, made orthonormal, are the head's axes in camera coordinates (the same construction as the
Human library's face angles). Measured against hand-labelled faces in ``docs/attention.md``.
"""

from __future__ import annotations

import math

import numpy as np

from edge.records import HeadPose

EYE_CORNERS = (33, 263)  # outer eye corners, the face's right then left (image left then right when frontal)
FOREHEAD_CHIN = (10, 152)  # top of the forehead, bottom of the chin (midline)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def head_pose(points: np.ndarray) -> HeadPose | None:
    """The pose of mesh landmarks [468, 3] (x right, y down, z away from the camera, one scale),
    or None when the landmarks are degenerate (eye corners or forehead and chin on one point)."""
    across = points[EYE_CORNERS[1]] - points[EYE_CORNERS[0]]
    down = points[FOREHEAD_CHIN[1]] - points[FOREHEAD_CHIN[0]]
    if min(float(np.linalg.norm(across)), float(np.linalg.norm(down))) < 1e-6:
        return None
    x = _unit(across.astype(np.float64))
    z = _unit(np.cross(x, down.astype(np.float64)))  # into the head: away from the camera when frontal
    if float(np.linalg.norm(z)) < 0.5:  # the two lines are parallel: no face
        return None
    forward = -z  # out of the face, towards what it looks at
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2])))
    roll = math.degrees(math.atan2(x[1], x[0]))
    return HeadPose(round(yaw, 1), round(pitch, 1), round(roll, 1))
