"""The detector's steps: check the rebuild against face-api.js, pick its photos and frames, convert
it at each input size and prove the int8 model's recall against the float one's.

The detector comes first in every run: its float boxes are the reference faces of everything
after it (the attribute models and the face mesh are calibrated and verified on them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import cast

import numpy as np
import tensorflow as tf

from edge.interpreter import TfliteModel

from . import datasets as ds
from .anchors import anchor_shapes
from .anchors import generate as generate_anchors
from .catalogue import DETECTOR, DETECTOR_320, ModelDef
from .faceapi_nets import DETECTOR_INPUT
from .inference import detect, run_tf, run_tflite, tf_detect
from .manifest import file_entry, manifest_entry
from .proof_table import Report
from .quantize import convert_model
from .recipe import DETECTOR_EQUALIZE_TARGET, DETECTOR_FRAMES_PER_PHOTO, FACEAPI_DEMO_FACES, SEEDS
from .verify import detection_agreement, max_abs_diff

log = logging.getLogger(__name__)


def check_upstream_counts(det_module: tf.Module, anchors: np.ndarray, photos: list[ds.Photo]) -> dict[str, int]:
    return {p.name: len(tf_detect(det_module, anchors, p)) for p in photos}


def prove_faceapi_counts(det_module: tf.Module, anchors: np.ndarray, face_api: Path, report: Report) -> dict[str, int]:
    """Faces the float rebuild finds in face-api.js's demo photos, each row held to face-api.js's count."""
    all_demo = ds.demo_photos(face_api, tuple(FACEAPI_DEMO_FACES))
    counts = check_upstream_counts(det_module, anchors, all_demo)
    for name, expected in FACEAPI_DEMO_FACES.items():
        report.add(
            "detector",
            f"faces in {name} (face-api.js: {expected})",
            float(counts[name]),
            f"== {expected}",
            counts[name] == expected,
        )
    return counts


def reference_photos(
    det_module: tf.Module, anchors: np.ndarray, face_api: Path, calib_dir: Path | None
) -> tuple[list[ds.Photo], list[ds.Photo]]:
    """The calibration photos, and the verification photos with their reference faces: the float
    rebuild's boxes on the originals (which match face-api.js's counts); they follow every
    geometric augmentation."""
    calib_photos = ds.folder_photos(calib_dir) if calib_dir else ds.demo_photos(face_api, ds.CALIBRATION_PHOTOS)
    verif_photos = []
    for p in ds.demo_photos(face_api, ds.VERIFICATION_PHOTOS) + [ds.astronaut()]:
        verif_photos.append(ds.Photo(p.name, p.rgb, tf_detect(det_module, anchors, p)))
    return calib_photos, verif_photos


def detector_frames(
    det_module: tf.Module, anchors: np.ndarray, calib_photos: list[ds.Photo], verif_photos: list[ds.Photo]
) -> tuple[list[ds.Photo], list[ds.Photo], list[ds.Photo]]:
    """Seeded frames to calibrate and to verify the detector on, and the calibration photos with
    the float rebuild's faces (close-ups are cut around them)."""
    calib_frames = ds.frame_variants(
        calib_photos, DETECTOR_FRAMES_PER_PHOTO["calibration"], SEEDS["detector_calibration"]
    )
    framed = [ds.Photo(p.name, p.rgb, tf_detect(det_module, anchors, p)) for p in calib_photos]
    calib_frames += ds.close_ups(framed, DETECTOR_FRAMES_PER_PHOTO["close_ups"], SEEDS["detector_close_ups"])
    verif_frames = ds.frame_variants(
        verif_photos, DETECTOR_FRAMES_PER_PHOTO["verification"], SEEDS["detector_verification"]
    )
    return calib_frames, verif_frames, framed


def write_anchors(anchors: np.ndarray, path: Path) -> None:
    with open(path.with_suffix(".tmp"), "wb") as fh:
        np.save(fh, anchors.astype(np.float32), allow_pickle=False)
    path.with_suffix(".tmp").replace(path)


def recall_proof(
    det_module: tf.Module,
    det_float: TfliteModel,
    det_int8: TfliteModel,
    anchors: np.ndarray,
    verif_frames: list[ds.Photo],
    size: int,
) -> dict:
    """Float and int8 boxes against the reference faces, and int8 boxes against float ones."""
    sample = ds.detector_inputs(verif_frames[:4], size)
    tf_vs_float = max_abs_diff(run_tf(det_module, sample.astype(np.float32)), run_tflite(det_float, sample))
    truth = cast("list[np.ndarray]", [f.faces for f in verif_frames])
    float_boxes = detect(det_float, anchors, verif_frames, size)
    int8_boxes = detect(det_int8, anchors, verif_frames, size)
    f_gt = detection_agreement(truth, float_boxes)
    q_gt = detection_agreement(truth, int8_boxes)
    agree = detection_agreement(float_boxes, int8_boxes)
    return {
        "tf_vs_float_tflite_max_abs": tf_vs_float,
        "verification_frames": len(verif_frames),
        "reference_faces": f_gt["reference_faces"],
        "float_recall": f_gt["recall"],
        "int8_recall": q_gt["recall"],
        "float_precision": f_gt["precision"],
        "int8_precision": q_gt["precision"],
        "recall_drop_points": 100.0 * (f_gt["recall"] - q_gt["recall"]),
        "int8_vs_float_box_agreement": agree["recall"],
        "mean_iou_matched": agree["mean_iou"],
    }


def report_recall(mdef: ModelDef, proof: dict, report: Report) -> None:
    key = mdef.key
    report.add(key, "float tflite vs TF max |diff|", proof["tf_vs_float_tflite_max_abs"])
    report.add(key, f"float recall ({proof['reference_faces']} faces, IoU .5)", proof["float_recall"])
    report.add(key, "int8 recall (IoU .5)", proof["int8_recall"])
    report.add(key, "float precision", proof["float_precision"])
    report.add(key, "int8 precision", proof["int8_precision"])
    report.add(key, "int8 boxes matching float (IoU .5)", proof["int8_vs_float_box_agreement"])
    report.add(key, "mean IoU int8 vs float boxes", proof["mean_iou_matched"])
    ok = mdef.bars[0].holds(proof["recall_drop_points"])
    report.add(key, "recall drop (points)", proof["recall_drop_points"], mdef.bars[0].describe(), ok)


def convert_detector(
    mdef: ModelDef,
    face_api: Path,
    det_module: tf.Module,
    anchors: np.ndarray,
    calib_frames: list[ds.Photo],
    verif_frames: list[ds.Photo],
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
    entries: dict,
) -> tuple[tuple[Path, Path], dict]:
    """Convert the detector at one input size and measure recall against the reference faces."""
    size = mdef.input_size
    anchors_path = out_dir / f"{mdef.stem}_anchors.npy"
    write_anchors(anchors, anchors_path)
    calib_inputs = ds.detector_inputs(calib_frames, size).astype(np.float32)
    det_eq = DETECTOR.build(face_api)
    det_eq.equalize(calib_inputs, DETECTOR_EQUALIZE_TARGET)
    float_path, int8_path = convert_model(mdef, det_module, calib_inputs, out_dir, det_eq)
    det_float, det_int8 = TfliteModel(float_path), TfliteModel(int8_path)
    proof = recall_proof(det_module, det_float, det_int8, anchors, verif_frames, size)
    report_recall(mdef, proof, report)
    entries[mdef.key] = manifest_entry(mdef, int8_path, float_path, det_int8, proof, len(calib_frames), calib_dir)
    entries[mdef.key]["anchors"] = dict(
        file_entry(anchors_path),
        count=int(len(anchors)),
        layout="ymin, xmin, ymax, xmax (relative to the square input)",
    )
    return (float_path, int8_path), proof


def convert_detectors(
    only: set[str],
    face_api: Path,
    det_module: tf.Module,
    anchors: np.ndarray,
    counts: dict[str, int],
    calib_frames: list[ds.Photo],
    verif_frames: list[ds.Photo],
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
    entries: dict,
) -> Path:
    """Convert and prove the detector at each input size in ``only``; the float detector's file
    (the one already in ``out_dir`` when the 512 model is not converted this time)."""
    det_float_path = out_dir / f"{DETECTOR.stem}_float32.tflite"
    for mdef in (DETECTOR, DETECTOR_320):
        if mdef.key not in only:
            continue
        t0 = time.monotonic()
        size = mdef.input_size
        size_anchors = anchors if size == DETECTOR_INPUT else generate_anchors(anchor_shapes(anchors), size)
        paths, proof = convert_detector(
            mdef, face_api, det_module, size_anchors, calib_frames, verif_frames, out_dir, report, calib_dir, entries
        )
        proof["faceapi_demo_face_counts"] = counts
        log.info("%s: converted and proved in %.0f s", mdef.key, time.monotonic() - t0)
        if mdef is DETECTOR:
            det_float_path = paths[0]
    return det_float_path
