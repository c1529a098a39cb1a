"""MediaPipe Face Mesh on one detector box: is there a face, and which way is it rolled?

One model run per box gives both readings the device uses: the face-presence flag (the face check,
``edge.face_check``) and 468 landmarks, whose eye line says how far the head is tilted sideways
(roll). The attribute models were trained on upright faces; a head rolled 30 degrees cost the
age/gender model 4-5 points of gender accuracy and 2 years of age error on utkface-dev, which
turning the crop upright gave back (models/README.md "Turning faces upright").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.models import Manifest
from edge.preprocess import CropSpec, crop_face, crop_square

MODEL_KEY = "face_mesh"
POINTS = 468
EYE_CORNERS = (33, 263)  # outer corners of the eyes, image left then image right (MediaPipe's indices)


def roll_degrees(points: np.ndarray) -> np.ndarray:
    """The eye line's angle in degrees for points [..., 468, >=2] (x right, y down): positive when
    the eye on the image's right sits lower, i.e. the face is turned clockwise on screen. Rotating
    the image by this angle counter-clockwise (OpenCV's positive sense) levels the eyes."""
    left, right = points[..., EYE_CORNERS[0], :2], points[..., EYE_CORNERS[1], :2]
    d = right - left
    return np.degrees(np.arctan2(d[..., 1], d[..., 0]))


@dataclass(frozen=True)
class MeshReading:
    """The mesh's view of one box: how sure it is of a face, and its landmarks in frame pixels."""

    face: float
    points: np.ndarray  # [468, 3]: x, y in frame pixels; z in the same scale, towards the camera negative

    @property
    def roll_deg(self) -> float:
        return float(roll_degrees(self.points))

    @property
    def eye_distance_px(self) -> float:
        a, b = self.points[EYE_CORNERS[0], :2], self.points[EYE_CORNERS[1], :2]
        return math.hypot(float(b[0] - a[0]), float(b[1] - a[1]))


class FaceMesh:
    """The face mesh model from the manifest, run on one crop per box."""

    def __init__(
        self, manifest: Manifest, variant: str = "int8", backend: str = "auto", threads: int | None = None
    ) -> None:
        self.info, self.model = manifest.load(MODEL_KEY, variant, backend, threads)
        self.crop = CropSpec.from_manifest(self.info.input["crop"])

    def read(self, frame_rgb: np.ndarray, box: np.ndarray | tuple[float, ...]) -> MeshReading:
        out = self.model.run(crop_face(frame_rgb, box, self.crop)[None])
        left, top, side = crop_square(box, self.crop)
        points = out["mesh"].reshape(POINTS, 3).astype(np.float64) * (side / self.crop.size)
        points[:, 0] += left
        points[:, 1] += top
        return MeshReading(face=float(out["face"].reshape(-1)[0]), points=points)
