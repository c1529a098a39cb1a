"""Synthetic frames with real faces at known places, for benchmarks, demos and tests.

The face is NASA's public-domain astronaut portrait shipped in ``edge/data``;
each placement varies scale, mirroring and colour, and records where the face
is, so the frames carry ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

_PORTRAIT = Path(__file__).resolve().parent / "data" / "astronaut.jpg"
# Head-and-shoulders sprite from the portrait, and the face box inside it (sprite pixels),
# measured once with the shipped detector on the full photo.
_SPRITE = (0, 360, 60, 390)  # y1, y2, x1, x2
_FACE_IN_SPRITE = (180.6 - 60, 70.7, 265.0 - 60, 176.0)  # x1, y1, x2, y2


@lru_cache(maxsize=1)
def portrait() -> np.ndarray:
    """The astronaut photo, RGB uint8."""
    bgr = cv2.imread(str(_PORTRAIT), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{_PORTRAIT} is missing or unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Sprite:
    pixels: np.ndarray  # RGB uint8
    face: tuple[float, float, float, float]  # face box within pixels


def sprite(face_px: float, mirror: bool = False, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Sprite:
    """The head-and-shoulders sprite scaled so the face box is ``face_px`` wide."""
    y1, y2, x1, x2 = _SPRITE
    src = portrait()[y1:y2, x1:x2]
    fx1, fy1, fx2, fy2 = _FACE_IN_SPRITE
    scale = face_px / (fx2 - fx1)
    h, w = src.shape[:2]
    out = cv2.resize(
        src,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    face = (fx1 * scale, fy1 * scale, fx2 * scale, fy2 * scale)
    if mirror:
        out = np.ascontiguousarray(out[:, ::-1])
        ow = out.shape[1]
        face = (ow - face[2], face[1], ow - face[0], face[3])
    out = np.clip(out.astype(np.float32) * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)
    return Sprite(out, face)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A plain, slightly textured backdrop (a wall and a floor), deterministic per seed."""
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.uint8)
    wall = np.array([150, 160, 170]) + rng.integers(-20, 20, 3)
    floor = np.array([95, 85, 75]) + rng.integers(-15, 15, 3)
    horizon = int(height * 0.72)
    frame[:horizon] = wall
    frame[horizon:] = floor
    noise = rng.normal(0, 4, (height, width, 1))
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, s: Sprite, x: float, y: float) -> tuple[float, float, float, float] | None:
    """Paste sprite ``s`` with its top-left at (x, y); returns the face box in frame pixels
    if the face is fully inside the frame, else None (clipped faces are not ground truth)."""
    h, w = s.pixels.shape[:2]
    H, W = frame.shape[:2]
    xi, yi = int(round(x)), int(round(y))
    sx1, sy1 = max(0, -xi), max(0, -yi)
    dx1, dy1 = max(0, xi), max(0, yi)
    dx2, dy2 = min(W, xi + w), min(H, yi + h)
    if dx2 <= dx1 or dy2 <= dy1:
        return None
    frame[dy1:dy2, dx1:dx2] = s.pixels[sy1 : sy1 + (dy2 - dy1), sx1 : sx1 + (dx2 - dx1)]
    fx1, fy1, fx2, fy2 = s.face
    box = (xi + fx1, yi + fy1, xi + fx2, yi + fy2)
    if box[0] < 0 or box[1] < 0 or box[2] > W or box[3] > H:
        return None
    return box


def crowd_frame(
    n_faces: int, width: int = 640, height: int = 480, face_px: float = 60.0, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """One frame with ``n_faces`` non-overlapping faces on a grid; returns (frame, face boxes)."""
    rng = np.random.default_rng(seed)
    frame = background(width, height, seed)
    boxes: list[tuple[float, float, float, float]] = []
    if n_faces == 0:
        return frame, boxes
    cols = int(np.ceil(np.sqrt(n_faces * width / height)))
    rows = int(np.ceil(n_faces / cols))
    cell_w, cell_h = width / cols, height / rows
    for i in range(n_faces):
        r, c = divmod(i, cols)
        # Keep each head-and-shoulders sprite inside its cell so no face covers another.
        y1, y2, x1, x2 = _SPRITE
        face_w = _FACE_IN_SPRITE[2] - _FACE_IN_SPRITE[0]
        fit = min(cell_w / ((x2 - x1) / face_w), cell_h / ((y2 - y1) / face_w))
        size = min(face_px, fit) * rng.uniform(0.9, 1.0)
        s = sprite(size, mirror=bool(rng.integers(0, 2)), tint=tuple(rng.uniform(0.85, 1.15, 3)))
        fx1, fy1, fx2, fy2 = s.face
        x = c * cell_w + cell_w / 2 - (fx1 + fx2) / 2
        y = r * cell_h + cell_h / 2 - (fy1 + fy2) / 2
        box = paste(frame, s, x, y)
        if box is not None:
            boxes.append(box)
    return frame, boxes
