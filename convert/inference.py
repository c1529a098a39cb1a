"""Running the rebuilt TensorFlow networks and the converted TFLite files on batches of inputs.

Every proof compares outputs of the same inputs through two of these (TensorFlow, float TFLite,
int8 TFLite); the detector's are read as the device reads them, boxes at the shipping threshold.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edge.boxes import frame_detections
from edge.interpreter import TfliteModel
from edge.preprocess import letterbox

from . import datasets as ds
from .faceapi_nets import DETECTOR_INPUT
from .recipe import BATCH, SCORE_THRESHOLD


def run_tf(module: tf.Module, batch: np.ndarray) -> dict[str, np.ndarray]:
    parts = [
        {k: v.numpy() for k, v in module(tf.constant(batch[i : i + BATCH], tf.float32)).items()}
        for i in range(0, len(batch), BATCH)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_tflite(model: TfliteModel, batch: np.ndarray) -> dict[str, np.ndarray]:
    step = BATCH if model.batchable else 1
    parts = [model.run(batch[i : i + step]) for i in range(0, len(batch), step)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def detect(
    model: TfliteModel, anchors: np.ndarray, frames: list[ds.Photo], size: int = DETECTOR_INPUT
) -> list[np.ndarray]:
    """Boxes (x1, y1, x2, y2, frame pixels) per frame at the shipping score threshold."""
    out = []
    for f in frames:
        lb = letterbox(f.rgb, size)
        o = model.run(lb.pixels[None])
        boxes, _ = frame_detections(
            o["box_encodings"][0],
            o["scores"][0],
            anchors,
            size,
            lb.scale,
            (f.rgb.shape[1], f.rgb.shape[0]),
            SCORE_THRESHOLD,
        )
        out.append(boxes)
    return out


def tf_detect(det_module: tf.Module, anchors: np.ndarray, photo: ds.Photo) -> np.ndarray:
    lb = letterbox(photo.rgb, DETECTOR_INPUT)
    o = run_tf(det_module, lb.pixels[None].astype(np.float32))
    boxes, _ = frame_detections(
        o["box_encodings"][0],
        o["scores"][0],
        anchors,
        DETECTOR_INPUT,
        lb.scale,
        (photo.rgb.shape[1], photo.rgb.shape[0]),
        SCORE_THRESHOLD,
    )
    return boxes
