"""One tracked face's state and how tracks meet this frame's detections (association).

Used by ``edge.tracker``, and by ``edge.people`` for person tracks (``Motion``, ``associate``). A
track is bounded (two boxes, at most k kept observations, a short queue of unanswered attribute
requests) so memory stays flat however long someone stays.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from edge.attention import Gaze
from edge.attribute_votes import combine_attributes
from edge.boxes import iou_matrix
from edge.records import Attributes

Box = tuple[float, float, float, float]

# Centre-distance fallback also requires areas within this factor of each other,
# so a small face cannot be "matched" to a large one next to it.
_FALLBACK_AREA_RATIO = 4.0
# Weight of the newest centre step in a track's velocity: a box's jitter moves it by 0.3 of the jitter.
_VELOCITY_GAIN = 0.3
# A box narrower or shorter than this fraction of the track's last one (or wider or taller than its
# inverse) is a piece of the face or two faces merged, not the face moving (on the development clips
# at 0.75x, 1x and 2x no side of 358 frame-to-frame pairs changed by more than 21%); for at most
# _MAX_COAST matches in a row the track is predicted instead.
_SIZE_STEP = 0.7
_MAX_COAST = 2


def _same_size(a: Box, b: Box) -> bool:
    """Width and height each within ``_SIZE_STEP`` of each other: one face from frame to frame."""
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    return _SIZE_STEP * wb <= wa <= wb / _SIZE_STEP and _SIZE_STEP * hb <= ha <= hb / _SIZE_STEP


class Observation:
    """One kept crop of a track: its quality and, once answered, its attributes."""

    __slots__ = ("number", "quality", "attributes")

    def __init__(self, number: int, quality: float) -> None:
        self.number = number
        self.quality = quality
        self.attributes: Attributes | None = None


class Motion:
    """Where one tracked thing is and how it moves: its last box, smoothed velocity and sightings.
    Face tracks (``Track``) and person tracks (``edge.people``) both build on it."""

    __slots__ = ("key", "first_seen", "last_seen", "box", "velocity", "coasted", "last_frame", "hits", "confident_hits")

    def __init__(self, key: int, box: Box, now: float, frame: int) -> None:
        self.key = key
        self.first_seen = now
        self.last_seen = now
        self.last_frame = frame
        self.box = box
        self.velocity: tuple[float, float] | None = None  # box centre, px/s (smoothed); None until seen twice
        self.coasted = 0  # matches in a row whose box was of another size (predicted instead)
        self.hits = 1
        self.confident_hits = 1  # only a confident detection starts a track

    def predict(self, now: float) -> Box:
        """Where the thing is now: the last box moved at the track's velocity, its size kept. Sizes
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


class Track(Motion):
    """A face track: its motion, and bounded per-face state (<= k observations, a short request
    queue, its gaze, whether it was ever seen inside a person's box)."""

    __slots__ = ("visitor", "observations", "pending", "numbers", "gaze", "in_person")

    def __init__(self, key: int, box: Box, now: float, frame: int, pending_cap: int) -> None:
        super().__init__(key, box, now, frame)
        self.visitor = False
        self.observations: list[Observation] = []
        self.pending: deque[int] = deque(maxlen=pending_cap)  # observation numbers awaiting attributes
        self.numbers = itertools.count()
        self.gaze = Gaze()
        self.in_person = False  # seen inside a counted person's box (edge.people): one human, one count

    def offer(self, q: float, k: int) -> bool:
        """Keep this observation if it enters the top-k by quality; True when it did."""
        if len(self.observations) >= k:
            worst = min(range(len(self.observations)), key=lambda i: self.observations[i].quality)
            if q <= self.observations[worst].quality:
                return False
            del self.observations[worst]
        number = next(self.numbers)
        self.observations.append(Observation(number, q))
        self.pending.append(number)
        return True

    def attributes(self, min_gender_score: float) -> Attributes | None:
        return combine_attributes(
            (o.attributes for o in self.observations if o.attributes is not None), min_gender_score
        )


class Boxed(Protocol):
    @property
    def box(self) -> Box: ...


def associate(
    tracks: Sequence[Motion],
    dets: Sequence[Boxed],
    now: float,
    frame: int,
    iou_threshold: float,
    centre_fallback: float,
) -> list[tuple[int, int]]:
    """Greedy matching of (track, detection) index pairs: IoU on predicted boxes first, then the
    centre-distance fallback (``centre_fallback`` x the predicted box diagonal; 0 disables it)."""
    if not tracks or not dets:
        return []
    pred = np.array([t.predict(now) for t in tracks], dtype=np.float64)
    boxes = np.array([d.box for d in dets], dtype=np.float64)
    iou = iou_matrix(pred, boxes)
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_d: set[int] = set()
    ti_idx, di_idx = np.nonzero(iou >= iou_threshold)
    for ti, di in sorted(zip(ti_idx.tolist(), di_idx.tolist()), key=lambda p: (-float(iou[p]), p)):
        if ti not in used_t and di not in used_d:
            pairs.append((ti, di))
            used_t.add(ti)
            used_d.add(di)
    if centre_fallback <= 0 or len(used_t) == len(tracks) or len(used_d) == len(dets):
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
            centre_fallback * (1.0 if tracks[i].velocity is not None else 1.0 + max(1, frame - tracks[i].last_frame))
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
