"""Turning tilted faces upright before the attribute models: what it changes (a measurement, not a test).

The shipped int8 pipeline with and without alignment (``AnalyzerConfig.align``), on the same faces:

* utkface-dev adults 18-75 (a seeded sample) on a 600x600 grey canvas, upright and turned by
  +-15 and +-30 degrees (a head tilted sideways), labelled gender and age;
* the development clips with one labelled person each, as they are, 2x, and turned by 20 degrees;
* face-api's six demo photos (all young women), as they are and turned by 20 degrees.

Per source: how many faces, the mesh's roll (mean and spread), gender accuracy with its Wilson 95%
interval and the share of estimates at 0.8 or more, age error where ages are labelled, and how often
the expression stayed the same. utkface-dev is only measured here; nothing is fitted to it.

    .venv/bin/python tests/alignment.py --utkface ../shared/data/utkface-dev \\
        --clips ../shared/data/real-footage
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.evaluation.outcomes import on_canvas
from edge.face_mesh import FaceMesh
from edge.models import DEFAULT_DIR, Manifest
from edge.records import Face

REPO = Path(__file__).resolve().parents[1]
ONE_PERSON_CLIPS = {"head-pose-face-detection-female": False, "head-pose-face-detection-male": True}
UTK_ANGLES = (0, 15, -15, 30, -30)
TURN = 20  # degrees the clips and photos are also turned by


@dataclass(frozen=True)
class Pair:
    source: str
    male: bool
    age: float | None
    roll: float
    plain: Face
    aligned: Face


def turned(rgb: np.ndarray, angle: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def images(utk: Path | None, clips: Path | None, limit: int, seed: int) -> Iterator[tuple]:
    """(source, male, age, rgb, region) per labelled image; region "all": every face is labelled."""
    if clips is not None:
        for clip, male in ONE_PERSON_CLIPS.items():
            cap = cv2.VideoCapture(str(clips / f"{clip}.avi"))
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                name = clip.rsplit("-", 1)[1]
                yield f"{name} clip", male, None, rgb, None
                big = cv2.resize(rgb, None, fx=2, fy=2)
                yield f"{name} clip 2x", male, None, big, None
                yield f"{name} clip 2x, turned {TURN}", male, None, turned(big, TURN), None
    demo = REPO / "tests" / "faceapi" / "node_modules" / "@vladmandic" / "face-api" / "demo"
    for p in sorted(demo.glob("sample*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        yield "demo photos", False, None, rgb, "all"
        yield f"demo photos, turned {TURN}", False, None, turned(rgb, TURN), "all"
    if utk is not None:
        with open(utk / "labels.csv") as f:
            rows = [r for r in csv.DictReader(f) if 18 <= int(r["age"]) <= 75]
        for i in np.random.default_rng(seed).choice(len(rows), min(limit, len(rows)), replace=False):
            r = rows[int(i)]
            rgb = cv2.cvtColor(cv2.imread(str(utk / r["file"])), cv2.COLOR_BGR2RGB)
            for angle in UTK_ANGLES:
                canvas, region = on_canvas(turned(rgb, angle) if angle else rgb, 600)
                yield f"utkface adults, {angle:+d} deg", r["gender"] == "male", float(r["age"]), canvas, region


def labelled(faces: list[Face], region: object) -> list[Face]:
    if region == "all":
        return faces
    if region is not None:
        x1, y1, x2, y2 = region  # type: ignore[misc]
        faces = [
            f
            for f in faces
            if x1 <= (f.detection.box[0] + f.detection.box[2]) / 2 <= x2
            and y1 <= (f.detection.box[1] + f.detection.box[3]) / 2 <= y2
        ]
    return sorted(faces, key=lambda f: -f.detection.score)[:1]


def measure(args: argparse.Namespace) -> list[Pair]:
    plain, aligned = Analyzer(AnalyzerConfig()), Analyzer(AnalyzerConfig(align=True))
    mesh = FaceMesh(Manifest(DEFAULT_DIR))
    out = []
    for source, male, age, rgb, region in images(args.utkface, args.clips, args.limit, args.seed):
        for face in labelled(plain.analyze(rgb), region):
            again = aligned.attributes.estimate(rgb, [face.detection])[0]
            roll = mesh.read(rgb, face.detection.box).roll_deg
            out.append(Pair(source, male, age, roll, face, Face(face.detection, again)))
    return out


def p_male(face: Face) -> float:
    a = face.attributes
    return a.gender_score if a.gender == "male" else 1.0 - (a.gender_score or 0.5)


def report(pairs: list[Pair]) -> None:
    from gender_candidates import wilson

    print(
        "| source | n | mesh roll, mean (sd) | gender right: as cropped | upright | >= 0.8: as cropped | upright "
        "| age error: as cropped | upright | expression unchanged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for source in dict.fromkeys(p.source for p in pairs):
        group = [p for p in pairs if p.source == source]
        cells = []
        for pick in (lambda p: p.plain, lambda p: p.aligned):
            k = sum((p_male(pick(p)) > 0.5) == p.male for p in group)
            lo, hi = wilson(k, len(group))
            cells.append(f"{100 * k / len(group):.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]")
        for pick in (lambda p: p.plain, lambda p: p.aligned):
            cells.append(f"{100 * np.mean([max(p_male(pick(p)), 1 - p_male(pick(p))) >= 0.8 for p in group]):.0f}%")
        aged = [p for p in group if p.age is not None]
        for pick in (lambda p: p.plain, lambda p: p.aligned):
            cells.append(f"{np.mean([abs(pick(p).attributes.age - p.age) for p in aged]):.2f}" if aged else "-")
        same = np.mean([p.plain.attributes.expression == p.aligned.attributes.expression for p in group])
        rolls = np.array([p.roll for p in group])
        print(
            f"| {source} | {len(group)} | {rolls.mean():+.1f} ({rolls.std():.1f}) | "
            + " | ".join(cells)
            + f" | {100 * same:.0f}% |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, help="utkface-dev folder (evaluation only)")
    parser.add_argument("--clips", type=Path, help="real-footage folder")
    parser.add_argument("--limit", type=int, default=300, help="utkface adults sampled (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    report(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
