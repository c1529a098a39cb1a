"""Where a person is against a counting line and zones: the geometry people counting needs.

A line is two points in frame coordinates normalised to 0..1 (so a config survives a change of
resolution), with the side people come *in* to named ``left`` or ``right`` of the direction from its
first point to its second (as seen in the image, y down). A track crosses when the step between two
of its positions (the foot of its box, where it stands) meets the line segment itself, not its
extension: someone walking past the end of a door line does not count. Zones are polygons in the
same coordinates. And which person a face belongs to (``holds``), in frame pixels. Pure functions,
no state: the trackers keep the positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Box4 = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels

IN, OUT, NONE = 1, -1, 0


@dataclass(frozen=True)
class Line:
    """A counting line from ``a`` to ``b`` (normalised); ``in_side`` is where "in" lies."""

    a: Point
    b: Point
    in_side: str = "left"  # "left" or "right" of a -> b, as seen in the image

    def side(self, p: Point) -> float:
        """Positive on the ``in`` side, negative on the other, 0 on the line (its extension too)."""
        (ax, ay), (bx, by) = self.a, self.b
        # The cross product's sign with y pointing down: positive is to the right of a -> b on screen.
        right = (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)
        return right if self.in_side == "right" else -right


def _orient(p: Point, q: Point, r: Point) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def crossing(line: Line, before: Point, after: Point) -> int:
    """``IN`` or ``OUT`` when the step from ``before`` to ``after`` crosses the line segment from one
    side to the other, ``NONE`` otherwise. A position exactly on the line is on neither side: the
    caller passes a track's last position strictly off the line as ``before``, so a foot landing on
    the line for a frame neither loses the crossing nor counts it twice."""
    s0, s1 = line.side(before), line.side(after)
    if s0 == 0 or s1 == 0 or (s0 > 0) == (s1 > 0):
        return NONE
    # Strict sides of the step's line for both ends of the segment: the step meets the segment.
    o1, o2 = _orient(before, after, line.a), _orient(before, after, line.b)
    if o1 != 0 and o2 != 0 and (o1 > 0) == (o2 > 0):
        return NONE
    return IN if s1 > 0 else OUT


def inside(polygon: Sequence[Point], p: Point) -> bool:
    """Whether ``p`` lies inside ``polygon`` (even-odd rule; a point on an edge may go either way)."""
    x, y = p
    hit = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def foot(box: Box4, width: int, height: int) -> Point:
    """Where a person stands: the bottom centre of the box, normalised to the frame."""
    x1, _, x2, y2 = box
    return ((x1 + x2) / 2 / width, y2 / height)


# A face belongs to a person when its centre lies in the person's box widened by this share of its
# width on each side, and no lower than this share of its height from the top (the head and
# shoulders; a person's box reaches down to the feet, or to the frame's edge).
_SIDE_MARGIN = 0.1
_HEAD_DEPTH = 0.6


def holds(person: Box4, face: Box4) -> bool:
    """Whether a face box belongs to a person box (its centre in the person's upper part, and the
    face no wider than the person)."""
    px1, py1, px2, py2 = person
    fx1, fy1, fx2, fy2 = face
    w, h = px2 - px1, py2 - py1
    cx, cy = (fx1 + fx2) / 2, (fy1 + fy2) / 2
    return (
        px1 - _SIDE_MARGIN * w <= cx <= px2 + _SIDE_MARGIN * w
        and py1 - _SIDE_MARGIN * h <= cy <= py1 + _HEAD_DEPTH * h
        and fx2 - fx1 <= (1 + 2 * _SIDE_MARGIN) * w
    )
