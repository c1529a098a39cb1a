"""Attribute estimation on face crops: age, gender, expression and (opt-in) ethnicity.

Each model's crop (size, margin, squaring, colour order) comes from the manifest,
so the device feeds exactly what the converter verified. Each face is estimated
from its box first; the other views run only where they could change a decision
(``near_decision``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
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
    distributions)."""
    return {k: v.reshape(-1, views, *v.shape[1:]).mean(axis=1) for k, v in outputs.items()}


# How far the views moved a score at most, per labelled output (236 faces of the demo photos,
# screenshots and real clips at several scales, int8 and float; models/README.md "Views where they
# change the answer"). A decision can change only where the first view's best two scores lie
# within twice that of each other, or its best score within that of a gate; elsewhere the six
# other views are not run. Outputs not measured take the largest margin.
VIEW_MARGINS: Mapping[str, float] = {"gender": 0.16, "expression": 0.35}
_WIDEST_MARGIN = max(VIEW_MARGINS.values())


def near_decision(
    out: dict[str, np.ndarray], labelled: Sequence[str], gates: Mapping[str, float] | None = None
) -> np.ndarray:
    """Which faces (rows) have a labelled output whose views could change its decision: best two
    scores within twice the output's margin (``VIEW_MARGINS``), or best score within the margin
    of that output's gate."""
    gates = gates or {}
    near = np.zeros(len(next(iter(out.values()))), dtype=bool)
    for name in labelled:
        margin = VIEW_MARGINS.get(name, _WIDEST_MARGIN)
        ranked = np.sort(out[name], axis=1)
        near |= ranked[:, -1] - ranked[:, -2] < 2 * margin
        if name in gates:
            near |= np.abs(ranked[:, -1] - gates[name]) < margin
    return near


def settle_views(
    outputs: dict[str, np.ndarray], views: int, labelled: Sequence[str], gates: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """From ``views`` consecutive rows per face: the first row, or the mean over all of them
    where the first is near a decision (``near_decision``). What ``AttributeEstimator`` computes
    while running the extra views only where needed; the converter's proof uses it to compare
    int8 with float as the device estimates."""
    first = {k: v[::views] for k, v in outputs.items()}
    if views == 1:
        return first
    near = near_decision(first, labelled, gates)
    mean = average_views(outputs, views)
    return {k: np.where(near.reshape(-1, *[1] * (v.ndim - 1)), mean[k], v) for k, v in first.items()}


# A face's crop for a model: (crop spec, face index, view index) -> uint8 RGB image.
CropOf = Callable[[CropSpec, int, int], np.ndarray]


class _CropModel:
    def __init__(self, info: ModelInfo, model: TfliteModel, gates: Mapping[str, float]) -> None:
        self.info, self.model = info, model
        self.crop = CropSpec.from_manifest(info.input["crop"])
        self.bgr = info.input.get("colour", "RGB") == "BGR"
        self.labelled = [name for name, spec in info.outputs.items() if "labels" in spec]
        self.gates = {name: gate for name, gate in gates.items() if name in self.labelled}

    def run(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs, one row per crop. One crop per invocation: the input shape never changes, so
        the interpreter sizes its buffers once (a batch costs as much per crop here)."""
        parts = [self.model.run(np.ascontiguousarray(c[None, ..., ::-1] if self.bgr else c[None])) for c in crops]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def estimate(self, crop: CropOf, faces: int, views: int) -> dict[str, np.ndarray]:
        """Per face: the first view's outputs, or the mean over ``views`` where the first view is
        near a decision (``settle_views``, computed without running views that cannot matter)."""
        out = self.run([crop(self.crop, i, 0) for i in range(faces)])
        if views == 1:
            return out
        for i in np.flatnonzero(near_decision(out, self.labelled, self.gates)):
            rest = self.run([crop(self.crop, int(i), v) for v in range(1, views)])
            for k in out:
                out[k][i] = np.concatenate([out[k][i : i + 1], rest[k]]).mean(axis=0)
        return out


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
        gates: Mapping[str, float] | None = None,
    ) -> None:
        """``gates``: per labelled output (``gender``), the score a caller acts on (the daemon's
        ``min_gender_score``); an estimate near it gets its views too (``near_decision``)."""
        self.switches = switches
        self.views = check_views(views)  # an unknown count fails here, not on the first face
        gates = dict(gates or {})
        self._age_gender = self._expression = self._ethnicity = None
        if switches.age or switches.gender:
            self._age_gender = _CropModel(*manifest.load("age_gender", variant, backend, threads), gates)
        if switches.expression:
            self._expression = _CropModel(*manifest.load("expression", variant, backend, threads), gates)
        if switches.ethnicity:
            log.warning(ETHNICITY_WARNING)
            self._ethnicity = _CropModel(*manifest.load("ethnicity", variant, backend, threads), gates)

    def estimate(self, frame_rgb: np.ndarray, detections: Sequence[Detection]) -> list[Attributes]:
        n = len(detections)
        if n == 0:
            return []
        fields: list[dict] = [{} for _ in range(n)]
        boxes = [face_views(d.box, self.views) for d in detections]
        crops: dict[tuple[CropSpec, int, int], np.ndarray] = {}

        def crop(spec: CropSpec, face: int, view: int) -> np.ndarray:
            """One view of one face, cut once for all models that want the same crop."""
            key = (spec, face, view)
            if key not in crops:
                crops[key] = crop_face(frame_rgb, boxes[face][view], spec)
            return crops[key]

        def top(model: _CropModel, output: str, field: str, out: dict[str, np.ndarray]) -> None:
            """Best label of a softmax output and its probability, per face."""
            labels = model.info.outputs[output]["labels"]
            best = np.argmax(out[output], axis=1)
            for i, k in enumerate(best):
                fields[i][field], fields[i][f"{field}_score"] = labels[k], float(out[output][i, k])

        if self._age_gender is not None:
            out = self._age_gender.estimate(crop, n, self.views)
            if self.switches.age:
                for i in range(n):
                    fields[i]["age"] = float(max(0.0, out["age"][i, 0]))
            if self.switches.gender:
                top(self._age_gender, "gender", "gender", out)
        if self._expression is not None:
            out = self._expression.estimate(crop, n, self.views)
            top(self._expression, "expression", "expression", out)
        if self._ethnicity is not None:
            top(self._ethnicity, "race", "ethnicity", self._ethnicity.estimate(crop, n, self.views))
        return [Attributes(**f) for f in fields]
