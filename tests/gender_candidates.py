"""Gender models side by side on real faces, with reliability tables (a measurement, not a test).

The shipped age/gender model (int8, as the device runs it) against candidates rebuilt in float
TensorFlow from their pinned tfjs graphs (Human models' ``faceres``, at three crop margins), on
the same detector boxes:

* the development clips with one labelled person each (every frame, as they are and 2x),
* face-api's six demo photos (all young women),
* utkface-dev adults 18-75 (a seeded sample), upright and turned 30 degrees, each on a 600x600
  grey canvas so the detector sees the face with context.

Per source: accuracy with its Wilson 95% interval, and the share and accuracy of estimates scoring
at least 0.8. Then a reliability table per model: when it says 0.7-0.8, how often is it right?
utkface-dev is only measured here; nothing is fitted to it.

    .venv/bin/python tests/gender_candidates.py --utkface ../shared/data/utkface-dev \\
        --clips ../shared/data/real-footage
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.evaluation.outcomes import on_canvas
from edge.preprocess import CropSpec, crop_face

REPO = Path(__file__).resolve().parents[1]
ONE_PERSON_CLIPS = {"head-pose-face-detection-female": "female", "head-pose-face-detection-male": "male"}
FACERES_MARGINS = (0.0, 0.15, 0.3)
BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SURE = 0.8


@dataclass(frozen=True)
class Face:
    source: str
    male: bool  # the label
    p_male: tuple[float, ...]  # per model


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (c - h) / d, (c + h) / d


def faceres_models(cache: Path) -> Callable[[np.ndarray, np.ndarray], list[float]]:
    """P(male) from Human's faceres (HSE FaceRes) at each margin of ``FACERES_MARGINS``; its input
    is the 224 px crop in 0..255 and its gender output a sigmoid (> 0.5: male), as Human feeds it."""
    import tensorflow as tf
    from edge_convert.tfjs_graph import GraphModel
    from edge_convert.upstream import HUMAN_MODELS, fetch

    graph = GraphModel(fetch(HUMAN_MODELS, cache) / "models" / "faceres.json")

    def run(rgb: np.ndarray, box: np.ndarray) -> list[float]:
        crops = np.stack([crop_face(rgb, box, CropSpec(224, m, "expand")) for m in FACERES_MARGINS])
        return [float(v) for v in graph(tf.constant(crops, tf.float32))["gender_pred/Sigmoid:0"].numpy()[:, 0]]

    return run


def images(utk: Path | None, clips: Path | None, demo: Path, limit: int, seed: int) -> Iterator[tuple]:
    """(source, male, rgb, region) per labelled face; region: where the face must be, or None."""
    if clips is not None:
        for clip, gender in ONE_PERSON_CLIPS.items():
            cap = cv2.VideoCapture(str(clips / f"{clip}.avi"))
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield f"{gender} clip", gender == "male", rgb, None
                yield f"{gender} clip 2x", gender == "male", cv2.resize(rgb, None, fx=2, fy=2), None
    for p in sorted(demo.glob("sample*.jpg")):
        yield "demo photos", False, cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), "all"
    if utk is not None:
        with open(utk / "labels.csv") as f:
            rows = [r for r in csv.DictReader(f) if 18 <= int(r["age"]) <= 75]
        for i in np.random.default_rng(seed).choice(len(rows), min(limit, len(rows)), replace=False):
            r = rows[int(i)]
            rgb = cv2.cvtColor(cv2.imread(str(utk / r["file"])), cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            for angle in (0, 30):
                turned = rgb
                if angle:
                    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                    turned = cv2.warpAffine(rgb, m, (w, h), borderValue=(128, 128, 128))
                canvas, region = on_canvas(turned, 600)
                yield f"utkface adults, {angle} deg", r["gender"] == "male", canvas, region


def measure(args: argparse.Namespace) -> list[Face]:
    analyzer = Analyzer(AnalyzerConfig())
    faceres = faceres_models(args.cache)
    demo = REPO / "tests" / "faceapi" / "node_modules" / "@vladmandic" / "face-api" / "demo"
    out: list[Face] = []
    for source, male, rgb, region in images(args.utkface, args.clips, demo, args.limit, args.seed):
        faces = analyzer.analyze(rgb)
        if region not in (None, "all"):
            x1, y1, x2, y2 = region
            faces = [
                f
                for f in faces
                if x1 <= (f.detection.box[0] + f.detection.box[2]) / 2 <= x2
                and y1 <= (f.detection.box[1] + f.detection.box[3]) / 2 <= y2
            ]
        if region != "all":
            faces = sorted(faces, key=lambda f: -f.detection.score)[:1]
        for f in faces:
            a = f.attributes
            ours = a.gender_score if a.gender == "male" else 1.0 - (a.gender_score or 0.5)
            out.append(Face(source, male, (float(ours), *faceres(rgb, np.asarray(f.detection.box)))))
    return out


def report(faces: list[Face]) -> None:
    names = ["face-api int8 (shipped)"] + [f"faceres float, margin {m}" for m in FACERES_MARGINS]
    print("| source | n | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for source in dict.fromkeys(f.source for f in faces):
        group = [f for f in faces if f.source == source]
        cells = []
        for k in range(len(names)):
            right = [(f.p_male[k] > 0.5) == f.male for f in group]
            sure = [r for r, f in zip(right, group) if max(f.p_male[k], 1 - f.p_male[k]) >= SURE]
            lo, hi = wilson(sum(right), len(right))
            cells.append(
                f"{100 * sum(right) / len(right):.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]; "
                f">= {SURE}: {100 * len(sure) / len(group):.0f}% of faces, "
                + (f"{100 * sum(sure) / len(sure):.0f}% right" if sure else "-")
            )
        print(f"| {source} | {len(group)} | " + " | ".join(cells) + " |")
    for k, name in enumerate(names[:2]):
        for label, pick in (("utkface-dev adults", True), ("real clips and demo photos", False)):
            group = [f for f in faces if f.source.startswith("utkface") == pick]
            print(f"\n{name}, {label} (n={len(group)}): score -> right")
            print("| score | n | right | 95% interval |\n|---|---|---|---|")
            for lo, hi in zip(BINS[:-1], BINS[1:]):
                cell = [f for f in group if lo <= max(f.p_male[k], 1 - f.p_male[k]) < hi + (hi == 1.0)]
                k_right = sum((f.p_male[k] > 0.5) == f.male for f in cell)
                a, b = wilson(k_right, len(cell))
                share = f"{100 * k_right / len(cell):.1f}%" if cell else "-"
                print(f"| {lo:.2f}-{hi:.2f} | {len(cell)} | {share} | {100 * a:.0f}-{100 * b:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, help="utkface-dev folder (evaluation only)")
    parser.add_argument("--clips", type=Path, help="real-footage folder")
    parser.add_argument("--limit", type=int, default=500, help="utkface adults sampled (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "npm")
    report(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
