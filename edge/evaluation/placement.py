"""Camera-sized frames for ``edge eval --face-px``: each labelled crop scaled and placed on a plain background.

The face-size sweep must show the detector what a camera would: a small face somewhere in a whole
frame, not a crop filling the input. The same image lands at the same seeded spot at every size.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.analyzer import Analyzer
from edge.evaluation.labels import SEED, EvalError, Sample
from edge.evaluation.outcomes import Outcome, Region, labelled_face, progress
from edge.media import MediaError, read_image

FRAME_W, FRAME_H = 640, 480  # the default frame; --frame picks another


def parse_frame(text: str) -> tuple[int, int]:
    """``WxH`` for --frame."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise EvalError(f"--frame: expected a frame size like 640x480 or 1280x720, got {text!r}")
    return w, h


def gradient_frame(width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """A smooth grey gradient (darker top-left, lighter bottom-right): a plain background, no edges."""
    x = np.linspace(0.0, 1.0, width)[None, :]
    y = np.linspace(0.0, 1.0, height)[:, None]
    grey = 80.0 + 70.0 * x + 30.0 * y
    return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=2)


def place(background: np.ndarray, crop: np.ndarray, size: int, key: str) -> tuple[np.ndarray, Region]:
    """Downscale the crop to ``size`` px wide and paste it where ``key`` (the file name) seeds.

    The same image lands at the same relative position at every size, so sizes differ only in size.
    """
    h0, w0 = crop.shape[:2]
    frame_h, frame_w = background.shape[:2]
    w, h = size, max(1, round(h0 * size / w0))
    if h > frame_h or w > frame_w:
        raise MediaError(f"{key}: crop too big to fit a {frame_w}x{frame_h} frame at {size} px wide")
    interp = cv2.INTER_AREA if w <= w0 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (w, h), interpolation=interp)
    u, v = np.random.default_rng([SEED, zlib.crc32(key.encode())]).random(2)
    x0, y0 = int(u * (frame_w - w + 1)), int(v * (frame_h - h + 1))
    frame = background.copy()
    frame[y0 : y0 + h, x0 : x0 + w] = small
    return frame, (x0, y0, x0 + w, y0 + h)


def evaluate_sizes(
    analyzer: Analyzer,
    folder: Path,
    samples: list[Sample],
    sizes: list[int],
    label: str,
    err: TextIO,
    frame: tuple[int, int] = (FRAME_W, FRAME_H),
) -> tuple[dict[int, list[Outcome]], list[str]]:
    """Every sample at every size; each image is read once."""
    outcomes: dict[int, list[Outcome]] = {size: [] for size in sizes}
    problems: list[str] = []
    background = gradient_frame(*frame)
    tick = progress(err, label, len(samples) * len(sizes))
    done = 0
    for s in samples:
        try:
            rgb = read_image(folder / s.file)
            placed = [place(background, rgb, size, s.file) for size in sizes]
        except MediaError as exc:
            problems.append(str(exc))
        else:
            for size, (pixels, region) in zip(sizes, placed):
                outcomes[size].append(labelled_face(s, analyzer.analyze(pixels), region))
        done += len(sizes)
        tick(done)
    return outcomes, problems
