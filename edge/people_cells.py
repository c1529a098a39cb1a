"""A window's people cells, with the minimum-cell rule (``edge.aggregator``'s rules, extended).

``people`` is the number of persons whose track ended in the window (``edge.people``), null at
1..k-1. Two splits of those people are published: with a face or not (``people_with_face``; the
rest is ``people`` minus it), and passers-by against stayers. A split's published side tells the
other, so a side is published only when both sides are 0 or at least k (both sides of a small
total are hidden, zeros too: they would say what the few people did). Crossings in and out are
event counts of their own, each null at 1..k-1. A zone's peak occupancy of 1..k-1 says "this few
people stood here", so its peak and mean are both null then, as for ``faces``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from edge.people import PeopleUpdate, PersonEnded
from edge.people_config import PeopleConfig
from edge.suppression import risky
from edge.tracker import TrackerUpdate
from edge.window import Occupancy, People


@dataclass
class PeopleTally:
    """The people counted into one open window so far."""

    dwell: list[float] = field(default_factory=list)  # of each person whose track ended
    with_face: int = 0
    ins: int = 0
    outs: int = 0
    frames: int = 0  # frames the person detector ran on
    zone_sums: list[int] = field(default_factory=list)
    zone_peaks: list[int] = field(default_factory=list)

    def end(self, person: PersonEnded) -> None:
        together = max(1, person.together)
        self.dwell += [max(0.0, person.dwell_s)] * together
        self.with_face += together if person.with_face else 0
        self.ins += person.ins
        self.outs += person.outs

    def occupy(self, zones: Sequence[int]) -> None:
        """One person frame's zone counts."""
        if not self.zone_sums:
            self.zone_sums, self.zone_peaks = [0] * len(zones), [0] * len(zones)
        self.frames += 1
        for i, count in enumerate(zones):
            self.zone_sums[i] += count
            self.zone_peaks[i] = max(self.zone_peaks[i], count)

    def copy(self) -> PeopleTally:
        return PeopleTally(
            list(self.dwell),
            self.with_face,
            self.ins,
            self.outs,
            self.frames,
            list(self.zone_sums),
            list(self.zone_peaks),
        )


def count_people(tally: PeopleTally, update: TrackerUpdate, people: PeopleUpdate | None) -> None:
    """Count one frame's (or expiry's) ended people into ``tally``: a person is a person track, or a
    visitor whose face was never inside one (``edge.people``), so one human is one count."""
    for person in people.ended if people is not None else ():
        tally.end(person)
    if people is not None and people.zones is not None:
        tally.occupy(people.zones)
    for visitor in update.ended:
        if not visitor.in_person:
            tally.end(PersonEnded(visitor.dwell_s, with_face=True))


def _split(a: int, b: int, k: int) -> bool:
    """Whether both sides of a split may be published."""
    return not (risky(a, k) or risky(b, k))


def people_cells(tally: PeopleTally, config: PeopleConfig, k: int) -> tuple[People, list[str]]:
    """The published ``People`` of a window and the paths it suppressed, in payload order."""
    suppressed: list[str] = []
    n = len(tally.dwell)
    stayers = sum(1 for d in tally.dwell if d >= config.min_dwell_s)
    people: int | None = n
    with_face: int | None = tally.with_face
    passers: int | None = n - stayers
    stay: int | None = stayers
    if risky(n, k):
        people = None
        suppressed.append("people")
    if people is None or not _split(tally.with_face, n - tally.with_face, k):
        with_face = None
        suppressed.append("people_with_face")
    if people is None or not _split(n - stayers, stayers, k):
        passers = stay = None
        suppressed += ["passers_by", "stayers"]
    crossings: tuple[int | None, int | None] | None = None
    if config.line is not None:
        ins: int | None = tally.ins
        outs: int | None = tally.outs
        if risky(tally.ins, k):
            ins = None
            suppressed.append("crossings.in")
        if risky(tally.outs, k):
            outs = None
            suppressed.append("crossings.out")
        crossings = (ins, outs)
    zones: dict[str, Occupancy] = {}
    for i, name in enumerate(config.zone_names):
        peak = tally.zone_peaks[i] if tally.zone_peaks else 0
        mean = round(tally.zone_sums[i] / tally.frames, 2) if tally.frames else 0.0
        if risky(peak, k):
            zones[name] = Occupancy(None, None)
            suppressed += [f"zones.{name}.peak", f"zones.{name}.mean"]
        else:
            zones[name] = Occupancy(peak, mean)
    return People(people, with_face, passers, stay, crossings, zones), suppressed
