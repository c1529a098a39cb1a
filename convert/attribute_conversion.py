"""The attribute models' steps (age/gender, expression, ethnicity): build each network, convert it
on the float detector's faces and prove that int8 estimates as float does, the way the device
estimates (several views of a face, combined near a decision), overall and per group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from edge.attributes import REPORTED, settle_views
from edge.interpreter import TfliteModel
from edge.preprocess import DEFAULT_VIEWS

from . import datasets as ds
from . import parity
from .catalogue import ALL, FACE_MESH, GEAR_AGE_WEIGHTS, ModelDef
from .inference import run_tf, run_tflite
from .manifest import manifest_entry
from .proof_table import Report
from .quantize import convert_model
from .recipe import FACE_EQUALIZE_STRENGTH, FACE_VARIANTS, SEEDS
from .verify import max_abs_diff, top1_agreement

log = logging.getLogger(__name__)


def face_proofs(mdef: ModelDef, ref: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> dict[str, float]:
    if mdef.key == "age_gender":
        return {
            "gender_agreement": top1_agreement(ref["gender"], q["gender"]),
            "age_mean_abs_change_years": float(np.mean(np.abs(ref["age"] - q["age"]))),
            "age_max_abs_change_years": float(np.max(np.abs(ref["age"] - q["age"]))),
        }
    if mdef.key == "expression":
        return {"expression_agreement": top1_agreement(ref["expression"], q["expression"])}
    if mdef.key == "ethnicity":
        w = np.asarray(GEAR_AGE_WEIGHTS)
        return {
            "race_agreement": top1_agreement(ref["race"], q["race"]),
            "gender_agreement": top1_agreement(ref["gender"], q["gender"]),
            "age_bucket_agreement": top1_agreement(ref["age_bucket"], q["age_bucket"]),
            "age_mean_abs_change_years": float(np.mean(np.abs(ref["age_bucket"] @ w - q["age_bucket"] @ w))),
        }
    raise KeyError(mdef.key)


def run_as_device(mdef: ModelDef, model: TfliteModel, crops: np.ndarray, views: int) -> tuple[dict, dict]:
    """Each face's estimate from its ``views`` consecutive crops as the device makes it
    (``edge.attributes.settle_views``: the first crop, or the mean over the views where that is
    near a decision; the other views run only there), and the first crops' outputs."""
    first = run_tflite(model, crops[::views])

    def more_views(near: np.ndarray) -> dict[str, np.ndarray]:
        return run_tflite(model, crops[(near[:, None] * views + np.arange(1, views)).ravel()])

    return settle_views(first, more_views, views, REPORTED[mdef.key]), first


def group_proofs(mdef: ModelDef, m_float: TfliteModel, m_int8: TfliteModel, crops: np.ndarray, views: int) -> dict:
    """int8 against float per capture condition and float call (see convert/parity.py); ``crops``
    holds ``views`` consecutive crops per face, combined as on the device (``run_as_device``)."""
    rendered = parity.conditions(crops, SEEDS["face_conditions"], views)
    outputs = {
        name: (run_as_device(mdef, m_float, x, views)[0], run_as_device(mdef, m_int8, x, views)[0])
        for name, x in rendered.items()
    }
    split_by = mdef.group_split

    def split(ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if split_by is None:
            return {}
        calls = np.argmax(ref[split_by], axis=1)
        return {label: calls == i for i, label in enumerate(mdef.outputs[split_by]["labels"])}

    rows = parity.group_rows(outputs, split, mdef.group_outputs)
    proof: dict = {"groups": [asdict(r) for r in rows]}
    for output in mdef.group_outputs:
        w = parity.weakest(rows, output)
        proof[f"weakest_group_{output}_agreement"] = w.agreement[output]
        proof[f"weakest_group_{output}"] = f"{w.condition} / {w.group} (n={w.n})"
    return proof


def crop_sets(
    mdef: ModelDef, calib_faces: ds.Faces, verif_faces: ds.Faces, views: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibration crops (harsh conditions included), verification crops and the stress set
    (greyscale, blurred, badly exposed), ``views`` consecutive crops per verification face."""
    assert mdef.crop is not None
    calib = ds.face_variants(
        calib_faces, mdef.crop, FACE_VARIANTS["calibration"], SEEDS["face_calibration"], harsh=True
    )
    verif = ds.face_variants(
        verif_faces, mdef.crop, FACE_VARIANTS["verification"], SEEDS["face_verification"], views=views
    )
    stress = ds.face_variants(
        verif_faces, mdef.crop, FACE_VARIANTS["verification"], SEEDS["face_verification"], harsh=True, views=views
    )
    return calib, verif, stress


def int8_network(mdef: ModelDef, package: Path, calib: np.ndarray) -> tf.Module | None:
    """A second copy of the network re-balanced for integer arithmetic, where the recipe asks for one."""
    if mdef.key not in FACE_EQUALIZE_STRENGTH:
        return None
    int8_module = mdef.build(package)
    int8_module.equalize(calib.astype(np.float32), FACE_EQUALIZE_STRENGTH[mdef.key])
    return int8_module


def attribute_proof(
    mdef: ModelDef,
    module: tf.Module,
    m_float: TfliteModel,
    m_int8: TfliteModel,
    verif: np.ndarray,
    stress: np.ndarray,
    group_faces: ds.Faces,
    views: int,
) -> dict:
    """int8 against float: as the device estimates, on single crops, on the stress set
    (informational: no bar; see the model card) and per group."""
    (ref, ref_first), (q, q_first) = (run_as_device(mdef, m, verif, views) for m in (m_float, m_int8))
    proof = {
        "tf_vs_float_tflite_max_abs": max_abs_diff(
            run_tf(module, verif[:32].astype(np.float32)), run_tflite(m_float, verif[:32])
        ),
        "verification_crops": len(verif) // views,
        "views": views,
    }
    proof.update(face_proofs(mdef, ref, q))
    single = face_proofs(mdef, ref_first, q_first)
    proof.update({f"single_crop_{k}": x for k, x in single.items()})
    stress_proof = face_proofs(
        mdef, run_as_device(mdef, m_float, stress, views)[0], run_as_device(mdef, m_int8, stress, views)[0]
    )
    proof.update({f"stress_{k}": x for k, x in stress_proof.items()})
    if mdef.group_outputs:
        assert mdef.crop is not None
        faces = ds.face_variants(
            group_faces, mdef.crop, FACE_VARIANTS["groups"], SEEDS["face_verification"], views=views
        )
        proof.update(group_proofs(mdef, m_float, m_int8, faces, views))
    return proof


def report_attribute(mdef: ModelDef, proof: dict, report: Report) -> None:
    """One row per figure (diagnostic counts and maxima left out), held to its bar where it has one."""
    report.add(mdef.key, "float tflite vs TF max |diff|", proof["tf_vs_float_tflite_max_abs"])
    for metric, value in proof.items():
        if (
            metric.startswith("tf_vs")
            or metric == "verification_crops"
            or not isinstance(value, float)
            or metric.endswith("max_abs_change_years")
        ):
            continue
        bar = next((b for b in mdef.bars if b.metric == metric), None)
        where = proof.get(metric.removesuffix("_agreement")) if metric.startswith("weakest_group_") else None
        report.add(
            mdef.key,
            f"{metric}: {where}" if where else metric,
            float(value),
            bar.describe() if bar else "",
            bar.holds(float(value)) if bar else True,
        )


def convert_attribute_model(
    mdef: ModelDef,
    package: Path,
    calib_faces: ds.Faces,
    verif_faces: ds.Faces,
    group_faces: ds.Faces,
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
) -> dict:
    """Build, convert and prove one attribute model; its manifest entry."""
    module = mdef.build(package)
    # Verified as the device estimates: each face over up to DEFAULT_VIEWS crops (the views,
    # averaged near a decision: edge.attributes.settle_views); the single crop is reported too.
    v = DEFAULT_VIEWS
    calib, verif, stress = crop_sets(mdef, calib_faces, verif_faces, v)
    int8_module = int8_network(mdef, package, calib)
    float_path, int8_path = convert_model(mdef, module, calib.astype(np.float32), out_dir, int8_module)
    m_float, m_int8 = TfliteModel(float_path), TfliteModel(int8_path)
    proof = attribute_proof(mdef, module, m_float, m_int8, verif, stress, group_faces, v)
    report_attribute(mdef, proof, report)
    return manifest_entry(mdef, int8_path, float_path, m_int8, proof, len(calib), calib_dir)


def convert_attribute_models(
    only: set[str],
    packages: dict[str, Path],
    calib_faces: ds.Faces,
    verif_faces: ds.Faces,
    group_faces: ds.Faces,
    out_dir: Path,
    report: Report,
    calib_dir: Path | None,
    entries: dict,
) -> None:
    """Every attribute model in ``only`` (the models fed a face crop, the face mesh aside)."""
    for mdef in ALL:
        if mdef.key not in only or mdef.crop is None or mdef is FACE_MESH:
            continue
        t0 = time.monotonic()
        entries[mdef.key] = convert_attribute_model(
            mdef, packages[mdef.source.spec], calib_faces, verif_faces, group_faces, out_dir, report, calib_dir
        )
        log.info("%s: built, converted and proved in %.0f s", mdef.key, time.monotonic() - t0)
