"""Does a face's pose or sharpness say when its gender estimate is wrong? (a measurement, not a test)

Issue "Real cameras, round 2" asks that only observations large, sharp and frontal enough vote for a
track's gender. Before adding such a gate, this measures whether it would remove wrong estimates:
the shipped int8 pipeline (with alignment, as the daemon runs it) on the labelled faces of
``gender_candidates.images`` (the one-person development clips as they are and 2x, face-api's demo
photos, utkface-dev adults on a grey canvas), and for each face

* yaw and pitch read from the face mesh's 3D landmarks (cheek to cheek, forehead to chin),
* sharpness: the variance of the Laplacian of the box resized to 64x64 grey,

then gender accuracy per band of each, with Wilson 95% intervals. utkface-dev is only measured here.

    .venv/bin/python tests/pose_gates.py --utkface ../shared/data/utkface-dev \\
        --clips ../shared/data/real-footage
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from alignment import labelled
from gender_candidates import REPO, images, wilson

from edge.analyzer import Analyzer, AnalyzerConfig

CHEEKS = (234, 454)  # MediaPipe mesh: face outline at the cheekbones, image left then right
FOREHEAD_CHIN = (10, 152)
BANDS = {
    "|yaw| deg": (0, 10, 20, 30, 45, 90),
    "|pitch| deg": (0, 10, 20, 30, 90),
    "sharpness": (0, 100, 200, 400, 800, math.inf),
}


@dataclass(frozen=True)
class Row:
    real: bool  # a development clip or demo photo (else utkface-dev)
    right: bool
    sure: bool  # gender score >= 0.8, the daemon's gate
    measures: dict[str, float]


def pose(points: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch in degrees from the mesh's x, y, z (z towards the camera negative)."""
    d = points[CHEEKS[1]] - points[CHEEKS[0]]
    e = points[FOREHEAD_CHIN[1]] - points[FOREHEAD_CHIN[0]]
    return math.degrees(math.atan2(d[2], d[0])), math.degrees(math.atan2(e[2], e[1]))


def sharpness(rgb: np.ndarray, box: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    grey = cv2.cvtColor(rgb[max(0, y1) : y2, max(0, x1) : x2], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA), cv2.CV_64F).var())


def measure(args: argparse.Namespace) -> list[Row]:
    analyzer = Analyzer(AnalyzerConfig(align=True))
    mesh = analyzer.attributes.mesh
    assert mesh is not None, "the model set has no face mesh"
    demo = REPO / "tests" / "faceapi" / "node_modules" / "@vladmandic" / "face-api" / "demo"
    rows: list[Row] = []
    for source, male, rgb, region in images(args.utkface, args.clips, demo, args.limit, args.seed):
        if source.endswith("30 deg"):
            continue  # turned in the image plane: alignment's business, not pose
        for f in labelled(analyzer.analyze(rgb), region):
            yaw, pitch = pose(mesh.read(rgb, np.asarray(f.detection.box)).points)
            a = f.attributes
            rows.append(
                Row(
                    real=not source.startswith("utkface"),
                    right=(a.gender == "male") == male,
                    sure=(a.gender_score or 0.0) >= 0.8,
                    measures={
                        "|yaw| deg": abs(yaw),
                        "|pitch| deg": abs(pitch),
                        "sharpness": sharpness(rgb, f.detection.box),
                    },
                )
            )
    return rows


def report(rows: list[Row]) -> None:
    for name, edges in BANDS.items():
        print(f"\n| {name} | real: n | right | at >= 0.8: n | right | utkface-dev: n | right | at >= 0.8: n | right |")
        print("|---|---|---|---|---|---|---|---|---|")
        for lo, hi in zip(edges[:-1], edges[1:]):
            cells = []
            for real in (True, False):
                band = [r for r in rows if r.real == real and lo <= r.measures[name] < hi]
                for group in (band, [r for r in band if r.sure]):
                    k = sum(r.right for r in group)
                    a, b = wilson(k, len(group))
                    share = f"{100 * k / len(group):.1f}% [{100 * a:.0f}-{100 * b:.0f}]" if group else "-"
                    cells += [str(len(group)), share]
            print(f"| {lo:g}-{hi:g} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, help="utkface-dev folder (evaluation only)")
    parser.add_argument("--clips", type=Path, help="real-footage folder")
    parser.add_argument("--limit", type=int, default=3000, help="utkface adults sampled (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    report(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
