"""Recall against face size on real faces: face-api's demo photos and the development clips, each
face rescaled through a range of sizes, with the detector's best score for it at each size.

    .venv/bin/python tests/scale_recall.py --photos DIR --clips DIR [--every 4]

Reference faces, found without the face check so that runs with and without it score the same faces:
in a photo, the detector's boxes at the photo's own scale (score >= 0.5); in a clip frame, boxes the
detector finds at two or more of four scales (0.7x-2x) of the frame, so a face that one scale misses
is still a reference. Each reference face is then scaled so that its shorter
side measures S px and centred in a grey frame; rows are S. Upscaling beyond 1.5x its own size is
skipped (it tests the resampler, not the detector). Two settings run per S:

- ``512 input``: the frame is the network input (512x512), so S is the size the network sees; this
  is what the score threshold meets in any pass.
- ``plan 640x480``: the daemon's default detection plan at 640x480 (full-frame pass at 0.8x and
  tiles for faces down to 20 px), S in frame pixels.

Boxes that match no reference face are not counted here: `edge eval --clips` counts them on whole
clips (one clip shows the back of a head, which the detector scores as a face in the weak bands).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.analyzer import Analyzer, AnalyzerConfig
from edge.boxes import iou_matrix
from edge.media import frames, read_image

SIZES = (12, 14, 16, 18, 21, 24, 28, 32, 37, 42, 49, 56, 64, 74, 85, 98, 112, 129, 149, 171, 196, 226, 260, 300)
THRESHOLDS = (0.5, 0.35, 0.25)
MATCH_IOU = 0.4
MAX_UPSCALE = 1.5


@dataclass(frozen=True)
class Reference:
    source: str
    image: np.ndarray
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image


def placed(image: np.ndarray, scale: float, centre: tuple[float, float], wh: tuple[int, int]) -> np.ndarray:
    """``image`` scaled by ``scale`` with ``centre`` (image pixels) at the middle of a grey frame."""
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=interpolation)
    w, h = wh
    frame = np.full((h, w, 3), 128, np.uint8)
    ox, oy = round(w / 2 - centre[0] * scale), round(h / 2 - centre[1] * scale)
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + small.shape[1]), min(h, oy + small.shape[0])
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return frame


def boxes_in_image(analyzer: Analyzer, frame: np.ndarray, scale: float, origin: tuple[float, float]) -> np.ndarray:
    """Detections [K, 5] (x1, y1, x2, y2 in the source image, score) of a placed frame."""
    found = analyzer.detect(frame)
    if not found:
        return np.zeros((0, 5))
    ox, oy = origin
    return np.array(
        [
            (
                (d.box[0] - ox) / scale,
                (d.box[1] - oy) / scale,
                (d.box[2] - ox) / scale,
                (d.box[3] - oy) / scale,
                d.score,
            )
            for d in found
        ]
    )


def best_score(found: np.ndarray, box: tuple[float, float, float, float]) -> float:
    if not len(found):
        return 0.0
    overlap = iou_matrix(np.array([box]), found[:, :4])[0]
    return float(found[overlap >= MATCH_IOU, 4].max(initial=0.0))


def references(analyzer: Analyzer, photos: Path, clips: Path, every: int) -> Iterator[Reference]:
    for path in sorted(photos.glob("*.jpg")):
        rgb = read_image(path)
        for d in analyzer.detect(rgb):
            if d.score >= 0.5:
                yield Reference(path.stem, rgb, d.box)
    for path in sorted(clips.glob("*.avi")):
        for i, f in enumerate(frames(path)):
            if i % every:
                continue
            h, w = f.rgb.shape[:2]
            seen: list[list[np.ndarray]] = []
            for k in (0.7, 1.0, 1.4, 2.0):
                origin = (640 - w / 2 * k, 360 - h / 2 * k)
                found = boxes_in_image(analyzer, placed(f.rgb, k, (w / 2, h / 2), (1280, 720)), k, origin)
                for b in found[found[:, 4] >= 0.5] if len(found) else []:
                    for cluster in seen:
                        if iou_matrix(cluster[0][None, :4], b[None, :4])[0, 0] >= MATCH_IOU:
                            cluster.append(b)
                            break
                    else:
                        seen.append([b])
            for cluster in seen:
                if len(cluster) >= 2:
                    box = np.median(np.array(cluster)[:, :4], axis=0)
                    yield Reference(
                        f"{path.stem}#{i}", f.rgb, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
                    )


def sweep(analyzer: Analyzer, refs: list[Reference], wh: tuple[int, int]) -> dict[int, list[float]]:
    """Per S: the best score of each reference face scaled to S px (frame pixels) in a ``wh`` frame."""
    out: dict[int, list[float]] = {s: [] for s in SIZES}
    for r in refs:
        x1, y1, x2, y2 = r.box
        side = min(x2 - x1, y2 - y1)
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        for s in SIZES:
            k = s / side
            if k > MAX_UPSCALE:
                continue
            origin = (wh[0] / 2 - centre[0] * k, wh[1] / 2 - centre[1] * k)
            found = boxes_in_image(analyzer, placed(r.image, k, centre, wh), k, origin)
            out[s].append(best_score(found, r.box))
    return out


def table(title: str, scores: dict[int, list[float]]) -> str:
    lines = [title, "S px    n  " + "  ".join(f">={t:<4}" for t in THRESHOLDS) + "  median score"]
    for s, values in scores.items():
        if not values:
            continue
        v = np.array(values)
        cells = "  ".join(f"{100 * np.mean(v >= t):5.0f}%" for t in THRESHOLDS)
        lines.append(f"{s:4} {len(v):4}  {cells}  {np.median(v):.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="face-api's demo folder (sample1-6.jpg)")
    parser.add_argument("--clips", type=Path, required=True, help="the development clips (*.avi)")
    parser.add_argument("--every", type=int, default=4, help="every Nth clip frame (default 4)")
    parser.add_argument(
        "--without-face-check", action="store_true", help="the detector's scores alone (edge.face_check off)"
    )
    args = parser.parse_args()

    check = not args.without_face_check
    finder = Analyzer(AnalyzerConfig(score_threshold=0.5, face_check=False))
    refs = list(references(finder, args.photos, args.clips, args.every))
    weak = Analyzer(AnalyzerConfig(score_threshold=min(THRESHOLDS), face_check=check))
    print(f"{len(refs)} reference faces ({sum('#' not in r.source for r in refs)} in photos); face check {check}")
    print(table("one pass, 512 input (S = face px in the network input)", sweep(weak, refs, (512, 512))))
    plan = Analyzer(AnalyzerConfig(score_threshold=min(THRESHOLDS), min_face_px=20, face_check=check))
    print(table("daemon plan at 640x480, min_face_px 20 (S = face px in the frame)", sweep(plan, refs, (640, 480))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
