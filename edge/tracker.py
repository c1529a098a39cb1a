"""Multi-face tracker: turns per-frame detections into visitor start/end events.

Pure on purpose (no threads, no I/O, no clock): the caller passes a monotonic
timestamp with every frame, so tests drive time directly and the tracker can
never disagree with the pipeline about how long something took.

The tracker takes its validated config sections: ``tracking`` (declared here), and the
``detector`` and ``attributes`` sections for the thresholds it shares with them.

Design
------
* **Association** is greedy on IoU between each track's *predicted* box
  (its last box moved at its smoothed velocity, its size kept, so a walker's
  box is where the walker now is, not where it was) and this frame's
  detections. A matched box of another size than the track's (a face half
  hidden behind a passer-by, two faces merged) continues the track where its
  motion puts it, without moving its velocity: crossing walkers stay one
  visitor each. Pairs that fail
  the IoU threshold may still match when the detection's centre lies within
  ``CENTRE_FALLBACK`` x the predicted box diagonal (for a track seen once,
  which has no velocity yet, 1 + the frames since it was seen times that)
  and the areas are within 4x: small fast faces overlap little from frame to
  frame.
* **Two-stage association** (as ByteTrack): detections scoring at least
  ``detector.score_threshold`` are matched to tracks first and may start new tracks; weaker
  ones (the detector passes them down to its own, lower threshold) are then
  matched only to tracks still unmatched and never start one. In video a weak
  box where a face was a moment ago is strong evidence; a lone weak box is not.
  A track becomes a visitor only with ``MIN_CONFIDENT_HITS`` confident matches.
* A track survives ``max_missed_s`` without a match, then ends.
* A track becomes a **visitor** once it has been seen for ``min_visitor_s``
  (first to last match) with at least ``min_hits`` matches, and never from a
  single frame (at least two matches are always required), so one-frame false
  positives never count. Non-visitor tracks vanish silently when they end.
* **Attributes** are not estimated here. Per track the tracker keeps the best
  ``best_observations`` observations ranked by ``area * score``; when this
  frame's detection enters that top-k it emits an :class:`AttributeRequest`
  and the caller answers with :meth:`Tracker.add_attributes`. Only detections
  that pass the **quality gate** (``attributes.min_face_px`` on the shorter side,
  score at least ``detector.score_threshold``) are offered: a visitor seen only as a small or
  weak face is counted, and its attributes stay unknown. A detection that
  does not beat the current worst kept observation costs nothing, so per-frame
  work and per-track state stay bounded however long someone stays.
* **Attention** (``edge.attention``): where the attention config is on, every sighting's head
  pose (``Detection.pose``) goes to the track's ``Gaze``, which sums the time the track looked;
  an ended visitor carries that sum and its first-look delay, nothing else about its gaze.
* **People** (``edge.people``): a face track seen inside a person's box is marked, so its visitor
  is counted once, as that person; the boxes of visitors seen this frame go back to the people
  tracker, which marks their person as seen with a face.
* A track's boxes and observations are dropped the moment it ends; only
  :class:`VisitorEnded` (dwell and combined attributes) leaves.

Counting contract with the aggregator: a visitor is counted when it *starts*
(``TrackerUpdate.new_visitors``); its attribute breakdown and dwell are counted
when it *ends* (``TrackerUpdate.ended``), once its attributes are settled.

``track_key`` is an internal, opaque, per-process int. It appears only in
:class:`AttributeRequest` (so the caller can hand the answer back) and in
``TrackerUpdate.visitor_faces`` (so the people tracker can tell visitors apart) and must not
be forwarded anywhere else: no record that leaves the tracker towards the
aggregator carries it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge.attention import AttentionConfig
from edge.attribute_votes import combine_attributes, quality
from edge.attributes import AttributesConfig
from edge.config.fields import POSITIVE_S, integer, leaf, number
from edge.crossing import holds
from edge.detector import DetectorConfig
from edge.records import Attributes, Detection
from edge.tracks import Box, Track, associate

log = logging.getLogger(__name__)

__all__ = ["combine_attributes"]  # re-exported: the tracker's rule for a visitor's attributes

# Unanswered attribute requests remembered per track, as a multiple of best_observations.
_PENDING_FACTOR = 4
# Max centre distance / predicted box diagonal for the fallback match (0 would disable it).
CENTRE_FALLBACK = 0.5
# Confident matches a visitor needs (weak ones only extend a track).
MIN_CONFIDENT_HITS = 2
_EPS = 1e-9


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    """Tracking thresholds; times in seconds so they hold at any frame rate."""

    iou_threshold: float = leaf(0.3, number("an overlap between 0 (exclusive) and 1", lo=0, hi=1, lo_open=True))
    max_missed_s: float = leaf(1.0, number(POSITIVE_S, lo=0, lo_open=True))
    min_visitor_s: float = leaf(1.0, number("a number of seconds >= 0", lo=0))
    min_hits: int = leaf(3, integer("a detection count >= 1", lo=1))
    best_observations: int = leaf(3, integer("an observation count >= 1", lo=1))


@dataclass(frozen=True)
class VisitorStarted:
    """A track just became a visitor. ``attributes`` are the combined estimates so far
    (may be None or still change); the aggregator only counts the start."""

    attributes: Attributes | None


@dataclass(frozen=True)
class VisitorEnded:
    """A visitor track ended: how long it was seen, its settled, combined attributes and, where
    attention is on, how long it looked and how soon it first did (None: never, or attention off)."""

    dwell_s: float
    attributes: Attributes | None
    attention_s: float | None = None
    first_look_s: float | None = None
    in_person: bool = False  # seen inside a person's box (edge.people): that person counts it


@dataclass(frozen=True)
class AttributeRequest:
    """Run the attribute models on ``detection`` (this frame) and hand the result back
    with ``Tracker.add_attributes(track_key, ...)``. ``track_key`` is internal: never publish it."""

    track_key: int
    detection: Detection


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame (or a flush) changed.

    ``active`` is the number of faces in view (tracks matched or started in the last
    ``detector.tile_interval`` frames, tentative ones included; a face in a tile is searched for
    that often): the concurrency the aggregator reports as ``faces``. ``frame`` is False for
    :meth:`Tracker.flush`, which is not a frame and must not lower the mean concurrency.
    """

    new_visitors: tuple[VisitorStarted, ...] = ()
    ended: tuple[VisitorEnded, ...] = ()
    active: int = 0
    needs_attributes: tuple[AttributeRequest, ...] = ()
    frame: bool = True
    # The visitors seen this frame, (track_key, box), for edge.people.link alone (the key is internal).
    visitor_faces: tuple[tuple[int, Box], ...] = ()


class Tracker:
    """Greedy IoU tracker with motion prediction; see the module docstring."""

    def __init__(
        self,
        tracking: TrackingConfig,
        detector: DetectorConfig,
        attributes: AttributesConfig,
        attention: AttentionConfig,
    ) -> None:
        self.config = tracking
        self.attention = attention
        self.high_score = detector.score_threshold  # detections below only continue live tracks
        self.presence_frames = detector.tile_interval  # matched this recently: a face in view
        self.min_face_px = attributes.min_face_px  # the quality gate for describing a face
        self.min_gender_score = attributes.min_gender_score  # see edge.attribute_votes.agreed_gender
        self._tracks: dict[int, Track] = {}
        self._keys = itertools.count(1)
        self._min_hits = max(2, tracking.min_hits)  # one frame is never a visitor
        self._pending_cap = _PENDING_FACTOR * tracking.best_observations
        self._frame = -1  # frames seen by update()

    @property
    def tracks(self) -> int:
        """Live tracks (tentative and visitors)."""
        return len(self._tracks)

    def held_observations(self, track_key: int) -> int:
        """Observations plus unanswered requests held for a track (0 when it ended)."""
        track = self._tracks.get(track_key)
        return 0 if track is None else len(track.observations) + len(track.pending)

    def update(self, detections: Sequence[Detection], now: float, persons: Sequence[Box] = ()) -> TrackerUpdate:
        """Associate one frame's detections (``now``: monotonic seconds at capture). ``persons``:
        where the people are (``edge.people``), so a face seen inside one is not counted twice."""
        cfg = self.config
        self._frame += 1
        ended = self._expire(now)
        dets = [d for d in detections if d.area > 0 and all(math.isfinite(v) for v in d.box)]
        if len(dets) != len(detections):
            log.debug("ignored %d degenerate detections", len(detections) - len(dets))
        strong = [d for d in dets if d.score >= self.high_score]
        weak = [d for d in dets if d.score < self.high_score]
        tracks = list(self._tracks.values())
        matches = [
            (tracks[ti], strong[di])
            for ti, di in associate(tracks, strong, now, self._frame, cfg.iou_threshold, CENTRE_FALLBACK)
        ]
        taken = {id(t) for t, _ in matches}
        leftover = [t for t in tracks if id(t) not in taken]
        matches += [
            (leftover[ti], weak[di])
            for ti, di in associate(leftover, weak, now, self._frame, cfg.iou_threshold, CENTRE_FALLBACK)
        ]

        started: list[VisitorStarted] = []
        requests: list[AttributeRequest] = []
        matched: set[int] = set()
        for track, det in matches:
            matched.add(id(det))
            track.hit(det.box, now, self._frame, det.score >= self.high_score)
            track.in_person = track.in_person or any(holds(p, det.box) for p in persons)
            if self.attention.enabled:
                track.gaze.see(det.pose, now, track.first_seen, self.attention)
            if (
                not track.visitor
                and track.hits >= self._min_hits
                and track.confident_hits >= MIN_CONFIDENT_HITS
                and track.last_seen - track.first_seen >= cfg.min_visitor_s - _EPS
            ):
                track.visitor = True
                started.append(VisitorStarted(track.attributes(self.min_gender_score)))
            if self._describable(det) and track.offer(quality(det), cfg.best_observations):
                requests.append(AttributeRequest(track.key, det))
        for det in strong:
            if id(det) in matched:
                continue
            track = Track(next(self._keys), det.box, now, self._frame, self._pending_cap)
            track.in_person = any(holds(p, det.box) for p in persons)
            self._tracks[track.key] = track
            if self.attention.enabled:
                track.gaze.see(det.pose, now, now, self.attention)
            if self._describable(det) and track.offer(quality(det), cfg.best_observations):
                requests.append(AttributeRequest(track.key, det))
        active = sum(1 for t in self._tracks.values() if self._frame - t.last_frame < self.presence_frames)
        faces = tuple((t.key, t.box) for t, _ in matches if t.visitor)
        return TrackerUpdate(tuple(started), tuple(ended), active, tuple(requests), visitor_faces=faces)

    def _describable(self, det: Detection) -> bool:
        """The quality gate: attributes only from confident faces big enough to judge."""
        x1, y1, x2, y2 = det.box
        return det.score >= self.high_score and min(x2 - x1, y2 - y1) >= self.min_face_px

    def add_attributes(self, track_key: int, attributes: Attributes | None) -> None:
        """Answer the oldest unanswered request of ``track_key``.

        Answer every request in the order received; pass None for one you skipped
        (e.g. under load) so later answers land on the right observation. Answers
        for ended tracks or dropped observations are ignored.
        """
        track = self._tracks.get(track_key)
        if track is None or not track.pending:
            log.debug("attributes for unknown or ended track ignored")
            return
        number = track.pending.popleft()
        if attributes is None:
            return
        for obs in track.observations:
            if obs.number == number:
                obs.attributes = attributes
                return

    def expire(self, now: float) -> TrackerUpdate:
        """End tracks unseen for longer than ``max_missed_s`` when no frame arrives (camera
        outage), so a visitor's dwell and attributes land in the window where they left."""
        return TrackerUpdate(ended=tuple(self._expire(now)), frame=False)

    def flush(self, now: float) -> TrackerUpdate:
        """End every track (shutdown); visitors report their dwell up to their last sighting."""
        ended = [self._end(t) for t in self._tracks.values()]
        self._tracks.clear()
        return TrackerUpdate(ended=tuple(e for e in ended if e is not None), frame=False)

    def _expire(self, now: float) -> list[VisitorEnded]:
        gone = [t for t in self._tracks.values() if now - t.last_seen > self.config.max_missed_s]
        ended: list[VisitorEnded] = []
        for track in gone:
            del self._tracks[track.key]
            e = self._end(track)
            if e is not None:
                ended.append(e)
        return ended

    def _end(self, track: Track) -> VisitorEnded | None:
        if not track.visitor:
            return None
        looked = self.attention.enabled
        return VisitorEnded(
            dwell_s=track.last_seen - track.first_seen,
            attributes=track.attributes(self.min_gender_score),
            attention_s=track.gaze.attention_s if looked else None,
            first_look_s=track.gaze.first_look_s if looked else None,
            in_person=track.in_person,
        )
