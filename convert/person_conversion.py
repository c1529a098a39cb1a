"""The person detector's steps (issue #28): calibrate MoveNet MultiPose's box heads on the pinned
demo photos with their people at three sizes, and prove its int8 file on the held-out photos as the
device reads it (person boxes at ``PERSON_THRESHOLD`` after the numpy decoding).

Why MoveNet and not NanoDet, and what it does on the real clips: ``models/README.md``, "Choosing
the person detector" (``tests/person_candidates.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.interpreter import TfliteModel
from edge.preprocess import letterbox

from . import datasets as ds
from .catalogue import PERSON, PERSON_THRESHOLD
from .inference import run_tf
from .manifest import manifest_entry
from .person_nets import decode_movenet
from .proof_table import Report
from .quantize import convert_model
from .recipe import SEEDS
from .verify import detection_agreement, max_abs_diff

# The people in the demo photos fill much of the frame; shrunk onto a grey canvas they stand in for
# people further away (a shop aisle, a hall).
PERSON_SCALES = (1.0, 0.6, 0.35)


def on_grey(rgb: np.ndarray, scale: float) -> np.ndarray:
    """``rgb`` at ``scale`` of its size, centred on a mid-grey canvas of its own size."""
    if scale == 1.0:
        return rgb
    import cv2

    h, w = rgb.shape[:2]
    nw, nh = round(w * scale), round(h * scale)
    canvas = np.full_like(rgb, 128)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def person_inputs(photos: list[ds.Photo], seed: int) -> np.ndarray:
    """Each photo at every scale, as is and with seeded photometric jitter, letterboxed; float32."""
    rng = np.random.default_rng(seed)
    size = PERSON.input_size
    out = []
    for p in photos:
        for s in PERSON_SCALES:
            img = on_grey(p.rgb, s)
            out.append(letterbox(img, size).pixels)
            out.append(letterbox(ds._photometric(img, rng), size).pixels)  # noqa: SLF001
    return np.stack(out).astype(np.float32)


def person_boxes(model: TfliteModel, inputs: np.ndarray) -> list[np.ndarray]:
    """Boxes x1, y1, x2, y2 (input pixels) at ``PERSON_THRESHOLD``, one image at a time."""
    found = [decode_movenet(model.run(x[None]), PERSON.input_size, PERSON_THRESHOLD) for x in inputs]
    return [f[:, :4] for f in found]


def person_proof(module: tf.Module, m_float: TfliteModel, m_int8: TfliteModel, inputs: np.ndarray) -> dict:
    ref, q = person_boxes(m_float, inputs), person_boxes(m_int8, inputs)
    agreement = detection_agreement(ref, q)
    float_out = {k: v for k, v in m_float.run(inputs[:1]).items()}
    tf_out = run_tf(module, inputs[:1])
    q_scores = [m_int8.run(x[None])["center"].astype(np.float32) for x in inputs[:8]]
    f_scores = [m_float.run(x[None])["center"] for x in inputs[:8]]
    return {
        "tf_vs_float_tflite_max_abs": max_abs_diff(tf_out, float_out),
        "verification_images": len(inputs),
        "score_threshold": PERSON_THRESHOLD,
        "float_people": agreement["reference_faces"],
        "int8_people": agreement["candidate_faces"],
        "person_agreement": agreement["recall"],
        "person_precision": agreement["precision"],
        "mean_iou": agreement["mean_iou"],
        "centre_heatmap_mean_abs_change": float(np.mean([np.abs(a - b).mean() for a, b in zip(f_scores, q_scores)])),
    }


def report_person(proof: dict, report: Report) -> None:
    report.add(PERSON.key, "float tflite vs TF max |diff|", proof["tf_vs_float_tflite_max_abs"])
    for metric in ("float_people", "int8_people", "person_agreement", "person_precision", "mean_iou"):
        bar = next((b for b in PERSON.bars if b.metric == metric), None)
        value = proof[metric]
        report.add(PERSON.key, metric, value, bar.describe() if bar else "", bar.holds(value) if bar else True)


def convert_person(
    package: Path,
    calib_photos: list[ds.Photo],
    verif_photos: list[ds.Photo],
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
) -> dict:
    """MoveNet's box heads: calibrated on the calibration photos, proven on the verification ones."""
    module = PERSON.build(package)
    calib = person_inputs(calib_photos, SEEDS["person_calibration"])
    float_path, int8_path = convert_model(PERSON, module, calib, out_dir)
    m_float, m_int8 = TfliteModel(float_path), TfliteModel(int8_path)
    proof = person_proof(module, m_float, m_int8, person_inputs(verif_photos, SEEDS["person_verification"]))
    report_person(proof, report)
    return manifest_entry(PERSON, int8_path, float_path, m_int8, proof, len(calib), calib_dir)
