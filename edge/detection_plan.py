"""Which parts of a frame the detector sees, at which scale, so no face size falls in a gap.

The SSD detector is reliable only for faces whose size *in its input* lies in a
band (``RELIABLE_INPUT_PX``; measured, see models/README.md "Recall against face
size"). One full-frame pass covers faces from ``band_lo / scale`` upwards; a
camera that shows smaller faces than that also needs the frame enlarged, which
the fixed-size int8 model can only see as overlapping tiles. The plan is a pure
function of the frame size and the smallest face wanted, computed once per
resolution: cost is known up front (``passes``) and logged at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Face sizes (shorter box side, network pixels) where a full-frame pass finds >= 90% of real faces at
# the start threshold with the face check (models/README.md "Recall against face size", on real
# faces: 89-100% from 12 to 300 px); above the band scores drop.
RELIABLE_INPUT_PX = (16.0, 224.0)
# What the tiles enlarge the smallest face wanted to. A face of 16-24 network px is found with its
# head, shoulders and scene around it; a tile border cuts that context off, and a tight crop or an
# enlarged tiny face is only found from about 36 px (models/README.md, the UTKFace crop table).
TILE_INPUT_PX = 36.0
# Detections are accepted from a pass a little beyond its reliable band, so a face
# at a hand-over size is seen by both passes and merged, never by neither.
_HANDOVER_MARGIN = 1.3


@dataclass(frozen=True)
class DetectionPass:
    """Run the model on frame region (x, y, w, h) scaled by ``scale`` (network px per frame px);
    keep boxes whose shorter side in frame pixels lies in [min_px, max_px) and whose centre lies
    in ``core`` (x1, y1, x2, y2 in frame pixels).

    The cores of the tiles partition the frame along the middles of their overlaps. A face no
    larger than the overlap whose centre lies in a tile's core lies wholly inside that tile, so
    each face is kept from the one tile that sees it whole, and the pieces of it that other
    tiles see (cut by their borders, centres outside their cores) are dropped.
    """

    x: int
    y: int
    w: int
    h: int
    scale: float
    min_px: float
    max_px: float
    core: tuple[float, float, float, float]


@dataclass(frozen=True)
class DetectionPlan:
    frame_w: int
    frame_h: int
    input_size: int
    min_face_px: float  # the smallest face the plan reaches (0: whatever one full pass finds)
    passes: tuple[DetectionPass, ...]

    def passes_per_frame(self, tile_interval: int = 1) -> int:
        """Model runs per video frame when the tiles take turns every ``tile_interval`` frames."""
        return 1 + math.ceil((len(self.passes) - 1) / tile_interval)

    def describe(self) -> str:
        tiles = len(self.passes) - 1
        if not tiles:
            return f"{self.frame_w}x{self.frame_h}: one full-frame pass"
        tile = self.passes[1]
        return (
            f"{self.frame_w}x{self.frame_h}: a full-frame pass for faces >= {tile.max_px / _HANDOVER_MARGIN:.0f} px "
            f"and {tiles} tiles of {tile.w}x{tile.h} px enlarged {tile.scale:.2f}x for faces down to "
            f"{self.min_face_px:.0f} px"
        )


def _spans(length: int, tile: int, overlap: float) -> list[tuple[int, float, float]]:
    """Tiles along one axis as (origin, core start, core end): first at 0, last flush with the end,
    evenly spaced, overlapping by at least ``overlap`` so any face up to that size lies wholly
    inside one tile; cores meet in the middle of each overlap."""
    if tile >= length:
        return [(0, 0.0, float(length))]
    stride_max = max(1.0, tile - overlap)
    n = 1 + math.ceil((length - tile) / stride_max)
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    cuts = [0.0] + [(nxt + cur + tile) / 2 for cur, nxt in zip(starts, starts[1:])] + [float(length)]
    return [(start, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


def plan_detection(
    frame_w: int,
    frame_h: int,
    full_input: int,
    tile_input: int,
    min_face_px: float,
    band: tuple[float, float] = RELIABLE_INPUT_PX,
    tile_px: float = TILE_INPUT_PX,
) -> DetectionPlan:
    """The passes that find every face from ``min_face_px`` up (0: one full-frame pass only).

    The full-frame pass (``full_input`` model) keeps faces from where its reliable band starts;
    if that is above ``min_face_px``, tiles of the ``tile_input`` model enlarged so that a
    ``min_face_px`` face measures ``tile_px`` cover the smaller faces.
    """
    lo, hi = band
    full_scale = full_input / max(frame_w, frame_h)
    reach = lo / full_scale  # smallest face the full-frame pass finds reliably (frame px)
    whole = (0.0, 0.0, float(frame_w), float(frame_h))
    if min_face_px <= 0 or min_face_px >= reach:
        only = DetectionPass(0, 0, frame_w, frame_h, full_scale, 0.0, math.inf, whole)
        return DetectionPlan(frame_w, frame_h, full_input, min_face_px, (only,))
    handover = reach * _HANDOVER_MARGIN
    full = DetectionPass(0, 0, frame_w, frame_h, full_scale, reach / _HANDOVER_MARGIN, math.inf, whole)
    tile_scale = tile_px / min_face_px
    if handover * tile_scale > hi:  # the band is too narrow for one enlargement: bridge it from below
        tile_scale = hi / handover
    side = math.floor(tile_input / tile_scale)
    tw, th = min(side, frame_w), min(side, frame_h)
    overlap = handover * 1.05  # a face at the hand-over size, plus its box's slack
    reached = tile_px / tile_scale
    tiles = tuple(
        DetectionPass(x, y, tw, th, tile_scale, reached / _HANDOVER_MARGIN, handover, (cx1, cy1, cx2, cy2))
        for y, cy1, cy2 in _spans(frame_h, th, overlap)
        for x, cx1, cx2 in _spans(frame_w, tw, overlap)
    )
    return DetectionPlan(frame_w, frame_h, full_input, reached, (full, *tiles))
