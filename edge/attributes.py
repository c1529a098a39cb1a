"""Attribute estimation on face crops: age, gender, expression and (opt-in) ethnicity.

Each model's crop (size, margin, squaring, colour order) comes from the manifest,
so the device feeds exactly what the converter verified. Each face is estimated
from its box first; the other views run only where they could change a decision
(``near_decision``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from edge.config.fields import boolean, choice, integer, leaf, number
from edge.face_check import FACE_MIN
from edge.face_mesh import FaceMesh, MeshReading
from edge.interpreter import TfliteModel
from edge.models import Manifest, ModelInfo
from edge.preprocess import (
    DEFAULT_VIEWS,
    VIEW_COUNTS,
    VIEW_STEP,
    CropSpec,
    check_views,
    crop_face,
    crop_square,
    face_views,
    upright_patch,
)
from edge.records import Attributes, Detection

log = logging.getLogger(__name__)

ETHNICITY_WARNING = (
    "ethnicity estimation is restricted or prohibited in some jurisdictions "
    "(EU AI Act, Art. 5(1)(g): biometric categorisation); enable it only where lawful"
)


# What a face must offer before it is described, and a gender before it is named: the daemon's
# defaults (attributes.min_face_px, attributes.min_gender_score), and `edge analyze`'s. Smaller faces
# are guessed at, not judged (adult gender at a 20 px box: MAE of age 12 years; models/README.md
# "Attribute accuracy against face size"); a single estimate under 0.8 was right 48-79% of the time,
# one from 0.8 up 93-99.6% ("Gender you can rely on").
DESCRIBE_MIN_FACE_PX = 36
MIN_GENDER_SCORE = 0.8


def described(attributes: Attributes, face_px: float, min_face_px: float, min_gender_score: float) -> Attributes:
    """What one estimate may say of a face whose box's shorter side is ``face_px``: nothing under
    ``min_face_px``, and no gender under ``min_gender_score`` (the daemon's rule for a visitor seen
    in one crop; a track's several crops vote instead, ``edge.tracker.agreed_gender``). Attributes
    switched off stay None either way."""
    if face_px < min_face_px:
        return Attributes()
    if attributes.gender is not None and (attributes.gender_score or 0.0) < min_gender_score:
        return replace(attributes, gender=None, gender_score=None)
    return attributes


@dataclass(frozen=True, kw_only=True)
class AttributesConfig:
    """Which estimates run. Ethnicity is opt-in: inferring it is restricted in some
    jurisdictions (e.g. EU AI Act Art. 5(1)(g))."""

    age: bool = leaf(True, boolean())
    gender: bool = leaf(True, boolean())
    expression: bool = leaf(True, boolean())
    ethnicity: bool = leaf(False, boolean())
    # The quality gate: smaller faces are counted but not described (their visitor lands in
    # `unknown`); measured in models/README.md "Attribute accuracy against face size".
    min_face_px: int = leaf(DESCRIBE_MIN_FACE_PX, integer("a face size in pixels >= 0", lo=0))
    # A visitor's gender is published only when its kept estimates agree (three quarters name it)
    # and one of them reaches this score, or three of them average 0.65 (edge.attribute_votes.agreed_gender);
    # otherwise it stays unknown rather than a coin toss (one estimate at >= 0.8: 93-99% right).
    min_gender_score: float = leaf(MIN_GENDER_SCORE, number("a score between 0 and 1", lo=0, hi=1))
    # An estimate near a decision (gender 0.5 or min_gender_score, the top two expressions) is the mean
    # over this many slightly shifted and scaled crops of the face, so that box jitter (frame to frame,
    # int8 against float) moves it less; the others use the box alone (edge.attributes.VIEW_MARGINS).
    views: int = leaf(DEFAULT_VIEWS, choice(*VIEW_COUNTS))


# How far the views moved a score at most, per reported output (faces of the demo photos,
# screenshots and real clips at several scales, int8 and float; tests/view_margins.py,
# models/README.md "Views where they change the answer"). A decision can change only where the
# first view's best two scores lie within twice that of each other, or its best score within that
# of a gate; elsewhere the six other views are not run. Outputs not measured take the largest margin.
VIEW_MARGINS: Mapping[str, float] = {"gender": 0.16, "expression": 0.35, "race": 0.49}
_WIDEST_MARGIN = max(VIEW_MARGINS.values())

# The labelled outputs each model's estimate is reported by: only these decide whether a face's other
# views run (GEAR's gender and age buckets are computed but never reported, so never pay for views).
REPORTED: Mapping[str, tuple[str, ...]] = {
    "age_gender": ("gender",),
    "expression": ("expression",),
    "ethnicity": ("race",),
}


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


# The other views' outputs for some faces: (face indices) -> rows, views 1.. of each face in turn.
MoreViews = Callable[[np.ndarray], dict[str, np.ndarray]]


def settle_views(
    first: dict[str, np.ndarray],
    more_views: MoreViews,
    views: int,
    labelled: Sequence[str],
    gates: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Each face's estimate from its first view's outputs (``first``, one row per face): those
    outputs, or the mean over all ``views`` where they are near a decision (``near_decision``).
    The other views are asked for (``more_views``) only for those faces. One routine for
    ``AttributeEstimator`` and the converter's proof, so the proof compares int8 with float as
    the device estimates; ``first`` is left as it was."""
    settled = {k: v.copy() for k, v in first.items()}
    near = np.flatnonzero(near_decision(first, labelled, gates)) if views > 1 else np.empty(0, int)
    if near.size:
        rest = more_views(near)
        for k, out in settled.items():
            shaped = rest[k].reshape(near.size, views - 1, *out.shape[1:])
            out[near] = np.concatenate([first[k][near][:, None], shaped], axis=1).mean(axis=1)
    return settled


# Faces whose eye line tilts less than this are cropped as they are. The int8 mesh reads upright
# utkface-dev faces within 1.9 degrees (sd) and moves a float reading by at most 1.23 for 95% of faces
# (the proof), so an upright face is never turned; one tilted 15 degrees is (read as about 12.5;
# models/README.md "Turning faces upright").
MIN_ROLL_DEG = 8.0


# A face's crop for a model: (crop spec, face index, view index) -> uint8 RGB image.
CropOf = Callable[[CropSpec, int, int], np.ndarray]


class _CropModel:
    def __init__(self, info: ModelInfo, model: TfliteModel, gates: Mapping[str, float]) -> None:
        self.info, self.model = info, model
        self.crop = CropSpec.from_manifest(info.input["crop"])
        self.bgr = info.input.get("colour", "RGB") == "BGR"
        self.labelled = REPORTED[info.key]
        self.gates = {name: gate for name, gate in gates.items() if name in self.labelled}

    def run(self, crops: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs, one row per crop. One crop per invocation: the input shape never changes, so
        the interpreter sizes its buffers once (a batch costs as much per crop here)."""
        parts = [self.model.run(np.ascontiguousarray(c[None, ..., ::-1] if self.bgr else c[None])) for c in crops]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def estimate(self, crop: CropOf, faces: int, views: int) -> dict[str, np.ndarray]:
        """Per face: the first view's outputs, or the mean over ``views`` where the first view is
        near a decision (``settle_views``: views that cannot matter are never run)."""
        first = self.run([crop(self.crop, i, 0) for i in range(faces)])

        def more_views(near: np.ndarray) -> dict[str, np.ndarray]:
            return self.run([crop(self.crop, int(i), v) for i in near for v in range(1, views)])

        return settle_views(first, more_views, views, self.labelled, self.gates)


class AttributeEstimator:
    """Runs the enabled attribute models on a frame's faces."""

    def __init__(
        self,
        manifest: Manifest,
        switches: AttributesConfig = AttributesConfig(),
        variant: str = "int8",
        backend: str = "auto",
        threads: int | None = None,
        views: int = 1,
        gates: Mapping[str, float] | None = None,
        mesh: FaceMesh | None = None,
    ) -> None:
        """``gates``: per labelled output (``gender``), the score a caller acts on (the daemon's
        ``min_gender_score``); an estimate near it gets its views too (``near_decision``).
        ``mesh``: where given, a face whose eyes tilt by ``MIN_ROLL_DEG`` or more is turned upright
        before it is cropped (one mesh run per face)."""
        self.switches = switches
        self.mesh = mesh
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
        # How much frame around a box an upright patch must hold for every crop of every view, and the
        # crop sizes wanted per box size (a patch finer than the finest crop would only cost time).
        self._specs = [m.crop for m in (self._age_gender, self._expression, self._ethnicity) if m is not None]
        widest = max((1 + 2 * c.margin + 2 * abs(c.shift_y) for c in self._specs), default=1.0)
        self._reach = widest * (1 + 3 * VIEW_STEP)
        self._px_per_box = max((c.size / (1 + 2 * c.margin) for c in self._specs), default=1.0)

    def upright(
        self, frame_rgb: np.ndarray, box: np.ndarray, reading: MeshReading | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The image to crop one face from, as (image, origin, scale): a frame box ``b`` lies at
        ``(b - origin) * scale`` in it. The frame itself, or a patch turned so the face's eyes are
        level (``MIN_ROLL_DEG``). A box the mesh does not take for a face (flag under ``FACE_MIN``:
        too small or blurred to read) is left as it is. A large face is first shrunk (areas averaged,
        as ``crop_face`` does) to the finest crop's scale, so the turn samples no more pixels than
        the crops will use. ``reading``: the mesh's reading of this box, where the caller has it."""
        same = (frame_rgb, np.zeros(2), 1.0)
        if self.mesh is None:
            return same
        if reading is None:
            reading = self.mesh.read(frame_rgb, box)
        roll = reading.roll_deg
        if reading.face < FACE_MIN or abs(roll) < MIN_ROLL_DEG:
            return same
        x1, y1, x2, y2 = (float(v) for v in box)
        side = max(x2 - x1, y2 - y1)
        scale = min(1.0, self._px_per_box / max(side, 1e-6))
        image, origin = frame_rgb, np.zeros(2)
        if scale < 1.0:
            # The region a turned patch can reach (its diagonal), shrunk in one area-averaging pass.
            reach = 1.5 * self._reach  # over the patch's diagonal (sqrt 2)
            region = CropSpec(size=max(int(round(side * reach * scale)), 1), margin=(reach - 1) / 2, square="expand")
            left, top, region_side = crop_square(box, region)
            image = crop_face(frame_rgb, box, region)
            origin, scale = np.array([left, top]), region.size / region_side
        small_box = (np.asarray(box, dtype=np.float64) - np.tile(origin, 2)) * scale
        patch, corner = upright_patch(image, small_box, roll, self._reach)
        return patch, origin + np.asarray(corner) / scale, scale

    def estimate(
        self,
        frame_rgb: np.ndarray,
        detections: Sequence[Detection],
        readings: Sequence[MeshReading | None] | None = None,
    ) -> list[Attributes]:
        """The attributes of each detection; ``readings``: the face mesh's reading of each box where
        the caller already ran it (head pose), so turning a face upright costs no second run."""
        n = len(detections)
        if n == 0:
            return []
        fields: list[dict] = [{} for _ in range(n)]
        known = list(readings) if readings is not None else [None] * n
        images = [self.upright(frame_rgb, np.asarray(d.box), r) for d, r in zip(detections, known)]
        boxes = [
            (face_views(d.box, self.views) - np.tile(origin, 2)) * scale
            for d, (_, origin, scale) in zip(detections, images)
        ]
        crops: dict[tuple[CropSpec, int, int], np.ndarray] = {}

        def crop(spec: CropSpec, face: int, view: int) -> np.ndarray:
            """One view of one face, cut once for all models that want the same crop."""
            key = (spec, face, view)
            if key not in crops:
                crops[key] = crop_face(images[face][0], boxes[face][view], spec)
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
