"""The real development clips, and the variants measurements run them in: people nearer or further
(``rescaled``), mirrored, reversed, at half the frame rate, side by side or one after the other.

Synthetic scenes prove the plumbing; these five clips are real but few, so a figure measured on
them alone would tune to them. Measuring the same counter on many variants of them says whether it
holds when people are smaller, larger, walk the other way or come at a lower frame rate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "real-footage"


def clip_frames(name: str) -> list[np.ndarray]:
    """Every frame of a development clip, RGB."""
    cap, out = cv2.VideoCapture(str(CLIPS / f"{name}.avi")), list[np.ndarray]()
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def clip_fps(name: str) -> float:
    cap = cv2.VideoCapture(str(CLIPS / f"{name}.avi"))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()


def rescaled(rgb: np.ndarray, scale: float, anchor: tuple[float, float]) -> np.ndarray:
    """The people at ``scale`` times their size, the frame's own size kept: shrunk onto a grey
    canvas (further away), or a window enlarged (nearer; ``anchor``: where the window sits, as a
    fraction of the free room, x then y)."""
    h, w = rgb.shape[:2]
    if scale == 1.0:
        return rgb
    if scale < 1.0:
        canvas = np.full_like(rgb, 128)
        nw, nh = round(w * scale), round(h * scale)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        return canvas
    cw, ch = round(w / scale), round(h / scale)
    x0, y0 = round((w - cw) * anchor[0]), round((h - ch) * anchor[1])
    return cv2.resize(rgb[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)


Variant = Callable[[list[np.ndarray]], list[np.ndarray]]


def scaled(scale: float, anchor: tuple[float, float] = (0.5, 0.5)) -> Variant:
    return lambda frames: [rescaled(f, scale, anchor) for f in frames]


def mirrored(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(f[:, ::-1]) for f in frames]


def reversed_in_time(frames: list[np.ndarray]) -> list[np.ndarray]:
    return frames[::-1]


def half_rate(frames: list[np.ndarray]) -> list[np.ndarray]:
    return frames[::2]


def side_by_side(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    """Two clips in one frame, left and right, for as long as the longer runs (the shorter one's
    last frame emptied to grey once it ends, so nobody stands frozen)."""
    h, w = a[0].shape[:2]
    grey = np.full((h, w, 3), 128, np.uint8)
    b = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in b]
    n = max(len(a), len(b))
    return [np.hstack([a[i] if i < len(a) else grey, b[i] if i < len(b) else grey]) for i in range(n)]


def one_after_another(a: list[np.ndarray], b: list[np.ndarray], gap: int) -> list[np.ndarray]:
    """Clip ``a``, ``gap`` empty grey frames, then clip ``b`` (at ``a``'s size)."""
    h, w = a[0].shape[:2]
    grey = np.full((h, w, 3), 128, np.uint8)
    return a + [grey] * gap + [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in b]
