"""The person detector (issue #28): MoveNet MultiPose's box heads, rebuilt from Human models' tfjs
graph, and their decoding into person boxes (numpy, as the device runs it).

MoveNet MultiPose is a CenterNet head on a MobileNetV2 feature pyramid, output stride 4. The graph
is cut before its own post-processing (top-k, gathers, keypoint snapping, which neither quantise nor
run in XNNPACK) at the person-centre heatmap and the two box heads: ``box_scale`` (height and width
in cells) and ``box_offset`` (the centre's sub-cell offset, y then x). A person is a 3x3 local
maximum of the centre heatmap (sigmoid), as the graph's own max-pool finds them; at most 6, as the
graph keeps; boxes that overlap by IoU > 0.5 are merged (int8 heatmaps have plateaus, where
neighbouring cells tie as maxima). The keypoint heads are not used.

The decoding lives on the device side (``edge.person_detector``), re-exported here for the
converter and the candidate measurements. The module takes float pixels 0..255, [N, S, S, 3] (S a
multiple of 32), the frame letterboxed (longer side S, black padding right/bottom); the graph
normalises them itself (x / 127.5 - 1).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from edge.person_detector import MAX_PEOPLE as MOVENET_MAX_PEOPLE
from edge.person_detector import NMS_IOU
from edge.person_detector import decode_people as decode_movenet
from edge.person_detector import merge_overlaps as nms

from .tfjs_graph import GraphModel

_S = "StatefulPartitionedCall/"
MOVENET_HEADS = {
    "center": _S + "center_0/conv2d_4/BiasAdd",
    "box_scale": _S + "box_scale_0/conv2d_5/BiasAdd",
    "box_offset": _S + "box_offset_0/conv2d_6/BiasAdd",
}


class MoveNetPeople(tf.Module):
    def __init__(self, models: Path) -> None:
        super().__init__(name="movenet_people")
        self._graph = GraphModel(models / "movenet-multipose.json", outputs=MOVENET_HEADS)

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self._graph(pixels)
        return {"center": tf.sigmoid(out["center"]), "box_scale": out["box_scale"], "box_offset": out["box_offset"]}


__all__ = ["MOVENET_HEADS", "MOVENET_MAX_PEOPLE", "NMS_IOU", "MoveNetPeople", "decode_movenet", "nms"]
