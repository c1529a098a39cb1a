"""The person-detector candidate that was not chosen (issue #28), rebuilt from Human models' tfjs
graph, and its decoding into person boxes. Used by ``person_candidates.py``; the chosen one,
MoveNet MultiPose, is the converter's (``edge_convert.person_nets``).

* NanoDet-m (ShuffleNetV2, GFL head, strides 8/16/32): per level 80 COCO class scores (sigmoid
  in-graph; person is class 0) and 4 x 11 distance bins (left, top, right, bottom), decoded as
  the expectation of their softmax times the stride (the upstream decoding; Human takes the
  argmax instead). The graph is NCHW (an ONNX export); the module takes NHWC RGB pixels and
  normalises them as NanoDet does (BGR, mean and deviation per channel).

The module takes float pixels 0..255, [N, S, S, 3], the frame letterboxed (longer side S,
black padding right/bottom), as the MoveNet module does, so its int8 file takes uint8 pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from edge_convert.person_nets import nms

NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11
PERSON = 0  # COCO class index
# NanoDet's own input normalisation (its configs: BGR, these means and deviations). On three real
# frames it scored the people higher than pixels / 255 (0.55 against 0.08 on the corridor from above).
NANODET_MEAN_BGR = (103.53, 116.28, 123.675)
NANODET_STD_BGR = (57.375, 57.12, 58.395)


class NanoDetPeople(tf.Module):
    """NanoDet's person scores and box distributions per level, NHWC in."""

    def __init__(self, models: Path) -> None:
        from edge_convert.tfjs_graph import GraphModel

        super().__init__(name="nanodet_people")
        self._graph = GraphModel(models / "nanodet.json")

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        bgr = (pixels[..., ::-1] - NANODET_MEAN_BGR) / NANODET_STD_BGR
        out = self._graph(tf.transpose(bgr, [0, 3, 1, 2]))
        result = {}
        for v in out.values():
            cells = int(v.shape[1])
            stride = [s for s in NANODET_STRIDES if cells == (int(pixels.shape[1]) // s) ** 2][0]
            if int(v.shape[2]) == 80:
                result[f"person_s{stride}"] = v[..., PERSON]
            else:
                result[f"box_s{stride}"] = v
        return result


def decode_nanodet(out: dict[str, np.ndarray], size: int, threshold: float) -> np.ndarray:
    """[K, 5] boxes x1, y1, x2, y2 (input pixels), score, after NMS (IoU 0.5)."""
    all_boxes, all_scores = [], []
    for stride in NANODET_STRIDES:
        scores = out[f"person_s{stride}"][0]
        idx = np.nonzero(scores >= threshold)[0]
        if not idx.size:
            continue
        grid = size // stride
        dist = out[f"box_s{stride}"][0, idx].reshape(-1, 4, NANODET_BINS)
        dist = np.exp(dist - dist.max(axis=2, keepdims=True))
        dist /= dist.sum(axis=2, keepdims=True)
        ltrb = (dist * np.arange(NANODET_BINS)).sum(axis=2) * stride
        cx, cy = (idx % grid + 0.5) * stride, (idx // grid + 0.5) * stride
        all_boxes.append(np.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], 1))
        all_scores.append(scores[idx])
    if not all_boxes:
        return np.zeros((0, 5), np.float32)
    boxes, scores = np.clip(np.concatenate(all_boxes), 0, size), np.concatenate(all_scores)
    keep = nms(boxes, scores)
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1)
