"""Side by side: face-api.js (tfjs WASM, via tests/faceapi/bench.mjs) against our Analyzer.

Both sides analyse face-api's six demo photos: detect + age/gender + expression per face.
The node bench runs first, then our analyzer in this process; photos are decoded once on
each side and warmed up once, and the median of --repeat timed runs is compared.

    npm ci --prefix tests/faceapi
    .venv/bin/python tests/faceapi/compare.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.analyzer import Analyzer, AnalyzerConfig

BENCH = Path(__file__).resolve().parent / "bench.mjs"


def run_faceapi(node: str, repeat: int, faceapi_dir: Path | None) -> dict[str, Any]:
    cmd = [node, str(BENCH), "--repeat", str(repeat)]
    if faceapi_dir is not None:
        cmd += ["--dir", str(faceapi_dir)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    report: dict[str, Any] = json.loads(out)
    return report


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: cannot decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def time_ours(analyzer: Analyzer, photos: dict[str, np.ndarray], repeat: int) -> dict[str, tuple[int, list[float]]]:
    """Faces and times per photo, the photos taken in turn in each round: a burst of load from
    elsewhere on a shared machine then spreads over all photos instead of one photo's every run."""
    faces = {name: len(analyzer.analyze(rgb)) for name, rgb in photos.items()}  # warm-up
    ms: dict[str, list[float]] = {name: [] for name in photos}
    for _ in range(repeat):
        for name, rgb in photos.items():
            t0 = time.perf_counter()
            analyzer.analyze(rgb)
            ms[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: (faces[name], ms[name]) for name in photos}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per photo on each side (default 5)")
    parser.add_argument("--attribute-views", type=int, help="AnalyzerConfig.attribute_views (default: its default)")
    parser.add_argument("--threads", type=int, help="AnalyzerConfig.threads (default: all cores)")
    parser.add_argument("--align", action="store_true", help="AnalyzerConfig.align on, as the daemon has it")
    parser.add_argument("--node", default="node", help="node executable")
    parser.add_argument("--faceapi-dir", type=Path, help="face-api package dir holding demo/ and model/")
    args = parser.parse_args()

    fa = run_faceapi(args.node, args.repeat, args.faceapi_dir)

    overrides: dict[str, Any] = {}
    if args.attribute_views is not None:
        overrides["attribute_views"] = args.attribute_views
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.align:
        overrides["align"] = True
    config = AnalyzerConfig(**overrides)
    analyzer = Analyzer(config)
    photos_dir = Path(fa["photos_dir"])
    timed = time_ours(analyzer, {name: read_rgb(photos_dir / name) for name in fa["photos"]}, args.repeat)
    ours = {name: (faces, statistics.median(ms)) for name, (faces, ms) in timed.items()}

    model = analyzer.detector.model
    print(f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} usable cores)")
    print(f"face-api {fa['faceapi']}, tfjs {fa['tfjs']} {fa['backend']} (simd {fa['simd']}), node {fa['node']}")
    print(f"  threads {fa['threads']}, multithread {fa['multithread']}")
    print(f"ours: {model.backend.name}, threads {model.threads}, {config.variant}, detector {config.detector_input}")
    print(f"  attribute_views {config.attribute_views}, align {config.align}")
    print(f"median of {args.repeat} runs after one warm-up (ours: the photos in turn); photos in {photos_dir}")
    print()
    header = f"{'photo':<12} {'faces ours/fa':>13} {'face-api ms':>12} {'ours ms':>9} {'fa/ours':>8}"
    print(header)
    print("-" * len(header))
    fa_total = our_total = 0.0
    for name, result in fa["photos"].items():
        faces, our_ms = ours[name]
        fa_ms = float(result["median_ms"])
        fa_total += fa_ms
        our_total += our_ms
        counts = f"{faces}/{result['faces']}"
        print(f"{name:<12} {counts:>13} {fa_ms:>12.1f} {our_ms:>9.1f} {fa_ms / our_ms:>7.2f}x")
    print("-" * len(header))
    print(f"{'total':<12} {'':>13} {fa_total:>12.1f} {our_total:>9.1f} {fa_total / our_total:>7.2f}x")


if __name__ == "__main__":
    main()
