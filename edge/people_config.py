"""The ``people`` section: counting everyone who passes, face or not (``edge.people``).

Positions are in frame coordinates normalised to 0..1 (x right, y down), so a line or zone drawn for
one resolution holds at another. The line and zones are optional; windows carry ``crossings`` and
``zones`` only where they are set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edge.config.fields import (
    POSITIVE_S,
    Check,
    Ctx,
    Invalid,
    boolean,
    choice,
    integer,
    leaf,
    number,
    required,
    section,
)
from edge.crossing import Line, Point

ZONE_NAME = re.compile(r"[a-z0-9_]{1,32}")
MAX_ZONES = 8
_POINT = "a point [x, y] with x and y from 0 to 1 (a share of the frame's width and height)"


def _point(v: Any) -> Point:
    if not isinstance(v, list) or len(v) != 2:
        raise Invalid
    if any(isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1 for c in v):
        raise Invalid
    return (float(v[0]), float(v[1]))


def _point_check(v: Any, ctx: Ctx) -> Point:
    return _point(v)


def _area(polygon: tuple[Point, ...]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1]))) / 2


def _zones(v: Any, ctx: Ctx) -> tuple[tuple[str, tuple[Point, ...]], ...]:
    if v is None:
        return ()
    if not isinstance(v, dict) or len(v) > MAX_ZONES:
        raise Invalid
    zones = []
    for name, polygon in v.items():
        if not isinstance(name, str) or not ZONE_NAME.fullmatch(name):
            raise Invalid(f"zone name {name!r}: 1 to 32 lower-case letters, digits or '_'")
        if not isinstance(polygon, list) or len(polygon) < 3:
            raise Invalid(f"zone {name!r}: a list of at least 3 points [x, y], each from 0 to 1")
        try:
            points = tuple(_point(p) for p in polygon)
        except Invalid:
            raise Invalid(f"zone {name!r}: every point must be {_POINT}") from None
        if _area(points) <= 1e-6:
            raise Invalid(f"zone {name!r}: its points enclose no area")
        zones.append((name, points))
    return tuple(zones)


@dataclass(frozen=True, kw_only=True)
class LineConfig:
    """A counting line from ``start`` to ``end``; ``in_side`` is the side people come in to, left
    or right of the line as seen walking from ``start`` to ``end`` on the image (y down)."""

    start: Point = required(Check(_POINT, _point_check))
    end: Point = required(Check(_POINT, _point_check))
    in_side: str = leaf("left", choice("left", "right"))

    def _problems(self) -> list[tuple[str, Any, str]]:
        if self.start == self.end:
            return [("end", list(self.end), "a point other than start (a line needs two points)")]
        return []


@dataclass(frozen=True, kw_only=True)
class PeopleConfig:
    """People counting: on by default (it is what an owner asks first); off removes the person
    detector's run and the people keys from windows and their sensors."""

    enabled: bool = leaf(True, boolean())
    # The person detector runs on every n-th frame (tracks are predicted in between): measured so
    # the 640x480 pipeline with 5 faces keeps its frame rate (README, "People").
    every_frames: int = leaf(1, integer("a frame count from 1 to 30", lo=1, hi=30))
    score_threshold: float = leaf(0.3, number("a score between 0 (exclusive) and 1", lo=0, hi=1, lo_open=True))
    min_s: float = leaf(0.5, number("a number of seconds >= 0", lo=0))
    min_hits: int = leaf(2, integer("a sighting count from 2 to 100", lo=2, hi=100))
    max_missed_s: float = leaf(1.5, number(POSITIVE_S, lo=0, lo_open=True))
    min_dwell_s: float = leaf(10.0, number("a number of seconds >= 0", lo=0))
    line: LineConfig | None = section(LineConfig, optional=True)
    zones: tuple[tuple[str, tuple[Point, ...]], ...] = leaf(
        (),
        Check(f"a mapping of up to {MAX_ZONES} zone names to polygons (lists of at least 3 points [x, y])", _zones),
    )

    @property
    def counting_line(self) -> Line | None:
        if self.line is None:
            return None
        return Line(self.line.start, self.line.end, self.line.in_side)

    @property
    def zone_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.zones)
