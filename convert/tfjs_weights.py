"""Decode TensorFlow.js weight manifests into float32 numpy arrays.

face-api.js stores most weights as uint8 with a per-tensor ``scale``/``min``
(value = q * scale + min) and the human models as float16; both are expanded
to float32 here so the rebuilt networks compute exactly what tfjs computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "float16": np.float16}


def _decode_entry(entry: dict, buf: memoryview, offset: int) -> tuple[np.ndarray, int]:
    shape = [int(s) for s in entry["shape"]]
    count = int(np.prod(shape)) if shape else 1
    quant = entry.get("quantization")
    if quant:
        qdtype = np.dtype(_DTYPES[quant["dtype"]])
        raw = np.frombuffer(buf, dtype=qdtype, count=count, offset=offset)
        nbytes = count * qdtype.itemsize
        if quant["dtype"] in ("uint8", "uint16"):
            values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        else:  # float16 storage
            values = raw.astype(np.float32)
    else:
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        values = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).copy()
        nbytes = count * dtype.itemsize
    target = np.float32 if entry["dtype"] == "float32" else _DTYPES[entry["dtype"]]
    return values.astype(target).reshape(shape), offset + nbytes


def load_weights_manifest(manifest_groups: list[dict], base_dir: Path) -> dict[str, np.ndarray]:
    """Read every weight group listed in a tfjs ``weightsManifest``."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest_groups:
        data = b"".join((base_dir / p).read_bytes() for p in group["paths"])
        buf = memoryview(data)
        offset = 0
        for entry in group["weights"]:
            weights[entry["name"]], offset = _decode_entry(entry, buf, offset)
        if offset != len(data):
            raise ValueError(
                f"weight files {group['paths']} hold {len(data)} bytes but the manifest describes {offset}"
            )
    return weights


def load_faceapi_weights(model_dir: Path, name: str) -> dict[str, np.ndarray]:
    """Load ``<name>-weights_manifest.json`` (a face-api weights-only model)."""
    manifest = json.loads((model_dir / f"{name}-weights_manifest.json").read_text())
    return load_weights_manifest(manifest, model_dir)
