"""The face mesh's steps: calibrate it on faces (upright and tilted) and on places with none, and
prove its int8 model on both tasks the device gives it: the face check (is there a face in the
detector's box) and the landmarks whose eye line turns a face upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.face_check import FACE_MIN
from edge.face_mesh import EYE_CORNERS, POINTS, roll_degrees
from edge.interpreter import TfliteModel

from . import datasets as ds
from .catalogue import FACE_MESH, ModelDef
from .inference import run_tf, run_tflite
from .manifest import manifest_entry
from .proof_table import Report
from .quantize import convert_model
from .recipe import FACE_VARIANTS, MAX_ROLL_DEG, NON_FACES_PER_PHOTO, SEEDS
from .verify import max_abs_diff


def mesh_proofs(ref: np.ndarray, q: np.ndarray) -> dict:
    """How far int8 moves the mesh ([N, 1404] each): the eye line's angle, and every point's
    distance over the float mesh's eye distance (normalised mean error)."""
    ref_pts, q_pts = ref.reshape(-1, POINTS, 3), q.reshape(-1, POINTS, 3)
    change = np.abs((roll_degrees(q_pts) - roll_degrees(ref_pts) + 180.0) % 360.0 - 180.0)
    eyes = np.linalg.norm(ref_pts[:, EYE_CORNERS[1], :2] - ref_pts[:, EYE_CORNERS[0], :2], axis=1)
    error = np.linalg.norm(q_pts[..., :2] - ref_pts[..., :2], axis=2).mean(axis=1) / np.maximum(eyes, 1e-6)
    return {
        "roll_mean_abs_change_deg": float(change.mean()),
        "roll_p95_abs_change_deg": float(np.percentile(change, 95)),
        "roll_max_abs_change_deg": float(change.max()),
        "landmark_mean_error": float(error.mean()),
        "landmark_p95_error": float(np.percentile(error, 95)),
    }


def calibration_crops(mdef: ModelDef, calib_faces: ds.Faces, calib_photos: list[ds.Photo]) -> np.ndarray:
    """Faces (harsh conditions included), a quarter as many tilted faces, and places with none."""
    assert mdef.crop is not None
    calib_rolled = [(f, b) for f, b, _ in ds.rolled_faces(calib_faces, SEEDS["face_mesh_roll"], MAX_ROLL_DEG)]
    return np.concatenate(
        [
            ds.face_variants(calib_faces, mdef.crop, FACE_VARIANTS["calibration"], SEEDS["face_calibration"], True),
            ds.face_variants(calib_rolled, mdef.crop, FACE_VARIANTS["calibration"] // 4, SEEDS["face_calibration"]),
            ds.non_face_crops(calib_photos, mdef.crop, NON_FACES_PER_PHOTO, SEEDS["face_check_calibration"]),
        ]
    )


def verification_crops(
    mdef: ModelDef, verif_faces: ds.Faces, verif_photos: list[ds.Photo]
) -> tuple[np.ndarray, np.ndarray]:
    """Faces, upright then tilted by up to ``MAX_ROLL_DEG`` (as many), and crops with no face."""
    assert mdef.crop is not None
    verif_rolled = [(f, b) for f, b, _ in ds.rolled_faces(verif_faces, SEEDS["face_mesh_roll"] + 1, MAX_ROLL_DEG)]
    faces = np.concatenate(
        [
            ds.face_variants(verif_faces, mdef.crop, FACE_VARIANTS["verification"], SEEDS["face_verification"]),
            ds.face_variants(verif_rolled, mdef.crop, FACE_VARIANTS["verification"], SEEDS["face_verification"]),
        ]
    )
    others = ds.non_face_crops(verif_photos, mdef.crop, NON_FACES_PER_PHOTO, SEEDS["face_check_verification"])
    return faces, others


def mesh_proof(
    module: tf.Module, m_float: TfliteModel, m_int8: TfliteModel, faces: np.ndarray, others: np.ndarray
) -> dict:
    """The flag as the face check decides (flag >= ``edge.face_check.FACE_MIN``) on faces and on
    places with none; the landmarks where the float mesh sees a face (elsewhere the device does
    not use them)."""
    ref_out, q_out = run_tflite(m_float, faces), run_tflite(m_int8, faces)
    ref_faces, q_faces = ref_out["face"][:, 0], q_out["face"][:, 0]
    ref_others, q_others = (run_tflite(m, others)["face"][:, 0] for m in (m_float, m_int8))
    ref, q = np.concatenate([ref_faces, ref_others]), np.concatenate([q_faces, q_others])
    seen = ref_faces >= FACE_MIN
    return {
        "tf_vs_float_tflite_max_abs": max_abs_diff(
            run_tf(module, faces[:32].astype(np.float32)), run_tflite(m_float, faces[:32])
        ),
        "verification_faces": len(faces),
        "verification_faces_tilted": len(faces) // 2,
        "verification_non_faces": len(others),
        "face_min": FACE_MIN,
        "face_decision_agreement": float(np.mean((ref >= FACE_MIN) == (q >= FACE_MIN))),
        "face_mean_abs_change": float(np.mean(np.abs(ref - q))),
        "faces_confirmed_float": float(np.mean(ref_faces >= FACE_MIN)),
        "faces_confirmed_int8": float(np.mean(q_faces >= FACE_MIN)),
        "non_faces_refused_float": float(np.mean(ref_others < FACE_MIN)),
        "non_faces_refused_int8": float(np.mean(q_others < FACE_MIN)),
        "landmark_faces": int(seen.sum()),
        **mesh_proofs(ref_out["mesh"][seen], q_out["mesh"][seen]),
    }


def report_mesh(mdef: ModelDef, proof: dict, report: Report) -> None:
    report.add(mdef.key, "float tflite vs TF max |diff|", proof["tf_vs_float_tflite_max_abs"])
    for metric, value in proof.items():
        if metric.startswith("tf_vs") or not isinstance(value, float) or metric == "face_min":
            continue
        bar = next((b for b in mdef.bars if b.metric == metric), None)
        report.add(mdef.key, metric, value, bar.describe() if bar else "", bar.holds(value) if bar else True)


def convert_face_mesh(
    package: Path,
    calib_faces: ds.Faces,
    calib_photos: list[ds.Photo],
    verif_faces: ds.Faces,
    verif_photos: list[ds.Photo],
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
) -> dict:
    """The face mesh: calibrated on faces (upright and tilted) and on places with none. Its flag is
    proven on both as the face check decides (flag >= ``edge.face_check.FACE_MIN``); its landmarks
    on faces upright and tilted by up to ``MAX_ROLL_DEG``, by the roll they give and by every point."""
    mdef = FACE_MESH
    module = mdef.build(package)
    calib = calibration_crops(mdef, calib_faces, calib_photos)
    float_path, int8_path = convert_model(mdef, module, calib.astype(np.float32), out_dir)
    m_float, m_int8 = TfliteModel(float_path), TfliteModel(int8_path)
    faces, others = verification_crops(mdef, verif_faces, verif_photos)
    proof = mesh_proof(module, m_float, m_int8, faces, others)
    report_mesh(mdef, proof, report)
    return manifest_entry(mdef, int8_path, float_path, m_int8, proof, len(calib), calib_dir)
