"""SSD box decoding and non-maximum suppression in numpy.

Kept out of the TFLite graph on purpose: ``exp`` of quantised encodings loses
precision, while decoding 5118 anchors in numpy costs well under a millisecond.
"""

from __future__ import annotations

import numpy as np

# TF Object Detection API box coder scales (y, x, h, w), as face-api.js uses.
_SCALE_YX = 10.0
_SCALE_HW = 5.0


def decode(encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Turn [A, 4] (ty, tx, th, tw) encodings into [A, 4] (ymin, xmin, ymax, xmax) boxes.

    Coordinates are relative to the square network input (0..1).
    """
    ah = anchors[:, 2] - anchors[:, 0]
    aw = anchors[:, 3] - anchors[:, 1]
    cy = anchors[:, 0] + 0.5 * ah
    cx = anchors[:, 1] + 0.5 * aw
    y = encodings[:, 0] / _SCALE_YX * ah + cy
    x = encodings[:, 1] / _SCALE_YX * aw + cx
    half_h = 0.5 * np.exp(encodings[:, 2] / _SCALE_HW) * ah
    half_w = 0.5 * np.exp(encodings[:, 3] / _SCALE_HW) * aw
    return np.stack([y - half_h, x - half_w, y + half_h, x + half_w], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N, 4] and [M, 4] boxes given as (y1, x1, y2, x2) or (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def containment(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Share of each ``inner`` box's area that lies inside the ``outer`` box ([4] and [M, 4])."""
    lo = np.maximum(outer[None, :2], inner[:, :2])
    hi = np.minimum(outer[None, 2:], inner[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = np.prod(np.clip(inner[:, 2:] - inner[:, :2], 0.0, None), axis=1)
    return np.where(area > 0, inter / np.maximum(area, 1e-12), 1.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    iou_threshold: float = 0.5,
    max_results: int = 100,
    contained_threshold: float | None = None,
) -> np.ndarray:
    """Greedy NMS; returns the kept indices, best score first.

    ``contained_threshold``: also drop a box when at least that share of it lies inside a kept,
    better-scoring box (a face cut by a tile border, seen whole by another pass, overlaps the
    whole face's box by less than the IoU threshold but lies almost entirely inside it).
    """
    candidates = np.flatnonzero(scores > score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    keep: list[int] = []
    while order.size and len(keep) < max_results:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        drop = iou_matrix(boxes[best : best + 1], boxes[rest])[0] > iou_threshold
        if contained_threshold is not None:
            drop |= containment(boxes[best], boxes[rest]) >= contained_threshold
        order = rest[~drop]
    return np.asarray(keep, dtype=np.int64)


# Box voting: each kept box becomes the score-weighted mean of the anchors' boxes that overlap it
# by at least VOTE_IOU and score above VOTE_MIN_SCORE. One face fires several neighbouring anchors;
# which of them wins NMS, and with it the box, changes with a small change of the scores (int8
# against float, one frame against the next). The mean of all of them hardly moves: on utkface-dev
# the int8 and float detectors' boxes overlap by IoU 0.982 on average instead of 0.942, and int8
# against float gender agreement of the whole pipeline rose from 97.4% to 98.0% (models/README.md
# "Box voting and views").
VOTE_IOU = 0.5
VOTE_MIN_SCORE = 0.25


def vote(boxes: np.ndarray, scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The kept boxes [K, 4], each replaced by the score-weighted mean of its overlapping candidates."""
    candidates = np.flatnonzero(scores > VOTE_MIN_SCORE)
    out = boxes[keep].astype(np.float64)
    if len(keep) == 0:
        return out
    overlap = iou_matrix(boxes[keep], boxes[candidates]) >= VOTE_IOU  # [K, C]; a kept box overlaps itself
    weights = overlap * scores[candidates][None, :].astype(np.float64)
    total = weights.sum(axis=1, keepdims=True)
    voted = weights @ boxes[candidates].astype(np.float64) / np.maximum(total, 1e-12)
    # A kept box under VOTE_MIN_SCORE (a low detector threshold) has no candidate: it stays as it is.
    return np.where(total > 0, voted, out)


def frame_detections(
    encodings: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    scale: float,
    frame_wh: tuple[int, int],
    score_threshold: float,
    iou_threshold: float = 0.5,
    max_results: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image's raw detector outputs into (boxes [K, 4] x1,y1,x2,y2 in frame pixels, scores [K]).

    ``scale`` is the letterbox factor (network pixels per frame pixel).
    """
    boxes = decode(encodings, anchors)
    keep = nms(boxes, scores, score_threshold, iou_threshold, max_results)
    w, h = frame_wh
    yx = vote(boxes, scores, keep) * (input_size / scale)
    xyxy = np.stack([yx[:, 1], yx[:, 0], yx[:, 3], yx[:, 2]], axis=1) if len(keep) else np.zeros((0, 4))
    xyxy = np.clip(xyxy, 0.0, [w, h, w, h]).astype(np.float32)
    return xyxy, scores[keep].astype(np.float32)
