"""Face detection on a frame: a detection plan of one or more passes, integer inference, box
decoding and NMS.

One full-frame pass is what face-api.js does on a photo. Small faces fall below
the detector's reliable band in that pass, so with ``min_face_px`` set the plan
(``edge.detection_plan``) adds enlarged overlapping tiles for them; boxes from
all passes are merged with NMS.

In video the tiles may take turns (``tile_interval``): frame ``i`` runs the
full-frame pass and every tile ``t`` with ``t % interval == i % interval``, so
each part of the frame is searched for small faces every ``interval`` frames at
``1 + tiles / interval`` passes per frame. The tracker bridges the frames in
between (``TrackerConfig.presence_frames``). Photos always get every tile.

Boxes in the SSD's weak size bands (at least ``CANDIDATE_MIN_PX`` in a pass's input, scoring
``CANDIDATE_SCORE`` up to 0.5) go to the face check (``edge.face_check``) after the passes are
merged: confirmed, they count from 0.51; refused, they keep the detector's score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.boxes import frame_detections, nms
from edge.config.fields import integer, leaf, number
from edge.detection_plan import DetectionPass, DetectionPlan, plan_detection
from edge.face_check import CANDIDATE_MIN_PX, CANDIDATE_SCORE, CONFIRMED_SCORE, FACE_MIN, FaceCheck, promoted
from edge.interpreter import TfliteModel
from edge.models import Manifest
from edge.preprocess import Letterbox, letterbox, resize
from edge.records import Detection

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """``score_threshold`` starts a track; weaker detections down to ``weak_threshold`` only
    continue one. ``min_face_px`` is the smallest face (shorter side, frame pixels) the
    detection plan must find; smaller values cost more enlarged tiles (0: one full-frame pass)."""

    score_threshold: float = leaf(0.5, number("a score above 0, at most 1", lo=0, hi=1, lo_open=True))
    weak_threshold: float = leaf(0.25, number("a score between 0 and 1", lo=0, hi=1))
    min_face_px: int = leaf(20, integer("a face size in pixels >= 0", lo=0))
    # Frames between searches of the same tile for small faces: 1 + tiles / interval passes a frame.
    tile_interval: int = leaf(3, integer("a number of frames >= 1", lo=1))


TILE_MODEL_KEY = "detector"  # the 512 input: fewest tiles for the same area
_MERGE_IOU = 0.4  # the same face seen by two passes overlaps far more than two faces do
_MERGE_CONTAINED = 0.7  # a box this much inside a better one is a part of the same face
# Boxes under this share of the smallest face wanted are dropped: a face's box varies by 10-20% from
# frame to frame, so a face at the minimum is not lost with a box a little under it, while the many
# false positives of the smallest sizes are.
_SMALL_SLACK = 0.5
# Width/height a face box can have. The detector was trained on WIDER FACE: on the real clips
# its boxes measured 0.59-0.94 and on 800 UTKFace detections (tilted heads included) 0.58-1.25.
# Wider boxes are things like a collar or a shelf edge, which can score 0.5 and would otherwise
# start a track that walks across the frame with its owner.
FACE_ASPECT = (0.45, 1.6)


class FaceDetector:
    """The SSD MobileNetV1 detector from the manifest, returning boxes in frame pixels."""

    def __init__(
        self,
        manifest: Manifest,
        variant: str = "int8",
        score_threshold: float = 0.5,
        min_face_px: int = 0,
        backend: str = "auto",
        threads: int | None = None,
        key: str = "detector",
        tile_interval: int = 1,
        face_check: FaceCheck | None = None,
    ) -> None:
        """``face_check``: confirms boxes in the SSD's weak size bands (``edge.face_check``); None:
        the detector's scores alone decide."""
        if tile_interval < 1:
            raise ValueError(f"tile_interval must be >= 1, got {tile_interval}")
        self.tile_interval = tile_interval
        self.face_check = face_check
        self.info, self.model = manifest.load(key, variant, backend, threads)
        self.anchors = manifest.anchors(key)
        self.size = int(self.info.input["shape"][1])
        self.score_threshold = score_threshold
        # Passes keep boxes down to the candidates' score when a face check can confirm them.
        self._pass_threshold = score_threshold if face_check is None else min(score_threshold, CANDIDATE_SCORE)
        self.min_face_px = min_face_px
        self._tile: tuple[TfliteModel, np.ndarray, int] | None = None
        if min_face_px > 0:
            if key == TILE_MODEL_KEY:
                self._tile = (self.model, self.anchors, self.size)
            else:
                tile_info, tile_model = manifest.load(TILE_MODEL_KEY, variant, backend, threads)
                self._tile = (tile_model, manifest.anchors(TILE_MODEL_KEY), int(tile_info.input["shape"][1]))
        self._plans: dict[tuple[int, int], DetectionPlan] = {}

    def plan(self, width: int, height: int) -> DetectionPlan:
        """The passes for frames of this size (computed once per resolution)."""
        plan = self._plans.get((width, height))
        if plan is None:
            tile_size = self._tile[2] if self._tile is not None else self.size
            plan = plan_detection(width, height, self.size, tile_size, float(self.min_face_px))
            self._plans[(width, height)] = plan
            log.info(
                "detection plan for %s; in video %d model runs a frame (tiles take turns every %d frames)",
                plan.describe(),
                plan.passes_per_frame(self.tile_interval),
                self.tile_interval,
            )
        return plan

    def prepare(self, frame_rgb: np.ndarray) -> Letterbox:
        """Scale the frame into the network input (the preprocess stage of the full-frame pass)."""
        return letterbox(frame_rgb, self.size)

    def infer(self, lb: Letterbox, frame_wh: tuple[int, int]) -> list[Detection]:
        """Run the full-frame pass on a prepared input; boxes in frame pixels, smaller ones dropped.
        The detector's own scores only: no face check (``detect`` runs it)."""
        boxes, scores, _ = self._run(self.model, self.anchors, self.size, lb, frame_wh)
        keep = (scores > self.score_threshold) & (
            np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_face_px
        )
        return _records(boxes[keep], scores[keep])

    def detect(self, frame_rgb: np.ndarray, frame_index: int | None = None) -> list[Detection]:
        """Faces in a frame. ``frame_index`` (video): only this frame's turn of the tiles runs
        (see the module docstring); None (a photo): every tile."""
        height, width = frame_rgb.shape[:2]
        plan = self.plan(width, height)
        if len(plan.passes) == 1:
            boxes, scores, candidate = self._run(
                self.model, self.anchors, self.size, self.prepare(frame_rgb), (width, height)
            )
            boxes, scores = self._confirm(frame_rgb, boxes, scores, candidate)
            small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.min_face_px * _SMALL_SLACK
            return _records(boxes[~small], scores[~small])
        passes = [(plan.passes[0], True)]
        turn = None if frame_index is None else frame_index % self.tile_interval
        passes += [(p, False) for t, p in enumerate(plan.passes[1:]) if turn is None or t % self.tile_interval == turn]
        found = [self._pass(frame_rgb, p, full) for p, full in passes]
        boxes = np.concatenate([b for b, _, _ in found])
        scores = np.concatenate([s for _, s, _ in found])
        candidate = np.concatenate([c for _, _, c in found])
        keep = nms(boxes, scores, -1.0, _MERGE_IOU, max_results=len(scores), contained_threshold=_MERGE_CONTAINED)
        boxes, scores = self._confirm(frame_rgb, boxes[keep], scores[keep], candidate[keep])
        small = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < plan.min_face_px * _SMALL_SLACK
        return _records(boxes[~small], scores[~small])

    def _confirm(
        self, frame_rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, candidate: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates the face check confirms get a score from 0.51 up (``promoted``); the others keep
        the detector's score and go if it is under the threshold."""
        if self.face_check is not None and candidate.any():
            scores = scores.copy()
            (asked,) = np.nonzero(candidate)
            confirmed = self.face_check.face_scores(frame_rgb, boxes[asked]) >= FACE_MIN
            scores[asked[confirmed]] = [promoted(float(s)) for s in scores[asked[confirmed]]]
        keep = scores > self.score_threshold
        return boxes[keep], scores[keep]

    def _pass(self, frame_rgb: np.ndarray, p: DetectionPass, full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if full:
            model, anchors, size = self.model, self.anchors, self.size
            lb = self.prepare(frame_rgb)
        else:
            assert self._tile is not None  # a plan has tiles only when a tile model was loaded
            model, anchors, size = self._tile
            region = frame_rgb[p.y : p.y + p.h, p.x : p.x + p.w]
            nw, nh = min(size, round(p.w * p.scale)), min(size, round(p.h * p.scale))
            pixels = np.zeros((size, size, 3), dtype=np.uint8)
            pixels[:nh, :nw] = resize(region, (nw, nh))
            lb = Letterbox(pixels, p.scale)
        boxes, scores, candidate = self._run(model, anchors, size, lb, (p.w, p.h))
        boxes = boxes + np.array([p.x, p.y, p.x, p.y], dtype=np.float32)
        short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        x1, y1, x2, y2 = p.core
        keep = (short >= p.min_px) & (short < p.max_px) & (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        return boxes[keep], scores[keep], candidate[keep]

    def _run(
        self, model: TfliteModel, anchors: np.ndarray, size: int, lb: Letterbox, frame_wh: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (frame pixels) over the threshold or candidates for the face check, their scores, and
        which are candidates: in a weak size band of this pass's input and under ``CONFIRMED_SCORE``."""
        out = model.run(lb.pixels[None])
        boxes, scores = frame_detections(
            out["box_encodings"][0], out["scores"][0], anchors, size, lb.scale, frame_wh, self._pass_threshold
        )
        network_px = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * lb.scale
        candidate = (
            (self.face_check is not None)
            & (network_px >= CANDIDATE_MIN_PX)
            & (scores >= CANDIDATE_SCORE)
            & (scores < CONFIRMED_SCORE)
        )
        keep = candidate | (scores > self.score_threshold)
        return boxes[keep], scores[keep], candidate[keep]


def _records(boxes: np.ndarray, scores: np.ndarray) -> list[Detection]:
    """Detections from boxes of a plausible face shape (``FACE_ASPECT``)."""
    aspect = (boxes[:, 2] - boxes[:, 0]) / np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    face_like = (aspect >= FACE_ASPECT[0]) & (aspect <= FACE_ASPECT[1])
    return [
        Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s))
        for b, s in zip(boxes[face_like], scores[face_like])
    ]
