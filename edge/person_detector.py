"""Who is in the frame, face or not: MoveNet MultiPose's person boxes (issue #28).

The model (manifest key ``person``) is MoveNet MultiPose cut before its own post-processing: a
person-centre heatmap (sigmoid, one cell per 4x4 input pixels) and two box heads, ``box_scale``
(height and width in cells) and ``box_offset`` (the centre's sub-cell offset, y then x). A person is
a 3x3 local maximum of the heatmap, at most ``MAX_PEOPLE`` of them (as the graph keeps); boxes that
overlap by IoU > ``NMS_IOU`` are merged, because int8 heatmaps have plateaus where neighbouring cells
tie. The converter proves the int8 file with this same decoding (``edge_convert.person_conversion``).

Why this model, and its recall on the real clips at several scales: models/README.md, "Choosing the
person detector".
"""

from __future__ import annotations

import numpy as np

from edge.models import Manifest
from edge.preprocess import letterbox
from edge.records import PersonDetection

MODEL_KEY = "person"
MAX_PEOPLE = 6
NMS_IOU = 0.5
# The score a person box needs: the threshold the int8 file was proven at, and the one the
# detector was chosen by (recall 95.7-100% of the people on the development clips at 0.75x-2x).
SCORE_THRESHOLD = 0.3


def _area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def merge_overlaps(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first."""
    order, keep = np.argsort(-scores), []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter_w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        inter_h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = inter_w * inter_h
        order = rest[inter / np.maximum(_area(boxes[i]) + _area(boxes[rest]) - inter, 1e-9) <= iou]
    return np.array(keep, dtype=int)


def decode_people(out: dict[str, np.ndarray], size: int, threshold: float) -> np.ndarray:
    """[K, 5] boxes x1, y1, x2, y2 (input pixels) and score, from one image's heads."""
    center = out["center"][0, ..., 0]
    grid = center.shape[0]
    padded = np.pad(center, 1, constant_values=-1.0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = (center >= windows.max(axis=(2, 3))) & (center >= threshold)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-center[ys, xs])[:MAX_PEOPLE]
    ys, xs = ys[order], xs[order]
    off, scale = out["box_offset"][0, ys, xs], np.maximum(out["box_scale"][0, ys, xs], 0.0)
    cy, cx = ys + off[:, 0], xs + off[:, 1]
    cell = size / grid
    boxes = np.stack([cx - scale[:, 1] / 2, cy - scale[:, 0] / 2, cx + scale[:, 1] / 2, cy + scale[:, 0] / 2], 1)
    boxes, scores = np.clip(boxes * cell, 0, size), center[ys, xs]
    keep = merge_overlaps(boxes, scores)
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1)


# MoveNet now and then gives a small person of a head alone, inside the whole person's box (seen on
# the walking-away clip with people at half size): a box whose area is at most HEAD_AREA of a better
# box's, lying at least HEAD_INSIDE inside it, centred in its top HEAD_TOP, is that person's head.
HEAD_AREA = 0.25
HEAD_INSIDE = 0.8
HEAD_TOP = 0.35


def drop_heads(found: np.ndarray) -> np.ndarray:
    """``found`` ([K, 5], best score first) without boxes that are another box's head."""
    keep: list[int] = []
    for i, (x1, y1, x2, y2, _) in enumerate(found.tolist()):
        area = (x2 - x1) * (y2 - y1)
        cy = (y1 + y2) / 2
        head = False
        for j in keep:
            bx1, by1, bx2, by2 = found[j, :4].tolist()
            big = (bx2 - bx1) * (by2 - by1)
            inter = max(0.0, min(x2, bx2) - max(x1, bx1)) * max(0.0, min(y2, by2) - max(y1, by1))
            if area <= HEAD_AREA * big and inter >= HEAD_INSIDE * area and cy <= by1 + HEAD_TOP * (by2 - by1):
                head = True
                break
        if not head:
            keep.append(i)
    return found[keep]


class PersonDetector:
    """The person model from the manifest: one run per frame, boxes in frame pixels."""

    def __init__(
        self,
        manifest: Manifest,
        variant: str = "int8",
        backend: str = "auto",
        threads: int | None = None,
        score_threshold: float = SCORE_THRESHOLD,
    ) -> None:
        self.info, self.model = manifest.load(MODEL_KEY, variant, backend, threads)
        self.size = int(self.info.input["shape"][1])
        self.score_threshold = score_threshold

    def detect(self, frame_rgb: np.ndarray) -> tuple[PersonDetection, ...]:
        """Every person in an RGB uint8 frame, best score first."""
        h, w = frame_rgb.shape[:2]
        boxed = letterbox(frame_rgb, self.size)
        found = drop_heads(decode_people(self.model.run(boxed.pixels[None]), self.size, self.score_threshold))
        people = []
        for x1, y1, x2, y2, score in found.tolist():
            box = (
                min(x1 / boxed.scale, w),
                min(y1 / boxed.scale, h),
                min(x2 / boxed.scale, w),
                min(y2 / boxed.scale, h),
            )
            if box[2] > box[0] and box[3] > box[1]:
                people.append(PersonDetection(box, float(score)))
        return tuple(people)
