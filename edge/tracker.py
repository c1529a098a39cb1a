"""Multi-face tracker: turns per-frame detections into visitor start/end events.

Pure on purpose (no threads, no I/O, no clock): the caller passes a monotonic
timestamp with every frame, so tests drive time directly and the tracker can
never disagree with the pipeline about how long something took.

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
  ``centre_fallback`` x the predicted box diagonal (for a track seen once,
  which has no velocity yet, 1 + the frames since it was seen times that)
  and the areas are within 4x: small fast faces overlap little from frame to
  frame.
* **Two-stage association** (as ByteTrack): detections scoring at least
  ``high_score`` are matched to tracks first and may start new tracks; weaker
  ones (the detector passes them down to its own, lower threshold) are then
  matched only to tracks still unmatched and never start one. In video a weak
  box where a face was a moment ago is strong evidence; a lone weak box is not.
  A track becomes a visitor only with ``min_confident_hits`` confident matches.
* A track survives ``max_missed_s`` without a match, then ends.
* A track becomes a **visitor** once it has been seen for ``min_visitor_s``
  (first to last match) with at least ``min_hits`` matches, and never from a
  single frame (at least two matches are always required), so one-frame false
  positives never count. Non-visitor tracks vanish silently when they end.
* **Attributes** are not estimated here. Per track the tracker keeps the best
  ``best_observations`` observations ranked by ``area * score``; when this
  frame's detection enters that top-k it emits an :class:`AttributeRequest`
  and the caller answers with :meth:`Tracker.add_attributes`. Only detections
  that pass the **quality gate** (``attribute_min_face_px`` on the shorter side,
  score at least ``high_score``) are offered: a visitor seen only as a small or
  weak face is counted, and its attributes stay unknown. A detection that
  does not beat the current worst kept observation costs nothing, so per-frame
  work and per-track state stay bounded however long someone stays.
* A track's boxes and observations are dropped the moment it ends; only
  :class:`VisitorEnded` (dwell and combined attributes) leaves.

Counting contract with the aggregator: a visitor is counted when it *starts*
(``TrackerUpdate.new_visitors``); its attribute breakdown and dwell are counted
when it *ends* (``TrackerUpdate.ended``), once its attributes are settled.

``track_key`` is an internal, opaque, per-process int. It appears only in
:class:`AttributeRequest` (so the caller can hand the answer back) and must not
be forwarded anywhere else: no record that leaves the tracker towards the
aggregator carries it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.boxes import iou_matrix
from edge.records import Attributes, Detection

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

# Centre-distance fallback also requires areas within this factor of each other,
# so a small face cannot be "matched" to a large one next to it.
_FALLBACK_AREA_RATIO = 4.0
# Unanswered attribute requests remembered per track, as a multiple of best_observations.
_PENDING_FACTOR = 4
# Weight of the newest centre step in a track's velocity: a box's jitter moves it by 0.3 of the jitter.
_VELOCITY_GAIN = 0.3
# A box narrower or shorter than this fraction of the track's last one (or wider or taller than its
# inverse) is a piece of the face or two faces merged, not the face moving (on the development clips
# at 0.75x, 1x and 2x no side of 358 frame-to-frame pairs changed by more than 21%); for at most
# _MAX_COAST matches in a row the track is predicted instead.
_SIZE_STEP = 0.7
_MAX_COAST = 2
_EPS = 1e-9


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking thresholds; times in seconds so they hold at any frame rate."""

    iou_threshold: float = 0.3
    max_missed_s: float = 1.0
    min_visitor_s: float = 1.0
    min_hits: int = 3
    best_observations: int = 3
    centre_fallback: float = 0.5  # max centre distance / predicted box diagonal; 0 disables
    high_score: float = 0.5  # detections below only continue live tracks
    min_confident_hits: int = 2  # confident matches a visitor needs (weak ones only extend it)
    attribute_min_face_px: float = 0.0  # shorter box side a face needs before attributes are estimated
    min_gender_score: float = 0.0  # one agreeing vote this sure names a track's gender (agreed_gender)
    presence_frames: int = 1  # a track matched within this many frames counts as a face in view

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed_s <= 0:
            raise ValueError(f"max_missed_s must be > 0, got {self.max_missed_s}")
        if self.min_visitor_s < 0:
            raise ValueError(f"min_visitor_s must be >= 0, got {self.min_visitor_s}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.best_observations < 1:
            raise ValueError(f"best_observations must be >= 1, got {self.best_observations}")
        if self.centre_fallback < 0:
            raise ValueError(f"centre_fallback must be >= 0, got {self.centre_fallback}")
        if not 0.0 < self.high_score <= 1.0:
            raise ValueError(f"high_score must be in (0, 1], got {self.high_score}")
        if self.min_confident_hits < 1:
            raise ValueError(f"min_confident_hits must be >= 1, got {self.min_confident_hits}")
        if self.attribute_min_face_px < 0:
            raise ValueError(f"attribute_min_face_px must be >= 0, got {self.attribute_min_face_px}")
        if self.presence_frames < 1:
            raise ValueError(f"presence_frames must be >= 1, got {self.presence_frames}")
        if not 0.0 <= self.min_gender_score <= 1.0:
            raise ValueError(f"min_gender_score must be in [0, 1], got {self.min_gender_score}")


@dataclass(frozen=True)
class VisitorStarted:
    """A track just became a visitor. ``attributes`` are the combined estimates so far
    (may be None or still change); the aggregator only counts the start."""

    attributes: Attributes | None


@dataclass(frozen=True)
class VisitorEnded:
    """A visitor track ended: how long it was seen and its settled, combined attributes."""

    dwell_s: float
    attributes: Attributes | None


@dataclass(frozen=True)
class AttributeRequest:
    """Run the attribute models on ``detection`` (this frame) and hand the result back
    with ``Tracker.add_attributes(track_key, ...)``. ``track_key`` is internal: never publish it."""

    track_key: int
    detection: Detection


@dataclass(frozen=True)
class TrackerUpdate:
    """What one frame (or a flush) changed.

    ``active`` is the number of faces in view (tracks matched or started in the
    last ``presence_frames`` frames, tentative ones included): the concurrency
    the aggregator reports as ``faces``. ``frame`` is False for :meth:`Tracker.flush`, which is
    not a frame and must not lower the mean concurrency.
    """

    new_visitors: tuple[VisitorStarted, ...] = ()
    ended: tuple[VisitorEnded, ...] = ()
    active: int = 0
    needs_attributes: tuple[AttributeRequest, ...] = ()
    frame: bool = True


def quality(detection: Detection) -> float:
    """How useful a crop is for attribute models: bigger and surer faces win."""
    return detection.area * detection.score


def _vote(labels: Sequence[tuple[str, float | None]], weighted: bool) -> tuple[str, float | None] | None:
    """Winner among (label, score) votes and the mean score of its voters.

    ``weighted``: votes weigh their score (None weighs 1); otherwise most frequent
    wins and ties go to the larger summed score. Remaining ties go to the label
    that sorts first so the result never depends on order.
    """
    if not labels:
        return None
    count: Counter[str] = Counter()
    summed: dict[str, float] = {}
    for label, score in labels:
        count[label] += 1
        summed[label] = summed.get(label, 0.0) + (1.0 if score is None else score)
    if weighted:
        ranked = sorted(count, key=lambda lab: (-summed[lab], -count[lab], lab))
    else:
        ranked = sorted(count, key=lambda lab: (-count[lab], -summed[lab], lab))
    winner = ranked[0]
    scores = [s for lab, s in labels if lab == winner and s is not None]
    return winner, (sum(scores) / len(scores) if scores else None)


# A track's gender comes from its kept observations' estimates (its votes). It is published only
# when they agree: at least this share of them names the winner, and either one of the winner's
# votes reaches ``min_gender_score``, or at least ``AGREEING_VOTES`` of them average
# ``AGREEING_SCORE``. On utkface-dev adults (948 crops, upright and turned 30 degrees), a single
# int8 estimate scoring 0.7-0.8 was right 79% of the time, 0.8-0.9 93% (models/README.md,
# "Gender you can rely on"): three such votes that agree are stronger evidence than one vote at
# 0.8, and one vote at 0.85 contradicted by the others is weaker.
AGREEMENT = 0.75
AGREEING_VOTES = 3
AGREEING_SCORE = 0.65


def agreed_gender(votes: Sequence[tuple[str, float | None]], min_score: float) -> tuple[str, float | None] | None:
    """The gender a track's votes agree on, with the mean score of its voters; None when they
    disagree or are too unsure (see ``AGREEMENT``). A vote without a score counts as sure."""
    winner = _vote(votes, weighted=True)
    if winner is None:
        return None
    scores = [1.0 if s is None else s for label, s in votes if label == winner[0]]
    if len(scores) < AGREEMENT * len(votes):
        return None
    sure = max(scores) >= min_score
    agreeing = len(scores) >= AGREEING_VOTES and sum(scores) / len(scores) >= AGREEING_SCORE
    return winner if sure or agreeing else None


def combine_attributes(observations: Iterable[Attributes], min_gender_score: float = 0.0) -> Attributes | None:
    """One estimate per person from several crops: gender from agreeing votes
    (``agreed_gender``), age by mean, expression and ethnicity by vote (ties by summed score).

    Each winner's score is the mean score of the observations that voted for it. Returns None
    when there is nothing to combine.
    """
    obs = list(observations)
    if not obs:
        return None
    ages = [a.age for a in obs if a.age is not None]
    gender = agreed_gender([(a.gender, a.gender_score) for a in obs if a.gender is not None], min_gender_score)
    expression = _vote([(a.expression, a.expression_score) for a in obs if a.expression is not None], weighted=False)
    ethnicity = _vote([(a.ethnicity, a.ethnicity_score) for a in obs if a.ethnicity is not None], weighted=False)
    return Attributes(
        age=sum(ages) / len(ages) if ages else None,
        gender=gender[0] if gender else None,
        gender_score=gender[1] if gender else None,
        expression=expression[0] if expression else None,
        expression_score=expression[1] if expression else None,
        ethnicity=ethnicity[0] if ethnicity else None,
        ethnicity_score=ethnicity[1] if ethnicity else None,
    )


def _same_size(a: Box, b: Box) -> bool:
    """Width and height each within ``_SIZE_STEP`` of each other: one face from frame to frame."""
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    return _SIZE_STEP * wb <= wa <= wb / _SIZE_STEP and _SIZE_STEP * hb <= ha <= hb / _SIZE_STEP


class _Observation:
    """One kept crop of a track: its quality and, once answered, its attributes."""

    __slots__ = ("number", "quality", "attributes")

    def __init__(self, number: int, quality: float) -> None:
        self.number = number
        self.quality = quality
        self.attributes: Attributes | None = None


class _Track:
    """Mutable per-track state; bounded: two boxes, <= k observations, a short request queue."""

    __slots__ = (
        "key",
        "first_seen",
        "last_seen",
        "box",
        "velocity",
        "coasted",
        "last_frame",
        "hits",
        "confident_hits",
        "visitor",
        "observations",
        "pending",
        "numbers",
    )

    def __init__(self, key: int, box: Box, now: float, frame: int, pending_cap: int) -> None:
        self.key = key
        self.first_seen = now
        self.last_seen = now
        self.last_frame = frame
        self.box = box
        self.velocity: tuple[float, float] | None = None  # box centre, px/s (smoothed); None until seen twice
        self.coasted = 0  # matches in a row whose box was of another size (predicted instead)
        self.hits = 1
        self.confident_hits = 1  # only a confident detection starts a track
        self.visitor = False
        self.observations: list[_Observation] = []
        self.pending: deque[int] = deque(maxlen=pending_cap)  # observation numbers awaiting attributes
        self.numbers = itertools.count()

    def predict(self, now: float) -> Box:
        """Where the face is now: the last box moved at the track's velocity, its size kept. Sizes
        are not extrapolated: a face half hidden behind a passer-by shrinks its box for a frame or
        two, and carrying that on made the predicted box collapse just as the face came back."""
        if self.velocity is None:
            return self.box
        dt = max(0.0, now - self.last_seen)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def hit(self, box: Box, now: float, frame: int, confident: bool) -> None:
        dt = now - self.last_seen
        if self.velocity is not None and not _same_size(box, self.box) and self.coasted < _MAX_COAST:
            # A face half hidden behind a passer-by gives a piece of its box, off centre: the track
            # goes on where its motion puts it instead, its velocity unchanged. A size change that
            # lasts (someone stepping up to the camera, a box clipped at the frame's edge) is taken.
            box = self.predict(now)
            self.coasted += 1
        elif self.coasted:
            self.coasted = 0  # the box is taken again; the step to it is not a velocity
        elif dt > 0:
            step = (
                ((box[0] + box[2]) - (self.box[0] + self.box[2])) / (2 * dt),
                ((box[1] + box[3]) - (self.box[1] + self.box[3])) / (2 * dt),
            )
            v, g = self.velocity, _VELOCITY_GAIN
            self.velocity = step if v is None else (g * step[0] + (1 - g) * v[0], g * step[1] + (1 - g) * v[1])
        self.box, self.last_seen, self.last_frame = box, now, frame
        self.hits += 1
        self.confident_hits += int(confident)

    def offer(self, q: float, k: int) -> bool:
        """Keep this observation if it enters the top-k by quality; True when it did."""
        if len(self.observations) >= k:
            worst = min(range(len(self.observations)), key=lambda i: self.observations[i].quality)
            if q <= self.observations[worst].quality:
                return False
            del self.observations[worst]
        number = next(self.numbers)
        self.observations.append(_Observation(number, q))
        self.pending.append(number)
        return True

    def attributes(self, min_gender_score: float) -> Attributes | None:
        return combine_attributes(
            (o.attributes for o in self.observations if o.attributes is not None), min_gender_score
        )


class Tracker:
    """Greedy IoU tracker with motion prediction; see the module docstring."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: dict[int, _Track] = {}
        self._keys = itertools.count(1)
        self._min_hits = max(2, self.config.min_hits)  # one frame is never a visitor
        self._pending_cap = _PENDING_FACTOR * self.config.best_observations
        self._frame = -1  # frames seen by update()

    @property
    def tracks(self) -> int:
        """Live tracks (tentative and visitors)."""
        return len(self._tracks)

    def held_observations(self, track_key: int) -> int:
        """Observations plus unanswered requests held for a track (0 when it ended)."""
        track = self._tracks.get(track_key)
        return 0 if track is None else len(track.observations) + len(track.pending)

    def update(self, detections: Sequence[Detection], now: float) -> TrackerUpdate:
        """Associate one frame's detections (``now``: monotonic seconds at capture)."""
        cfg = self.config
        self._frame += 1
        ended = self._expire(now)
        dets = [d for d in detections if d.area > 0 and all(math.isfinite(v) for v in d.box)]
        if len(dets) != len(detections):
            log.debug("ignored %d degenerate detections", len(detections) - len(dets))
        strong = [d for d in dets if d.score >= cfg.high_score]
        weak = [d for d in dets if d.score < cfg.high_score]
        tracks = list(self._tracks.values())
        matches = [(tracks[ti], strong[di]) for ti, di in self._associate(tracks, strong, now)]
        taken = {id(t) for t, _ in matches}
        leftover = [t for t in tracks if id(t) not in taken]
        matches += [(leftover[ti], weak[di]) for ti, di in self._associate(leftover, weak, now)]

        started: list[VisitorStarted] = []
        requests: list[AttributeRequest] = []
        matched: set[int] = set()
        for track, det in matches:
            matched.add(id(det))
            track.hit(det.box, now, self._frame, det.score >= cfg.high_score)
            if (
                not track.visitor
                and track.hits >= self._min_hits
                and track.confident_hits >= cfg.min_confident_hits
                and track.last_seen - track.first_seen >= cfg.min_visitor_s - _EPS
            ):
                track.visitor = True
                started.append(VisitorStarted(track.attributes(cfg.min_gender_score)))
            if self._describable(det) and track.offer(quality(det), cfg.best_observations):
                requests.append(AttributeRequest(track.key, det))
        for det in strong:
            if id(det) in matched:
                continue
            track = _Track(next(self._keys), det.box, now, self._frame, self._pending_cap)
            self._tracks[track.key] = track
            if self._describable(det) and track.offer(quality(det), cfg.best_observations):
                requests.append(AttributeRequest(track.key, det))
        active = sum(1 for t in self._tracks.values() if self._frame - t.last_frame < cfg.presence_frames)
        return TrackerUpdate(tuple(started), tuple(ended), active, tuple(requests))

    def _describable(self, det: Detection) -> bool:
        """The quality gate: attributes only from confident faces big enough to judge."""
        x1, y1, x2, y2 = det.box
        return det.score >= self.config.high_score and min(x2 - x1, y2 - y1) >= self.config.attribute_min_face_px

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

    def _end(self, track: _Track) -> VisitorEnded | None:
        if not track.visitor:
            return None
        return VisitorEnded(
            dwell_s=track.last_seen - track.first_seen, attributes=track.attributes(self.config.min_gender_score)
        )

    def _associate(self, tracks: list[_Track], dets: list[Detection], now: float) -> list[tuple[int, int]]:
        """Greedy matching: IoU on predicted boxes first, then the centre-distance fallback."""
        if not tracks or not dets:
            return []
        pred = np.array([t.predict(now) for t in tracks], dtype=np.float64)
        boxes = np.array([d.box for d in dets], dtype=np.float64)
        iou = iou_matrix(pred, boxes)
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        ti_idx, di_idx = np.nonzero(iou >= self.config.iou_threshold)
        for ti, di in sorted(zip(ti_idx.tolist(), di_idx.tolist()), key=lambda p: (-float(iou[p]), p)):
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        if self.config.centre_fallback <= 0 or len(used_t) == len(tracks) or len(used_d) == len(dets):
            return pairs
        free_t = [i for i in range(len(tracks)) if i not in used_t]
        free_d = [j for j in range(len(dets)) if j not in used_d]
        pc = (pred[free_t, :2] + pred[free_t, 2:]) / 2
        dc = (boxes[free_d, :2] + boxes[free_d, 2:]) / 2
        pwh = np.clip(pred[free_t, 2:] - pred[free_t, :2], 1e-9, None)
        dwh = np.clip(boxes[free_d, 2:] - boxes[free_d, :2], 1e-9, None)
        # A track with one box has no velocity yet, so where it went is less certain: a wider gate,
        # widening with every frame it was not seen (tiles searched in turns, a missed detection).
        gate = np.array(
            [
                self.config.centre_fallback
                * (1.0 if tracks[i].velocity is not None else 1.0 + max(1, self._frame - tracks[i].last_frame))
                for i in free_t
            ]
        )
        diag = np.hypot(pwh[:, 0], pwh[:, 1])
        dist = np.hypot(*(pc[:, None, :] - dc[None, :, :]).transpose(2, 0, 1)) / diag[:, None]
        ratio = np.prod(dwh, axis=1)[None, :] / np.prod(pwh, axis=1)[:, None]
        ok = (dist < gate[:, None]) & (ratio <= _FALLBACK_AREA_RATIO) & (ratio >= 1 / _FALLBACK_AREA_RATIO)
        cand = [(float(dist[a, b]), free_t[a], free_d[b]) for a, b in zip(*np.nonzero(ok))]
        for _, ti, di in sorted(cand):
            if ti not in used_t and di not in used_d:
                pairs.append((ti, di))
                used_t.add(ti)
                used_d.add(di)
        return pairs
