"""How far a face's views move each reported score: the margins of ``edge.attributes.VIEW_MARGINS``.

    .venv/bin/python tests/view_margins.py --photos DIR --clips DIR [--every 8]

Faces the detector finds (score >= 0.5, shorter side >= 36 px) in face-api's demo photos and
screenshots (``--photos``, at 1x, 0.5x and 0.25x) and in the development clips (``--clips``, every
``--every``-th frame at 1x and 2x): never utkface-dev. For each attribute model, int8 and float, all
seven views of every face are run; per reported output (``edge.attributes.REPORTED``) a face's move
is the largest change of any of its scores between the box's own view and the mean over the views
(the estimate a face near a decision gets). Printed per
output: faces, median, 99th percentile and largest move, and the share of faces that each margin
sends to their views (best two scores within twice the margin).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.attributes import REPORTED, VIEW_MARGINS, AttributesConfig
from edge.media import IMAGE_SUFFIXES, frames, read_image
from edge.models import Manifest
from edge.preprocess import DEFAULT_VIEWS, CropSpec, crop_face, face_views

MIN_FACE_PX = 36.0
PHOTO_SCALES = (1.0, 0.5, 0.25)
CLIP_SCALES = (1.0, 2.0)


def images(photos: Path, clips: Path, every: int) -> Iterator[np.ndarray]:
    for path in sorted(photos.glob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            rgb = read_image(path)
            for s in PHOTO_SCALES:
                yield rgb if s == 1 else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    for path in sorted(clips.glob("*.avi")):
        for frame in frames(path, every):
            rgb = frame.rgb
            for s in CLIP_SCALES:
                yield rgb if s == 1 else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)


def moves(manifest: Manifest, key: str, variant: str, faces: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per reported output of ``key``: each face's largest score move from its first view to the mean
    over its views, and its first view's gap between its best two scores."""
    info, model = manifest.load(key, variant)
    spec = CropSpec.from_manifest(info.input["crop"])
    bgr = info.input.get("colour", "RGB") == "BGR"
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in REPORTED[key]}
    for rgb, box in faces:
        rows = []
        for view in face_views(box, DEFAULT_VIEWS):
            crop = crop_face(rgb, view, spec)
            rows.append(model.run(np.ascontiguousarray(crop[None, ..., ::-1] if bgr else crop[None])))
        for name, (moved, gaps) in out.items():
            scores = np.concatenate([r[name] for r in rows])  # [views, classes]
            moved.append(float(np.max(np.abs(scores.mean(axis=0) - scores[0]))))
            ranked = np.sort(scores[0])
            gaps.append(float(ranked[-1] - ranked[-2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--clips", type=Path, required=True)
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    analyzer = Analyzer(AnalyzerConfig(attributes=AttributesConfig(age=False, gender=False, expression=False)))
    faces = []
    for rgb in images(args.photos, args.clips, args.every):
        for d in analyzer.detect(rgb):
            x1, y1, x2, y2 = d.box
            if d.score >= 0.5 and min(x2 - x1, y2 - y1) >= MIN_FACE_PX:
                faces.append((rgb, np.asarray(d.box)))
    print(f"{len(faces)} faces of {MIN_FACE_PX:.0f} px and more")
    manifest = Manifest(analyzer.config.model_dir)
    print("| model | output | variant | faces | median move | 99th pct | largest | margin now | sent to views |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in REPORTED:
        for variant in ("int8", "float"):
            for name, (moved, gaps) in moves(manifest, key, variant, faces).items():
                m, g = np.asarray(moved), np.asarray(gaps)
                margin = VIEW_MARGINS.get(name, max(VIEW_MARGINS.values()))
                print(
                    f"| {key} | {name} | {variant} | {len(m)} | {np.median(m):.3f} | {np.percentile(m, 99):.3f} | "
                    f"{m.max():.3f} | {margin:.2f} | {np.mean(g < 2 * margin):.1%} |"
                )


if __name__ == "__main__":
    main()
