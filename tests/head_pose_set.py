"""A hand-labelled head-pose set: real faces with yaw and pitch judged by eye, blind to any estimate.

Faces come from the real development clips (every frame of the two head-pose clips, every 2nd frame
of the walking clip at 2x, INTER_CUBIC) and face-api's six demo photos; they are the project's
detector boxes with score >= 0.5 and shorter side >= 24 px at the scale used. The labels, and how
they were made, are in ``tests/data/head_pose_labels.json``; ``items()`` gives each labelled face's
RGB image and box for an evaluation to score an estimator against.

    .venv/bin/python tests/head_pose_set.py                    # list the candidate faces
    .venv/bin/python tests/head_pose_set.py --sheets /tmp/hp   # and write contact sheets to label
    .venv/bin/python tests/head_pose_set.py --check            # the labels still match the enumeration

Candidates are enumerated deterministically (source, frame, scale, box to 0.1 px; per frame in
order of the box's left edge), so re-running the detector reproduces the labelled ids.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "real-footage"
PHOTOS = REPO / "tests" / "faceapi" / "node_modules" / "@vladmandic" / "face-api" / "demo"
LABELS = REPO / "tests" / "data" / "head_pose_labels.json"

# source file -> (short name, frame step, scale)
CLIP_PLAN: dict[str, tuple[str, int, float]] = {
    "head-pose-face-detection-male.avi": ("male", 1, 1.0),
    "head-pose-face-detection-female.avi": ("female", 1, 1.0),
    "face-demographics-walking.avi": ("walking", 2, 2.0),
}
PHOTO_NAMES = [f"sample{i}.jpg" for i in range(1, 7)]
MIN_SCORE = 0.5
MIN_SIDE = 24.0


@dataclass(frozen=True)
class Item:
    id: str
    source: str
    frame: int | None
    scale: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the scaled image


def read_clip(path: Path) -> list[np.ndarray]:
    """All frames of a clip as RGB uint8."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise FileNotFoundError(path)
    return frames


def scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def load_image(source: str, frame: int | None, scale: float) -> np.ndarray:
    """The RGB image a box refers to: a photo, or one clip frame, at ``scale``."""
    if frame is None:
        bgr = cv2.imread(str(PHOTOS / source))
        if bgr is None:
            raise FileNotFoundError(PHOTOS / source)
        return scaled(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), scale)
    return scaled(read_clip(CLIPS / source)[frame], scale)


def images() -> Iterator[tuple[str, str, int | None, float, np.ndarray]]:
    """(id prefix, source, frame, scale, RGB) for every image searched, in a fixed order."""
    for source, (short, step, scale) in CLIP_PLAN.items():
        for i, rgb in enumerate(read_clip(CLIPS / source)):
            if i % step == 0:
                yield f"{short}-f{i:03d}", source, i, scale, scaled(rgb, scale)
    for name in PHOTO_NAMES:
        yield name.removesuffix(".jpg"), name, None, 1.0, load_image(name, None, 1.0)


def candidates() -> Iterator[tuple[Item, np.ndarray]]:
    """Every detector box to label, with the image it is in."""
    from edge.analyzer import Analyzer, AnalyzerConfig

    analyzer = Analyzer(AnalyzerConfig())
    for prefix, source, frame, scale, rgb in images():
        boxes = []
        for det in analyzer.detect(rgb):
            x1, y1, x2, y2 = (round(float(v), 1) for v in det.box)
            if det.score >= MIN_SCORE and min(x2 - x1, y2 - y1) >= MIN_SIDE:
                boxes.append((x1, y1, x2, y2))
        for k, box in enumerate(sorted(boxes)):
            yield Item(f"{prefix}-{k}", source, frame, scale, box), rgb


def crop(rgb: np.ndarray, box: tuple[float, float, float, float], size: int = 160, margin: float = 0.4) -> np.ndarray:
    """The box widened by ``margin`` of its size on every side, square, grey-padded, resized."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (1 + 2 * margin) / 2
    k = size / (2 * half)
    matrix = np.float32([[k, 0, size / 2 - cx * k], [0, k, size / 2 - cy * k]])
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderValue=(128, 128, 128))


def write_sheets(pairs: list[tuple[Item, np.ndarray]], out: Path, cols: int = 4, rows: int = 5) -> None:
    """Contact sheets of 160 px crops, each with its id in the top-left corner."""
    out.mkdir(parents=True, exist_ok=True)
    per = cols * rows
    for s in range(0, len(pairs), per):
        sheet = np.full((rows * 160, cols * 160, 3), 255, np.uint8)
        for n, (item, rgb) in enumerate(pairs[s : s + per]):
            tile = crop(rgb, item.box).copy()
            cv2.rectangle(tile, (0, 0), (159, 14), (0, 0, 0), -1)
            cv2.putText(tile, item.id, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
            r, c = divmod(n, cols)
            sheet[r * 160 : (r + 1) * 160, c * 160 : (c + 1) * 160] = tile
        cv2.imwrite(str(out / f"sheet{s // per:02d}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def labels() -> list[dict]:
    """The labelled items as stored, unsure and not-face ones included."""
    return json.loads(LABELS.read_text())["items"]


def items(scorable_only: bool = True) -> Iterator[tuple[dict, np.ndarray, tuple[float, float, float, float]]]:
    """(label record, RGB image, box) per labelled face; without unsure and not-face items by default."""
    cache: dict[tuple[str, int | None, float], np.ndarray] = {}
    frames: dict[str, list[np.ndarray]] = {}
    for rec in labels():
        if scorable_only and (rec["unsure"] or rec["not_face"]):
            continue
        key = (rec["source"], rec["frame"], rec["scale"])
        if key not in cache:
            if rec["frame"] is None:
                cache[key] = load_image(rec["source"], None, rec["scale"])
            else:
                if rec["source"] not in frames:
                    frames[rec["source"]] = read_clip(CLIPS / rec["source"])
                cache[key] = scaled(frames[rec["source"]][rec["frame"]], rec["scale"])
        yield rec, cache[key], tuple(rec["box"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheets", type=Path, help="folder (outside the repo) for contact sheets")
    parser.add_argument("--json", type=Path, help="write the candidates, unlabelled, to this file")
    parser.add_argument("--check", action="store_true", help="fail unless the labels match the enumeration")
    args = parser.parse_args()
    pairs = list(candidates())
    for item, _ in pairs:
        print(item.id, item.source, item.frame, item.scale, list(item.box))
    print(f"{len(pairs)} candidate faces")
    if args.json:
        records = [
            {"id": i.id, "source": i.source, "frame": i.frame, "scale": i.scale, "box": list(i.box)} for i, _ in pairs
        ]
        args.json.write_text(json.dumps(records, indent=1))
    if args.sheets:
        write_sheets(pairs, args.sheets)
    if args.check:
        found = {i.id: (i.source, i.frame, i.scale, i.box) for i, _ in pairs}
        stored = {r["id"]: (r["source"], r["frame"], r["scale"], tuple(r["box"])) for r in labels()}
        if found != stored:
            raise SystemExit(f"labels differ from the enumeration: {sorted(set(found.items()) ^ set(stored.items()))}")
        print(f"labels match: {len(stored)} items")


if __name__ == "__main__":
    main()
