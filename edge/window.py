"""A finished counting window as one typed record, and its one wire form.

The aggregator makes a ``Window`` (unnumbered), the state store numbers it (stream, seq and the
day's running total ``today``, in the same transaction that spools it), the sinks deliver its
payload and the fleet collector reads the payload back into a ``Window``. ``to_payload`` and
``from_payload`` are the only places that know the JSON shape (``edge/schemas/window.schema.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

SCHEMA = 4  # 2: stream, observed_s; 3: viewers, viewer_rate, attention_s, viewers_by; 4: people, crossings, zones
BREAKDOWNS = ("gender", "age", "expression", "ethnicity")  # in payload order
VIEWER_BREAKDOWNS = ("gender", "age")  # viewers are broken down by these where they are on

Cells = Mapping[str, int | None]  # cell label -> count, None where suppressed


@dataclass(frozen=True)
class Span:
    """Where the window lies: UTC ISO-8601 times, and whether it was covered only in part."""

    start: str
    end: str
    partial: bool


@dataclass(frozen=True)
class Faces:
    """Faces in view per processed frame (None where suppressed)."""

    peak: int | None
    mean: float | None


@dataclass(frozen=True)
class Dwell:
    """Dwell of the visitors whose track ended in the window (None where suppressed or n is 0)."""

    n: int | None
    mean: float | None
    p50: float | None
    p90: float | None


@dataclass(frozen=True)
class Attention:
    """Viewers among the visitors whose track ended in the window (those counted in ``Dwell``):
    how many looked for at least ``attention.min_s``, their share, their attention time (sum and
    median, seconds) and viewers by gender and age band. None where suppressed or undefined."""

    viewers: int | None
    rate: float | None
    seconds_sum: float | None
    seconds_median: float | None
    by: Mapping[str, Cells]


@dataclass(frozen=True)
class Occupancy:
    """People standing in one zone per frame the person detector ran on: peak and mean."""

    peak: int | None
    mean: float | None


@dataclass(frozen=True)
class People:
    """Everyone whose person track ended in the window, face or not (``edge.people``): how many,
    how many showed a face, passers-by and stayers (dwell under or at least ``people.min_dwell_s``),
    crossings of the counting line (None: no line) and zone occupancy (empty: no zones). None
    where suppressed."""

    n: int | None
    with_face: int | None
    passers_by: int | None
    stayers: int | None
    crossings: tuple[int | None, int | None] | None = None  # in, out
    zones: Mapping[str, Occupancy] = field(default_factory=dict)


@dataclass(frozen=True)
class DayTotal:
    """Visitors so far on the window's local date, this window included."""

    date: str
    visitors: int


@dataclass(frozen=True)
class Window:
    """One window's anonymous counts. ``stream``, ``seq`` and ``today`` are None until the state
    store numbers it (``numbered``); ``breakdowns`` holds the enabled ones, in ``BREAKDOWNS`` order."""

    device: str
    site: str
    span: Span
    observed_s: float
    visitors: int | None
    faces: Faces
    dwell: Dwell
    breakdowns: Mapping[str, Cells]
    suppressed: tuple[str, ...]
    attention: Attention | None = None  # None: attention is switched off
    people: People | None = None  # None: people counting is switched off
    stream: str | None = None
    seq: int | None = None
    today: DayTotal | None = None
    schema: int = SCHEMA

    def numbered(self, stream: str, seq: int, today: DayTotal) -> Window:
        """This window with its number and its day's total (the state store's job alone)."""
        return replace(self, stream=stream, seq=seq, today=today)

    def as_partial(self) -> Window:
        return replace(self, span=replace(self.span, partial=True))

    def to_payload(self) -> dict[str, Any]:
        """The JSON object as published (key order kept for readers of the raw stream)."""
        payload: dict[str, Any] = {
            "schema": self.schema,
            "device": self.device,
            "site": self.site,
            "stream": self.stream,
            "seq": self.seq,
            "window": {"start": self.span.start, "end": self.span.end, "partial": self.span.partial},
            "observed_s": self.observed_s,
            "visitors": self.visitors,
        }
        if self.today is not None:
            payload["today"] = {"date": self.today.date, "visitors": self.today.visitors}
        payload["faces"] = {"peak": self.faces.peak, "mean": self.faces.mean}
        payload["dwell_s"] = {"n": self.dwell.n, "mean": self.dwell.mean, "p50": self.dwell.p50, "p90": self.dwell.p90}
        if self.people is not None:
            p = self.people
            payload["people"] = p.n
            payload["people_with_face"] = p.with_face
            payload["passers_by"] = p.passers_by
            payload["stayers"] = p.stayers
            if p.crossings is not None:
                payload["crossings"] = {"in": p.crossings[0], "out": p.crossings[1]}
            if p.zones:
                payload["zones"] = {name: {"peak": z.peak, "mean": z.mean} for name, z in p.zones.items()}
        if self.attention is not None:
            a = self.attention
            payload["viewers"] = a.viewers
            payload["viewer_rate"] = a.rate
            payload["attention_s"] = {"sum": a.seconds_sum, "median": a.seconds_median}
            payload["viewers_by"] = {name: dict(cells) for name, cells in a.by.items()}
        for name, cells in self.breakdowns.items():
            payload[name] = dict(cells)
        payload["suppressed"] = list(self.suppressed)
        return payload

    @classmethod
    def from_payload(cls, doc: Mapping[str, Any]) -> Window:
        """The window a payload describes. The payload must already be valid (the state store's
        own rows, or a message the fleet collector checked against the schema): a missing key
        raises ``KeyError``."""
        span, faces, dwell, today = doc["window"], doc["faces"], doc["dwell_s"], doc.get("today")
        attention = None
        if "viewers" in doc:  # schema 3 with attention on
            seconds, by = doc["attention_s"], doc["viewers_by"]
            attention = Attention(
                viewers=doc["viewers"],
                rate=doc["viewer_rate"],
                seconds_sum=seconds["sum"],
                seconds_median=seconds["median"],
                by={name: dict(by[name]) for name in VIEWER_BREAKDOWNS if isinstance(by.get(name), Mapping)},
            )
        people = None
        if "people" in doc:  # schema 4 with people counting on
            crossings, zones = doc.get("crossings"), doc.get("zones") or {}
            people = People(
                n=doc["people"],
                with_face=doc["people_with_face"],
                passers_by=doc["passers_by"],
                stayers=doc["stayers"],
                crossings=(crossings["in"], crossings["out"]) if crossings is not None else None,
                zones={name: Occupancy(z["peak"], z["mean"]) for name, z in zones.items()},
            )
        return cls(
            schema=doc["schema"],
            device=doc["device"],
            site=doc["site"],
            stream=doc.get("stream"),
            seq=doc.get("seq"),
            span=Span(span["start"], span["end"], span["partial"]),
            observed_s=doc["observed_s"],
            visitors=doc["visitors"],
            today=DayTotal(today["date"], today["visitors"]) if today is not None else None,
            faces=Faces(faces["peak"], faces["mean"]),
            dwell=Dwell(dwell["n"], dwell["mean"], dwell["p50"], dwell["p90"]),
            breakdowns={name: dict(doc[name]) for name in BREAKDOWNS if isinstance(doc.get(name), Mapping)},
            suppressed=tuple(doc["suppressed"]),
            attention=attention,
            people=people,
        )
