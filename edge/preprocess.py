"""Image preparation shared by the device runtime and the converter.

The converter calibrates and verifies the models through these same functions,
so what the device feeds a model is exactly what the model was checked on.

Every resampling here gives the same bytes on x86-64 and on aarch64, so what is
measured on a workstation is what a Raspberry Pi computes: OpenCV's default
bilinear and area filters and ``warpAffine`` round differently on the two
(their SIMD paths differ), and one pixel off by one can move a detector box by a
quantisation step and flip a borderline label (README "Raspberry Pi").
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
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
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[:nh, :nw] = resize(frame_rgb, (nw, nh))
    return Letterbox(out, scale)


# Added before rounding an area average computed in float64: exact ties (x.5, common in
# averages) round up on every machine, while float64's error (about 1e-13 here) stays far
# below this margin and the margin far below the distance of any non-tie average from x.5.
_TIE_MARGIN = 1e-9


def resize(image: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    """``cv2.resize`` to ``dsize`` (width, height), identical on x86-64 and aarch64.

    Enlarging uses ``INTER_LINEAR_EXACT`` (OpenCV's bit-exact bilinear); shrinking averages
    areas as ``INTER_AREA`` does, but in float64 with explicit rounding, because the uint8
    and float32 area paths round differently on the two architectures.
    """
    h, w = image.shape[:2]
    if dsize[0] >= w and dsize[1] >= h:
        return cv2.resize(image, dsize, interpolation=cv2.INTER_LINEAR_EXACT)
    # Shrunk one way and enlarged the other: never asked for by the pipeline (it keeps the aspect).
    averaged = _area_shrink(image, dsize) if dsize[0] < w and dsize[1] < h else _area_whole(image, dsize)
    averaged += 0.5 + _TIE_MARGIN  # in place: a fresh temporary costs more than the filter
    np.floor(averaged, out=averaged)
    return averaged.astype(np.uint8)


# Rows of the source widened to float64 at a time. A whole 1920x1280 photo in float64 is 59 MB and
# even narrowed to the detector's width 16 MB, the largest blocks of ``edge analyze``'s memory; a
# band of 64 rows is 3 MB, and nothing of the photo's full height is held in float64.
_BAND_ROWS = 64
_WHOLE_BYTES = 4 << 20  # images whose float64 copy is at most this are shrunk in one pass
# Images whose float64 copy is larger than this share their bands between two threads: photos and
# HD frames, where it saves 4-6 ms. A 640x480 frame (7 MB) stays on one: the second output and band
# cost the daemon 8 MB of RSS there for no frame rate measured (18.9 against 19.2 fps, 5 faces).
_SHARED_BYTES = 16 << 20


def _area_shrink(image: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    """``INTER_AREA`` in float64, one band of rows at a time (a large image: on two threads).

    OpenCV's area filter is separable: each output pixel is a weighted sum over source columns,
    then over source rows. Each band is averaged across its columns by OpenCV itself, then added
    into the output rows it covers with OpenCV's own row weights (``_row_weights``), so the sums
    differ from one 2-D pass only by float64 rounding (about 1e-13), far inside ``_TIE_MARGIN``:
    the same bytes (tests/test_preprocess.py checks them against the whole-image pass).
    The filter is the costliest step of a photo's analysis after the detector (a 1920x1400 photo
    is 8 million samples) and runs while the models wait, so for a large image a second thread
    takes every other band into its own output, and the two are added at the end.
    """
    h, w = image.shape[:2]
    nw, nh = dsize
    if h % nh == 0 or w % nw == 0 or image.size * 8 <= _WHOLE_BYTES:
        # A whole ratio on either axis takes OpenCV's integer-ratio paths, whose weights are rounded
        # differently from its area table (1/36 in one float32, not 1/6 twice): one pass then. So
        # does a small image (a face crop), where bands would only cost time.
        return _area_whole(image, dsize)
    bands = _bands(h, nh)
    width = nw * int(np.prod(image.shape[2:], dtype=np.int64))
    if image.size * 8 <= _SHARED_BYTES:
        out = np.zeros((nh, width), dtype=np.float64)
        _add_bands(image, nw, bands, out)
    else:
        out, other = np.zeros((nh, width), dtype=np.float64), np.zeros((nh, width), dtype=np.float64)
        helper = threading.Thread(target=_add_bands, args=(image, nw, bands[1::2], other), name="area-shrink")
        helper.start()
        try:
            _add_bands(image, nw, bands[0::2], out)
        finally:
            helper.join()
        out += other
    return out.reshape(nh, nw, *image.shape[2:])


_Band = tuple[int, int, int, np.ndarray]  # source top row, row count, first output row, weights


@functools.lru_cache(maxsize=16)
def _bands(h: int, nh: int) -> tuple[_Band, ...]:
    """The bands of an ``h`` -> ``nh`` row shrink with their weights, computed once per size."""
    bands = []
    for top in range(0, h, _BAND_ROWS):
        count = min(_BAND_ROWS, h - top)
        first, weights = _row_weights(h, nh, top, count)
        weights.flags.writeable = False  # shared by every call of this size
        bands.append((top, count, first, weights))
    return tuple(bands)


def _add_bands(image: np.ndarray, nw: int, bands: Sequence[_Band], out: np.ndarray) -> None:
    """Add the area averages of ``bands`` of ``image`` (their columns shrunk to ``nw``) into ``out``."""
    if not bands:
        return
    band = np.empty((max(b[1] for b in bands), *image.shape[1:]), dtype=np.float64)
    for top, count, first, weights in bands:
        widened = band[:count]
        widened[...] = image[top : top + count]
        narrowed = cv2.resize(widened, (nw, count), interpolation=cv2.INTER_AREA).reshape(count, -1)
        target = out[first : first + len(weights)]
        step = max(16, _ONE_THREAD_PRODUCT // weights.size)
        for left in range(0, narrowed.shape[1], step):
            target[:, left : left + step] += weights @ narrowed[:, left : left + step]


# numpy's OpenBLAS runs a matrix product of more than about 260,000 multiply-adds on several
# threads, which keep spinning after it returns; the detector's threads (XNNPACK) then share the
# cores with them, and its next run took 23 ms instead of 12 here. Products below the threshold
# run on the calling thread.
_ONE_THREAD_PRODUCT = 200_000


def _row_weights(h: int, nh: int, top: int, count: int) -> tuple[int, np.ndarray]:
    """OpenCV's weights of source rows ``top .. top+count-1`` in an ``h`` -> ``nh`` area shrink:
    the first output row they reach and a [rows, count] matrix. Computed as OpenCV computes its
    area table (``computeResizeAreaTab``: cell edges in float64, each weight rounded to float32),
    so they are its own coefficients."""
    scale = 1.0 / (nh / h)  # OpenCV's scale_y, which need not equal h / nh to the last bit
    # Only output rows whose cells can meet these source rows (one row of slack either side).
    lo_row, hi_row = max(0, int(top / scale) - 1), min(nh, int((top + count) / scale) + 2)
    rows = np.arange(lo_row, hi_row, dtype=np.float64)
    start = rows * scale
    end = start + scale
    cell = np.minimum(scale, h - start)
    first_whole = np.minimum(np.ceil(start), np.minimum(np.floor(end), h - 1))
    last_whole = np.minimum(np.floor(end), h - 1)
    src = np.arange(top, top + count, dtype=np.float64)[None, :]
    lo, hi, cell_ = first_whole[:, None], last_whole[:, None], cell[:, None]
    inside = ((src >= lo) & (src < hi)) * (1.0 / cell_).astype(np.float32)
    head = np.where(
        (src == lo - 1) & (lo - start[:, None] > 1e-3), ((lo - start[:, None]) / cell_).astype(np.float32), 0.0
    )
    tail_part = np.minimum(np.minimum(end[:, None] - hi, 1.0), cell_) / cell_
    tail = np.where((src == hi) & (end[:, None] - hi > 1e-3), tail_part.astype(np.float32), 0.0)
    weights = (inside + head + tail).astype(np.float64)
    reached = np.flatnonzero(weights.any(axis=1))
    return lo_row + int(reached[0]), weights[reached[0] : reached[-1] + 1]


def _area_whole(image: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    wide = np.empty(image.shape, dtype=np.float64)
    wide[...] = image
    return np.asarray(cv2.resize(wide, dsize, interpolation=cv2.INTER_AREA), dtype=np.float64)


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


def _crop_box(box_xyxy: np.ndarray | tuple[float, ...], spec: CropSpec) -> tuple[float, float, float, float]:
    """The frame region a crop takes for a detector box (x1, y1, x2, y2): margin, squaring, shift."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    bw, bh = (x2 - x1) * (1 + 2 * spec.margin), (y2 - y1) * (1 + 2 * spec.margin)
    if spec.square == "expand":
        bw = bh = max(bw, bh)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + spec.shift_y * bh
    return cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2


def crop_square(box_xyxy: np.ndarray | tuple[float, ...], spec: CropSpec) -> tuple[float, float, float]:
    """(left, top, side) in frame pixels of the square that ``crop_face`` resamples to ``spec.size``:
    a point (u, v) of the crop lies at (left + u * side / size, top + v * side / size) in the frame."""
    x1, y1, x2, y2 = _crop_box(box_xyxy, spec)
    side = max(x2 - x1, y2 - y1)
    return (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side


def upright_patch(
    frame_rgb: np.ndarray, box_xyxy: np.ndarray | tuple[float, ...], roll_deg: float, reach: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The frame around a box, rotated about the box's centre by ``roll_deg`` (counter-clockwise on
    screen for a positive angle, as ``edge.face_mesh.roll_degrees`` measures it) so a tilted face
    stands upright; a square ``reach`` times the box's longer side, black outside the frame as in
    ``crop_face``. Returns the patch and its top-left corner (whole frame pixels): a box minus that
    corner lies on the same face in the patch. At 0 degrees the patch is the frame's pixels."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(int(math.ceil(reach * max(x2 - x1, y2 - y1))), 1)
    left, top = int(math.floor(cx - side / 2)), int(math.floor(cy - side / 2))
    a = math.radians(roll_deg)
    cos, sin = math.cos(a), math.sin(a)
    du, dv = np.meshgrid(np.arange(left, left + side, dtype=np.float64) - cx, np.arange(top, top + side) - cy)
    return _remap(frame_rgb, cx + cos * du - sin * dv, cy + sin * du + cos * dv), (left, top)


def crop_face(frame_rgb: np.ndarray, box_xyxy: np.ndarray | tuple[float, ...], spec: CropSpec) -> np.ndarray:
    """Cut one face out of a frame as a ``spec.size`` square uint8 RGB image.

    Areas outside the frame are black, as in face-api.js.
    """
    x1, y1, x2, y2 = _crop_box(box_xyxy, spec)
    # Place the crop box into a square canvas (centred), then resample once.
    sx1, sy1, side = crop_square(box_xyxy, spec)
    scale = spec.size / max(side, 1e-6)
    if scale < 1.0:
        # A shrink averages areas: cut the square (black outside the frame), then resize it.
        return _crop_area(frame_rgb, (sx1, sy1, side), (x1, y1, x2, y2), spec.size)
    # An enlargement samples bilinearly at fractional positions; pixels outside the box
    # (pad mode) are masked to black.
    out = _sample_bilinear(frame_rgb, sx1, sy1, 1.0 / scale, spec.size)
    return _mask_outside(out, (x1, y1, x2, y2), (sx1, sy1), scale)


# Views of one face for the attribute models, whose outputs are averaged over them. A gender
# estimate near 0.5 can flip when the box moves by 1-2% of its size, which is how much two
# detector runs (int8 against float, or one video frame against the next) differ; the mean over
# boxes shifted and scaled by VIEW_STEP varies smoothly with the box, so such jitter moves it far
# less (models/README.md "Box voting and views": int8 against float gender agreement 95.9% ->
# 97.4% on utkface-dev, and no group losing more than 3 points).
VIEW_STEP = 0.04
VIEW_COUNTS = (1, 5, 7)  # the box; + shifted left, right, up, down; + scaled up and down
DEFAULT_VIEWS = 7


# (shift x in box widths, shift y in box heights, size factor) of each view, in order.
_VIEW_OFFSETS = np.array(
    [
        (0.0, 0.0, 1.0),
        (-VIEW_STEP, 0.0, 1.0),
        (VIEW_STEP, 0.0, 1.0),
        (0.0, -VIEW_STEP, 1.0),
        (0.0, VIEW_STEP, 1.0),
        (0.0, 0.0, 1.0 + VIEW_STEP),
        (0.0, 0.0, 1.0 - VIEW_STEP),
    ]
)


def check_views(views: int) -> int:
    """``views`` if it is one of ``VIEW_COUNTS``; a clear error otherwise."""
    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}")
    return views


def face_views(box_xyxy: np.ndarray | tuple[float, ...], views: int) -> np.ndarray:
    """The ``views`` boxes [views, 4] (x1, y1, x2, y2) averaged for one detected box; the first is the box."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    w, h = x2 - x1, y2 - y1
    dx, dy, size = _VIEW_OFFSETS[: check_views(views)].T
    cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
    half_w, half_h = w * size / 2, h * size / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


_SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: positions in 1/32 pixel


def _sample_bilinear(image: np.ndarray, x0: float, y0: float, step: float, size: int) -> np.ndarray:
    """A ``size`` square sampled at ``x0 + i*step``, ``y0 + j*step`` (black outside the image).

    What ``warpAffine`` does for a scale-and-shift, but with the sample positions computed
    here in float64 and handed to ``cv2.remap`` in fixed point, whose integer interpolation
    is the same on every architecture (``warpAffine``'s own position arithmetic is not).
    """
    offsets = np.arange(size, dtype=np.float64) * step
    gx, gy = np.meshgrid(x0 + offsets, y0 + offsets)
    return _remap(image, gx, gy)


def _remap(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The image sampled bilinearly at float64 positions (black outside it), in ``cv2.remap``'s
    fixed point: the same bytes on every architecture."""
    one = 1 << _SUBPIXEL_BITS
    fx = np.rint(xs * one).astype(np.int64)
    fy = np.rint(ys * one).astype(np.int64)
    whole = np.stack([fx >> _SUBPIXEL_BITS, fy >> _SUBPIXEL_BITS], axis=-1).astype(np.int16)
    fraction = ((fy & (one - 1)) * one + (fx & (one - 1))).astype(np.uint16)
    return cv2.remap(image, whole, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


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
    out = resize(canvas, (size, size))
    return _mask_outside(out, box, (float(ix1), float(iy1)), size / iside)
