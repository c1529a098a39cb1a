"""Attribute estimation on face crops: age, gender, expression and (opt-in) ethnicity.

Each model's crop (size, margin, squaring, colour order) comes from the manifest,
so the device feeds exactly what the converter verified. Faces are batched per
model where the model allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.interpreter import TfliteModel
from edge.models import Manifest, ModelInfo
from edge.preprocess import CropSpec, check_views, crop_face, face_views
from edge.records import Attributes, Detection

log = logging.getLogger(__name__)

ETHNICITY_WARNING = (
    "ethnicity estimation is restricted or prohibited in some jurisdictions "
    "(EU AI Act, Art. 5(1)(g): biometric categorisation); enable it only where lawful"
)


@dataclass(frozen=True)
class AttributeSwitches:
    """Which attributes run. Ethnicity is off unless an operator turns it on."""

    age: bool = True
    gender: bool = True
    expression: bool = True
    ethnicity: bool = False


def average_views(outputs: dict[str, np.ndarray], views: int) -> dict[str, np.ndarray]:
    """Each face's outputs averaged over its ``views`` consecutive rows (softmax scores stay
    distributions); the converter's proof averages the same way."""
    return {k: v.reshape(-1, views, *v.shape[1:]).mean(axis=1) for k, v in outputs.items()}


class _CropModel:
    def __init__(self, info: ModelInfo, model: TfliteModel) -> None:
        self.info, self.model = info, model
        self.crop = CropSpec.from_manifest(info.input["crop"])
        self.bgr = info.input.get("colour", "RGB") == "BGR"

    def run(
        self,
        frame_rgb: np.ndarray,
        detections: Sequence[Detection],
        crops_cache: dict[CropSpec, np.ndarray],
        views: int = 1,
    ) -> dict[str, np.ndarray]:
        """Outputs per face, averaged over its ``views`` (``face_views``). ``crops_cache`` shares
        crops between models that want the same crop of the same faces."""
        crops = crops_cache.get(self.crop)
        if crops is None:
            crops = crops_cache[self.crop] = np.stack(
                [crop_face(frame_rgb, b, self.crop) for d in detections for b in face_views(d.box, views)]
            )
        if self.bgr:
            crops = np.ascontiguousarray(crops[..., ::-1])
        # One face's views per invocation: the input shape never changes, so the interpreter sizes
        # its buffers once (a batch of all faces' views resized them on every new face count and
        # grew them with it, +50 MB for 5 faces x 7 views).
        step = views if self.model.batchable else 1
        parts = [self.model.run(crops[i : i + step]) for i in range(0, len(crops), step)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return average_views(out, views)


class AttributeEstimator:
    """Runs the enabled attribute models on a frame's faces."""

    def __init__(
        self,
        manifest: Manifest,
        switches: AttributeSwitches = AttributeSwitches(),
        variant: str = "int8",
        backend: str = "auto",
        threads: int | None = None,
        views: int = 1,
    ) -> None:
        self.switches = switches
        self.views = check_views(views)  # an unknown count fails here, not on the first face
        self._age_gender = self._expression = self._ethnicity = None
        if switches.age or switches.gender:
            self._age_gender = _CropModel(*manifest.load("age_gender", variant, backend, threads))
        if switches.expression:
            self._expression = _CropModel(*manifest.load("expression", variant, backend, threads))
        if switches.ethnicity:
            log.warning(ETHNICITY_WARNING)
            self._ethnicity = _CropModel(*manifest.load("ethnicity", variant, backend, threads))

    def estimate(self, frame_rgb: np.ndarray, detections: Sequence[Detection]) -> list[Attributes]:
        n = len(detections)
        if n == 0:
            return []
        fields: list[dict] = [{} for _ in range(n)]
        crops: dict[CropSpec, np.ndarray] = {}

        def top(model: _CropModel, output: str, field: str, out: dict[str, np.ndarray]) -> None:
            """Best label of a softmax output and its probability, per face."""
            labels = model.info.outputs[output]["labels"]
            best = np.argmax(out[output], axis=1)
            for i, k in enumerate(best):
                fields[i][field], fields[i][f"{field}_score"] = labels[k], float(out[output][i, k])

        if self._age_gender is not None:
            out = self._age_gender.run(frame_rgb, detections, crops, self.views)
            if self.switches.age:
                for i in range(n):
                    fields[i]["age"] = float(max(0.0, out["age"][i, 0]))
            if self.switches.gender:
                top(self._age_gender, "gender", "gender", out)
        if self._expression is not None:
            out = self._expression.run(frame_rgb, detections, crops, self.views)
            top(self._expression, "expression", "expression", out)
        if self._ethnicity is not None:
            top(self._ethnicity, "race", "ethnicity", self._ethnicity.run(frame_rgb, detections, crops, self.views))
        return [Attributes(**f) for f in fields]
