"""``models/manifest.json``: what each converted model is, where it came from and what it proved.

The device reads the manifest (``edge.models``) to find, feed and decode every model, so the
entries written here are the contract between the converter and the runtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import tensorflow as tf

from edge.interpreter import TfliteModel

from . import datasets as ds
from .catalogue import DETECTOR, ModelDef
from .recipe import SEEDS


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def input_entry(mdef: ModelDef, model: TfliteModel) -> dict:
    spec = dict(mdef.input_spec)
    spec.update(
        {
            "name": model.input.name,
            "shape": list(mdef.input_shape),
            "dtype": str(model.input.dtype),
            "quantization": {"scale": model.input.scale, "zero_point": model.input.zero_point},
        }
    )
    if mdef.crop is not None:
        spec["crop"] = mdef.crop.as_manifest()
    return spec


def output_entries(mdef: ModelDef, model: TfliteModel) -> dict:
    out = {}
    for name, info in mdef.outputs.items():
        t = model.outputs[name]
        out[name] = dict(info, dtype=str(t.dtype), quantization={"scale": t.scale, "zero_point": t.zero_point})
    return out


def manifest_entry(
    mdef: ModelDef,
    int8_path: Path,
    float_path: Path,
    int8: TfliteModel,
    proof: dict,
    calibration_samples: int,
    calib_dir: Path | None,
) -> dict:
    bars = [
        {"metric": b.metric, "op": b.op, "limit": b.limit, "holds": b.holds(float(proof[b.metric]))} for b in mdef.bars
    ]
    return {
        **file_entry(int8_path),
        "variant": "int8",
        "description": mdef.description,
        "opt_in": mdef.opt_in,
        "float": file_entry(float_path),
        "source": {
            "package": mdef.source.spec,
            "integrity": mdef.source.integrity,
            "path": mdef.source_path,
            "upstream": mdef.upstream or mdef.source.upstream,
            "license": mdef.license or mdef.source.license,
        },
        "input": input_entry(mdef, int8),
        "outputs": output_entries(mdef, int8),
        "calibration_samples": calibration_samples,
        "calibrated_on": str(calib_dir) if calib_dir else "pinned demo photos",
        "proof": proof,
        "bars": bars,
    }


def existing_entries(manifest_path: Path) -> dict:
    """The entries of a manifest already there: a run with ``--only`` keeps the other models'."""
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entries: dict = manifest.get("models", {})
    return entries


def manifest_document(entries: dict, calib_dir: Path | None) -> dict:
    """The whole manifest: the models' entries and how they were calibrated and verified."""
    return {
        "schema": 1,
        "generated_by": "python -m edge_convert",
        "tensorflow": tf.__version__,
        "calibration": {
            "source": str(calib_dir)
            if calib_dir
            else f"{DETECTOR.source.spec} demo/{', '.join(ds.CALIBRATION_PHOTOS)}",
            "verification": f"{DETECTOR.source.spec} demo/{', '.join(ds.VERIFICATION_PHOTOS)} + scikit-image astronaut",
            "seeds": SEEDS,
            "note": "faces are the float detector's boxes at score >= 0.5, with seeded box and photometric jitter",
        },
        "models": entries,
    }
