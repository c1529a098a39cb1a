"""Everyone who passes, face or not: person tracks, their link to faces, crossings and zones.

Pure, like the face tracker (``edge.tracker``): the caller passes a monotonic timestamp, and the
person detector's boxes on the frames it runs on (every ``people.every_frames``-th frame); between
them person tracks are predicted, not updated.

* **Association** is the face tracker's (``edge.tracks.associate``): greedy IoU on predicted boxes,
  then a centre-distance fallback; two stages, so a box at ``score_threshold`` starts a track and a
  weaker one (down to half of it) only continues one (a person seen from above, or half behind a
  shelf, scores low for a frame or two).
* A track is a **person** once it has ``min_hits`` confident sightings spanning ``min_s``, sure in at
  least ``HIT_RATIO`` of the person frames since it began;
  shorter tracks vanish silently. A person ends ``max_missed_s`` after its last sighting.
* **One human, one count.** A face lies in a person when its centre is in the upper part of the
  person's box (``holds``). The face tracker marks a face track seen inside a person's box (the
  boxes of :meth:`PeopleTracker.boxes`, people only), and a person with a visitor's face inside it
  is a person *with a face* (:meth:`PeopleTracker.link`). A person stands for as many people as the
  visitors whose face lay in its box more often than in any other (at least one), or as held their
  faces in it at once: a visitor is always also a person, so people are never fewer than visitors
  (where the face tracker counts one face twice, people do too). A visitor whose face was never inside a person
  is a person too, with a face: the aggregator counts it (``VisitorEnded.in_person``), so there are
  never fewer people than visitors.
* **Crossings**: each sighting's foot point (bottom centre of the box) against the counting line
  (``edge.crossing``). A position within ``LINE_BAND`` of the line is on neither side, so a person
  standing on the line does not count in and out with each frame's jitter; the step from the last
  position clearly on one side to the first clearly on the other must meet the line segment.
* **Zones**: on each person frame, the people whose foot is inside each zone.

What leaves: ``PersonEnded`` (dwell, whether a face was seen, crossings) and per-frame zone counts;
no box, position or track key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge.crossing import IN, OUT, Line, Point, crossing, foot, holds, inside
from edge.people_config import PeopleConfig
from edge.records import PersonDetection
from edge.tracks import Box, Motion, associate

IOU_THRESHOLD = 0.3
# A person is sure in at least half of the person frames since its track began: between two people
# walking close together at under a sixth of the frame's height, MoveNet flickers a third box for a
# frame or two (on the development clips side by side, 4 of 6 extra people went with this rule).
HIT_RATIO = 0.5
CENTRE_FALLBACK = 0.5  # as the face tracker's: centre distance / predicted box diagonal
WEAK_FACTOR = 0.5  # boxes down to this share of score_threshold continue a track
# Feet within this distance of the line (in normalised frame units) are on neither side.
LINE_BAND = 0.02
_EPS = 1e-9
_VOTES_KEPT_S = 10.0  # how long a visitor's face is remembered after it was last seen in a person


@dataclass(frozen=True)
class PersonEnded:
    """A person's track ended: how long it was seen, whether a visitor's face was seen in it, and
    how often it crossed the counting line each way."""

    dwell_s: float
    with_face: bool
    ins: int = 0
    outs: int = 0
    # How many people the track stands for: more than one where that many visitors' faces lay in its
    # box at once (two people walking close under one box), so people are never fewer than visitors.
    together: int = 1


@dataclass(frozen=True)
class PeopleUpdate:
    """What one frame (or an expiry, or the flush) changed. ``zones``: the people standing in each
    configured zone, on a frame the person detector ran on; None on any other."""

    ended: tuple[PersonEnded, ...] = ()
    zones: tuple[int, ...] | None = None


class PersonTrack(Motion):
    __slots__ = ("person", "with_face", "anchor", "ins", "outs", "first_frame", "together")

    def __init__(self, key: int, box: Box, now: float, frame: int) -> None:
        super().__init__(key, box, now, frame)
        self.first_frame = frame
        self.together = 1
        self.person = False
        self.with_face = False
        self.anchor: Point | None = None  # the last foot position clearly off the line
        self.ins = 0
        self.outs = 0


class PeopleTracker:
    """Person tracks from the person detector's boxes; see the module docstring."""

    def __init__(self, config: PeopleConfig) -> None:
        self.config = config
        self.line: Line | None = config.counting_line
        self.zones = config.zones
        self._tracks: dict[int, PersonTrack] = {}
        self._keys = itertools.count(1)
        # Face track key -> person track key -> frames its face lay in that person; and when it last
        # did. Dropped _VOTES_KEPT_S after the face was last seen in anyone: bounded by who is in view.
        self._votes: dict[int, dict[int, int]] = {}
        self._voted: dict[int, float] = {}
        self._frame = -1  # person frames seen by update()

    @property
    def tracks(self) -> int:
        """Live tracks (tentative and people)."""
        return len(self._tracks)

    def update(self, persons: Sequence[PersonDetection], now: float, frame_wh: tuple[int, int]) -> PeopleUpdate:
        """One frame the person detector ran on (``now``: monotonic seconds at capture)."""
        cfg = self.config
        self._frame += 1
        ended = self._expire(now)
        dets = [p for p in persons if p.box[2] > p.box[0] and p.box[3] > p.box[1] and all(map(math.isfinite, p.box))]
        strong = [p for p in dets if p.score >= cfg.score_threshold]
        weak = [p for p in dets if WEAK_FACTOR * cfg.score_threshold <= p.score < cfg.score_threshold]
        tracks = list(self._tracks.values())
        matches = [
            (tracks[t], strong[d])
            for t, d in associate(tracks, strong, now, self._frame, IOU_THRESHOLD, CENTRE_FALLBACK)
        ]
        taken = {id(t) for t, _ in matches}
        leftover = [t for t in tracks if id(t) not in taken]
        matches += [
            (leftover[t], weak[d])
            for t, d in associate(leftover, weak, now, self._frame, IOU_THRESHOLD, CENTRE_FALLBACK)
        ]
        seen: list[PersonTrack] = []
        used = {id(d) for _, d in matches}
        for track, det in matches:
            track.hit(det.box, now, self._frame, det.score >= cfg.score_threshold)
            if (
                not track.person
                and track.confident_hits >= cfg.min_hits
                and track.confident_hits >= HIT_RATIO * (self._frame - track.first_frame + 1)
                and track.last_seen - track.first_seen >= cfg.min_s - _EPS
            ):
                track.person = True
            seen.append(track)
        for det in strong:
            if id(det) not in used:
                track = PersonTrack(next(self._keys), det.box, now, self._frame)
                self._tracks[track.key] = track
                seen.append(track)
        if self.line is None and not self.zones:
            return PeopleUpdate(tuple(ended), ())
        w, h = frame_wh
        feet = {id(t): foot(t.box, w, h) for t in seen}
        if self.line is not None:
            for track in seen:
                self._step(track, feet[id(track)])
        zones = tuple(sum(1 for t in seen if t.person and inside(polygon, feet[id(t)])) for _, polygon in self.zones)
        return PeopleUpdate(tuple(ended), zones)

    def _step(self, track: PersonTrack, position: Point) -> None:
        """Count a crossing when the foot moved from clearly one side of the line to clearly the other."""
        line = self.line
        assert line is not None
        (ax, ay), (bx, by) = line.a, line.b
        # side() is a cross product with the line's vector: divided by its length, a distance.
        if abs(line.side(position)) < LINE_BAND * math.hypot(bx - ax, by - ay):
            return
        if track.anchor is not None:
            way = crossing(line, track.anchor, position)
            track.ins += way == IN
            track.outs += way == OUT
        track.anchor = position

    def boxes(self, now: float) -> tuple[Box, ...]:
        """Where the people (confirmed tracks) are now: the boxes a face is looked for in."""
        return tuple(t.predict(now) for t in self._tracks.values() if t.person)

    def link(self, visitor_faces: Sequence[tuple[int, Box]], now: float) -> None:
        """Mark the person each visitor's face lies in as seen with a face: of the people (confirmed
        tracks) whose box holds the face, the smallest. A tentative track is no one's body yet.
        ``visitor_faces``: (face track key, box) of the visitors seen this frame."""
        people = [(t, t.predict(now)) for t in self._tracks.values() if t.person]
        at_once: dict[int, int] = {}
        for face_key, face in visitor_faces:
            holders = [(t, b) for t, b in people if holds(b, face)]
            if not holders:
                continue
            track, _ = min(holders, key=lambda tb: (tb[1][2] - tb[1][0]) * (tb[1][3] - tb[1][1]))
            track.with_face = True
            at_once[track.key] = at_once.get(track.key, 0) + 1
            votes = self._votes.setdefault(face_key, {})
            votes[track.key] = votes.get(track.key, 0) + 1
            self._voted[face_key] = now
        for key, n in at_once.items():
            self._tracks[key].together = max(self._tracks[key].together, n)
        for face_key in [k for k, t in self._voted.items() if now - t > _VOTES_KEPT_S]:
            del self._voted[face_key], self._votes[face_key]

    def _visitors_of(self, track: PersonTrack) -> int:
        """The visitors whose face lay in this track's box more often than in any other's."""
        return sum(1 for votes in self._votes.values() if max(votes, key=lambda k: (votes[k], k)) == track.key)

    def expire(self, now: float) -> PeopleUpdate:
        """End tracks unseen for longer than ``max_missed_s`` (frames without a person run, or none)."""
        return PeopleUpdate(tuple(self._expire(now)))

    def flush(self, now: float) -> PeopleUpdate:
        """End every track (shutdown)."""
        ended = [self._end(t) for t in self._tracks.values()]
        self._tracks.clear()
        self._votes.clear()
        self._voted.clear()
        return PeopleUpdate(tuple(e for e in ended if e is not None))

    def _expire(self, now: float) -> list[PersonEnded]:
        gone = [t for t in self._tracks.values() if now - t.last_seen > self.config.max_missed_s]
        for t in gone:
            del self._tracks[t.key]
        return [e for e in (self._end(t) for t in gone) if e is not None]

    def _end(self, track: PersonTrack) -> PersonEnded | None:
        if not track.person:
            return None
        together = max(track.together, self._visitors_of(track))
        return PersonEnded(track.last_seen - track.first_seen, track.with_face, track.ins, track.outs, together)
