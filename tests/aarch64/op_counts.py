"""Multiply-accumulates per inference of each shipped int8 model, read from the model files, and
what they mean for a Raspberry Pi on paper (the README's estimate; emulation proves correctness,
not speed).

    .venv/bin/python tests/aarch64/op_counts.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edge.models import DEFAULT_DIR

# Peak int8 multiply-accumulates per cycle per core with 128-bit NEON: the Cortex-A72 (Pi 4, Armv8.0)
# widens int8 to int16 and multiplies 8 lanes per instruction on each of its two NEON pipes; the
# Cortex-A76 (Pi 5, Armv8.2) has SDOT, 16 int8 products per instruction on each of two pipes.
CORES = {
    "Pi 4 (4x Cortex-A72, 1.8 GHz)": (4, 1.8e9, 16),
    "Pi 5 (4x Cortex-A76, 2.4 GHz)": (4, 2.4e9, 32),
}
EFFICIENCY = (0.25, 0.5)  # share of peak a tuned int8 kernel library sustains on small layers


def macs(path: Path) -> int:
    """Sum over convolutions, depthwise convolutions and dense layers of the products they compute."""
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():
        name, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        if name == "CONV_2D":
            _, h, w, c = shapes[outs[0]]
            _, kh, kw, cin = shapes[ins[1]]
            total += h * w * c * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":
            _, h, w, c = shapes[outs[0]]
            _, kh, kw, _ = shapes[ins[1]]
            total += h * w * c * kh * kw
        elif name == "FULLY_CONNECTED":
            out_features, in_features = shapes[ins[1]]
            rows = int(np.prod(shapes[outs[0]])) // out_features
            total += rows * out_features * in_features
    return total


def main() -> None:
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text())
    counts = {key: macs(DEFAULT_DIR / m["file"]) for key, m in manifest["models"].items()}
    print("| model | MMAC per inference |")
    print("|---|---|")
    for key, n in counts.items():
        print(f"| {key} | {n / 1e6:.0f} |")
    for name, (cores, hz, per_cycle) in CORES.items():
        for key in ("detector", "detector_320", "age_gender", "expression"):
            lo, hi = (counts[key] / (cores * hz * per_cycle * e) * 1000 for e in EFFICIENCY[::-1])
            print(f"{name}: {key} {lo:.1f}-{hi:.1f} ms (4 threads, {EFFICIENCY[0]:.0%}-{EFFICIENCY[1]:.0%} of peak)")


if __name__ == "__main__":
    main()
