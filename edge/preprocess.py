"""Image preparation shared by the device runtime and the converter.

The converter calibrates and verifies the models through these same functions,
so what the device feeds a model is exactly what the model was checked on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """A frame scaled into the top-left of a square network input (face-api.js layout)."""

    pixels: np.ndarray  # uint8 [size, size, 3] RGB
    scale: float  # network pixels per frame pixel


def letterbox(frame_rgb: np.ndarray, size: int) -> Letterbox:
    """Scale the longer side to ``size`` and pad bottom/right with black.

    face-api.js pads the short side of the frame with zeros before resizing;
    keeping that layout keeps anchor statistics the network was trained with.
    """
    h, w = frame_rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[:nh, :nw] = cv2.resize(frame_rgb, (nw, nh), interpolation=interp)
    return Letterbox(out, scale)


@dataclass(frozen=True)
class CropSpec:
    """How an attribute model wants its face crop (recorded in the manifest)."""

    size: int
    margin: float = 0.0  # fraction of the box size added on each side
    square: str = "pad"  # "pad": black bars around the box (face-api.js); "expand": take more frame
    shift_y: float = 0.0  # move the crop centre down by this fraction of its size

    @classmethod
    def from_manifest(cls, spec: dict) -> CropSpec:
        return cls(
            size=int(spec["size"]),
            margin=float(spec.get("margin", 0.0)),
            square=str(spec.get("square", "pad")),
            shift_y=float(spec.get("shift_y", 0.0)),
        )

    def as_manifest(self) -> dict:
        return {"size": self.size, "margin": self.margin, "square": self.square, "shift_y": self.shift_y}


def crop_face(frame_rgb: np.ndarray, box_xyxy: np.ndarray | tuple[float, ...], spec: CropSpec) -> np.ndarray:
    """Cut one face out of a frame as a ``spec.size`` square uint8 RGB image.

    Areas outside the frame are black, as in face-api.js.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    bw, bh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = bw * (1 + 2 * spec.margin), bh * (1 + 2 * spec.margin)
    if spec.square == "expand":
        bw = bh = max(bw, bh)
    cy += spec.shift_y * bh
    x1, x2, y1, y2 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
    side = max(bw, bh)
    # Place the crop box into a square canvas (centred), then resample once.
    sx1, sy1 = cx - side / 2, cy - side / 2
    scale = spec.size / max(side, 1e-6)
    # Affine map from frame to output; pixels outside the box (pad mode) are masked to black.
    m = np.array([[scale, 0, -sx1 * scale], [0, scale, -sy1 * scale]], dtype=np.float64)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        # warpAffine has no area filter; pre-shrink the region of interest instead.
        return _crop_area(frame_rgb, (sx1, sy1, side), (x1, y1, x2, y2), spec.size)
    out = cv2.warpAffine(
        frame_rgb,
        m,
        (spec.size, spec.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return _mask_outside(out, (x1, y1, x2, y2), (sx1, sy1), scale)


def _mask_outside(
    out: np.ndarray, box: tuple[float, float, float, float], origin: tuple[float, float], scale: float
) -> np.ndarray:
    x1, y1, x2, y2 = box
    ox, oy = origin
    size = out.shape[0]
    left, t = int(round((x1 - ox) * scale)), int(round((y1 - oy) * scale))
    r, b = int(round((x2 - ox) * scale)), int(round((y2 - oy) * scale))
    if left > 0:
        out[:, :left] = 0
    if t > 0:
        out[:t, :] = 0
    if r < size:
        out[:, max(r, 0) :] = 0
    if b < size:
        out[max(b, 0) :, :] = 0
    return out


def _crop_area(
    frame_rgb: np.ndarray, square: tuple[float, float, float], box: tuple[float, float, float, float], size: int
) -> np.ndarray:
    sx1, sy1, side = square
    h, w = frame_rgb.shape[:2]
    ix1, iy1 = int(np.floor(sx1)), int(np.floor(sy1))
    iside = int(np.ceil(side))
    canvas = np.zeros((iside, iside, 3), dtype=np.uint8)
    fx1, fy1 = max(ix1, 0), max(iy1, 0)
    fx2, fy2 = min(ix1 + iside, w), min(iy1 + iside, h)
    if fx2 > fx1 and fy2 > fy1:
        canvas[fy1 - iy1 : fy2 - iy1, fx1 - ix1 : fx2 - ix1] = frame_rgb[fy1:fy2, fx1:fx2]
    out = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return _mask_outside(out, box, (float(ix1), float(iy1)), size / iside)
