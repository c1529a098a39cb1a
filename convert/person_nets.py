"""The person detector (issue #28): MoveNet MultiPose's box heads, rebuilt from Human models' tfjs
graph, and their decoding into person boxes (numpy, as the device runs it).

MoveNet MultiPose is a CenterNet head on a MobileNetV2 feature pyramid, output stride 4. The graph
is cut before its own post-processing (top-k, gathers, keypoint snapping, which neither quantise nor
run in XNNPACK) at the person-centre heatmap and the two box heads: ``box_scale`` (height and width
in cells) and ``box_offset`` (the centre's sub-cell offset, y then x). A person is a 3x3 local
maximum of the centre heatmap (sigmoid), as the graph's own max-pool finds them; at most 6, as the
graph keeps; boxes that overlap by IoU > 0.5 are merged (int8 heatmaps have plateaus, where
neighbouring cells tie as maxima). The keypoint heads are not used.

The module takes float pixels 0..255, [N, S, S, 3] (S a multiple of 32), the frame letterboxed
(longer side S, black padding right/bottom); the graph normalises them itself (x / 127.5 - 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from .tfjs_graph import GraphModel

_S = "StatefulPartitionedCall/"
MOVENET_HEADS = {
    "center": _S + "center_0/conv2d_4/BiasAdd",
    "box_scale": _S + "box_scale_0/conv2d_5/BiasAdd",
    "box_offset": _S + "box_offset_0/conv2d_6/BiasAdd",
}
MOVENET_MAX_PEOPLE = 6
NMS_IOU = 0.5


class MoveNetPeople(tf.Module):
    def __init__(self, models: Path) -> None:
        super().__init__(name="movenet_people")
        self._graph = GraphModel(models / "movenet-multipose.json", outputs=MOVENET_HEADS)

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self._graph(pixels)
        return {"center": tf.sigmoid(out["center"]), "box_scale": out["box_scale"], "box_offset": out["box_offset"]}


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    order, keep = np.argsort(-scores), []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        inter_w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        inter_h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = inter_w * inter_h
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        order = rest[inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-9) <= iou]
    return np.array(keep, dtype=int)


def decode_movenet(out: dict[str, np.ndarray], size: int, threshold: float) -> np.ndarray:
    """[K, 5] boxes x1, y1, x2, y2 (input pixels), score, of one image's heads."""
    center = out["center"][0, ..., 0]
    grid = center.shape[0]
    padded = np.pad(center, 1, constant_values=-1.0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    peaks = (center >= windows.max(axis=(2, 3))) & (center >= threshold)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-center[ys, xs])[:MOVENET_MAX_PEOPLE]
    ys, xs = ys[order], xs[order]
    off, scale = out["box_offset"][0, ys, xs], np.maximum(out["box_scale"][0, ys, xs], 0.0)
    cy, cx = ys + off[:, 0], xs + off[:, 1]
    cell = size / grid
    boxes = np.stack([cx - scale[:, 1] / 2, cy - scale[:, 0] / 2, cx + scale[:, 1] / 2, cy + scale[:, 0] / 2], 1)
    boxes, scores = np.clip(boxes * cell, 0, size), center[ys, xs]
    keep = nms(boxes, scores)  # int8 heatmaps have plateaus: neighbouring cells tie as maxima
    return np.concatenate([boxes[keep], scores[keep, None]], axis=1)
