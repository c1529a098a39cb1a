"""Per-window aggregate counts with minimum-cell-size suppression.

Pure (no threads, no I/O, no clock): callers pass ``time.time()`` values in.
Nothing per person leaves this module: no boxes, track keys or per-person
timestamps, only counts and dwell statistics per window.

Windows
-------
Windows are aligned to the UTC wall clock: the window holding ``wall`` starts at
``floor(wall / window_s) * window_s``, so every device labels the same minute
alike. Windows are emitted in order, empty ones included (``visitors: 0``), with
``stream`` and ``seq`` left empty: the state store numbers them (``edge.state_store``).
Each is an ``edge.window.Window``.
``window.partial`` is true when this aggregator did not cover the whole window:
the first window after start-up, the window closed early by
:meth:`Aggregator.close`, and any window in which no frame was processed
(camera gone, clock jump): its zeros mean "not observed", not "nobody". A
forward clock jump of more than ``MAX_GAP_WINDOWS`` windows (e.g. NTP fixing an RTC-less board) is not filled
with empty windows; it is logged and counting resumes in the new window.

What is counted in a window
---------------------------
* ``visitors``: tracks that *became* visitors in the window.
* ``dwell_s``: visitor tracks that *ended* in the window (``n`` of them, mean,
  p50, p90 of their dwell; mean/p50/p90 are null when ``n`` is 0).
* ``gender``, ``age``, ``expression`` (and ``ethnicity`` only when enabled):
  the same ended visitors, with their combined attributes; a missing estimate
  counts as ``"unknown"``. Every breakdown therefore sums to ``dwell_s.n``.
* ``viewers`` (where attention is on): the same ended visitors who looked for at least
  ``attention.min_s`` (``edge.attention``); ``viewer_rate`` = viewers / ``dwell_s.n``;
  ``attention_s`` their attention time (sum, median); ``viewers_by`` the viewers by gender
  and age band where those are on. A visitor's attention never exceeds its dwell.
* ``people``, ``people_with_face``, ``passers_by``, ``stayers`` (where people are counted): the
  persons whose track ended in the window (``edge.people``: a person track, or a visitor whose face
  was never inside one); ``crossings`` of the counting line by them, ``zones`` occupancy per frame.
* ``faces``: peak and mean number of faces visible per processed frame.
* ``observed_s``: seconds of the window during which frames were processed
  (consecutive frames at most ``MAX_FRAME_GAP_S`` apart cover the time between
  them). A camera outage, a crash or a restart shows as a window whose
  ``observed_s`` falls short of its length: its counts cover only that time.

Minimum cell size k (``min_cell``)
----------------------------------
No published number may reveal a group of 1..k-1 people, directly or by
subtraction. Suppressed values are published as null and listed in
``"suppressed"`` by path (``"visitors"``, ``"gender.male"``, ...). Zero is safe.

1. ``visitors``: null when 1 <= visitors < k.
2. ``dwell_s``: n, mean, p50, p90 all null when 1 <= n < k.
3. Each breakdown has total n (= ``dwell_s.n``). If 1 <= n < k, every cell of
   it is null (zeros too: they would show what the few people were). Otherwise
   every cell with 1 <= count < k is null (primary suppression), and while the
   suppressed cells together hold fewer than k people, the smallest remaining
   non-zero cell is suppressed too (complementary suppression). Because n is
   published, ``n - sum(published cells)`` equals the sum of the suppressed
   cells, which is thus either 0 or >= k, and a lone suppressed cell never
   occurs. Breakdowns are separate margins (no cross-tabulation), so they
   cannot be subtracted from each other.
4. ``viewers``, ``viewer_rate``, ``attention_s`` and ``viewers_by`` (where attention is on):
   the same ended visitors split into viewers and the rest (``edge.viewers``).
5. The people cells: ``edge.people_cells`` (splits as viewers; crossings and zones as counts).
6. ``faces``: concurrency, not a head count, but a peak of 1..k-1 still says
   "this few people were here": peak and mean are both null then.

Not covered here: differencing across windows (e.g. a partial window and its
restarted twin), which is the consumer's policy.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config.fields import Check, Ctx, Invalid, integer, leaf, number
from edge.people import PeopleUpdate
from edge.people_cells import count_people, people_cells
from edge.people_config import PeopleConfig
from edge.records import Attributes
from edge.suppression import suppressed_cells
from edge.tracker import TrackerUpdate
from edge.viewers import attention_cells
from edge.window import VIEWER_BREAKDOWNS, Dwell, Faces, Span, Window
from edge.window_tally import Tally, percentile

log = logging.getLogger(__name__)

__all__ = ["suppressed_cells"]  # re-exported: rule 3, which the fleet side applies to its roll-ups too

UNKNOWN = "unknown"
GENDERS = ("female", "male")
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
ETHNICITIES = ("white", "black", "asian", "indian", "other")
MAX_GAP_WINDOWS = 1440  # longest run of empty windows emitted for one clock step
MAX_FRAME_GAP_S = 2.0  # frames further apart than this leave the time between unobserved


def _age_brackets(v: Any, ctx: Ctx) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise Invalid
    if any(not isinstance(a, int) or isinstance(a, bool) for a in v) or v[0] != 0:
        raise Invalid
    if any(b <= a for a, b in zip(v, v[1:])):
        raise Invalid
    return tuple(v)


@dataclass(frozen=True, kw_only=True)
class AggregationConfig:
    """Counting windows. ``window_s`` divides a day so windows align to midnight
    on every device; cells under ``min_cell`` visitors are suppressed."""

    window_s: int = leaf(
        60,
        integer(
            "a positive whole number of seconds that divides 86400 (e.g. 60, 300, 900, 3600)",
            lo=1,
            also=lambda s: 86400 % s == 0,
        ),
    )
    min_cell: int = leaf(5, integer("a visitor count >= 1", lo=1))
    age_brackets: tuple[int, ...] = leaf(
        (0, 18, 25, 35, 45, 55, 65), Check("a list of strictly increasing whole ages starting at 0", _age_brackets)
    )
    # How often the open window's counts so far are saved: an unclean stop loses at most this much.
    checkpoint_s: float = leaf(10.0, number("a number of seconds > 0", lo=0, lo_open=True))

    @property
    def age_labels(self) -> tuple[str, ...]:
        """Bracket labels: "0-17", "18-24", ..., "65+"."""
        b = self.age_brackets
        return tuple(f"{lo}-{hi - 1}" for lo, hi in zip(b, b[1:])) + (f"{b[-1]}+",)


def breakdown_cells(config: AggregationConfig, attributes: AttributesConfig) -> dict[str, tuple[str, ...]]:
    """Every cell of every breakdown the config switches on (``attributes``), in payload order: a
    window always carries all of them, so dashboards can be set up from the config alone."""
    cells: dict[str, tuple[str, ...]] = {}
    if attributes.gender:
        cells["gender"] = GENDERS + (UNKNOWN,)
    if attributes.age:
        cells["age"] = config.age_labels + (UNKNOWN,)
    if attributes.expression:
        cells["expression"] = EXPRESSIONS + (UNKNOWN,)
    if attributes.ethnicity:
        cells["ethnicity"] = ETHNICITIES + (UNKNOWN,)
    return cells


def age_label(age: float | None, config: AggregationConfig) -> str:
    """The bracket an age estimate falls in; "unknown" when there is none."""
    if age is None or not math.isfinite(age):
        return UNKNOWN
    labels = config.age_labels
    i = 0
    while i + 1 < len(config.age_brackets) and age >= config.age_brackets[i + 1]:
        i += 1
    return labels[i]


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Aggregator:
    """Accumulates tracker updates into wall-clock windows and publishes safe counts."""

    def __init__(
        self,
        config: AggregationConfig,
        attributes: AttributesConfig,
        attention: AttentionConfig,
        device: str,
        site: str,
        people: PeopleConfig | None = None,
    ) -> None:
        self.config = config
        self.attributes = attributes  # which breakdowns a window has
        self.attention = attention  # whether it has viewers, and who is one
        self.people = people if people is not None and people.enabled else None  # None: no people keys
        self.device = device
        self.site = site
        self._last_frame: float | None = None  # wall time of the last processed frame
        self._open: Tally | None = None
        self._ready: list[Window] = []
        self._closed = False
        self._cells = breakdown_cells(config, attributes)

    def observe(self, update: TrackerUpdate, wall: float, people: PeopleUpdate | None = None) -> None:
        """Count one tracker update (and, where people are counted, the people tracker's update of
        the same frame) into the window holding ``wall``."""
        if self._closed:
            raise RuntimeError("aggregator is closed")
        if update.frame:
            if self._last_frame is not None and 0.0 < wall - self._last_frame <= MAX_FRAME_GAP_S:
                self._cover(self._last_frame, wall)
            self._last_frame = wall
        w = self._advance(wall)
        w.visitors += len(update.new_visitors)
        if update.frame:
            w.frames += 1
            w.face_sum += update.active
            w.peak = max(w.peak, update.active)
        for ended in update.ended:
            w.dwell.append(max(0.0, ended.dwell_s))
            labels = self._labels(ended.attributes)
            for name, label in labels.items():
                w.breakdowns.setdefault(name, Counter())[label] += 1
            if self.attention.enabled and (ended.attention_s or 0.0) >= self.attention.min_s:
                w.looked.append(min(float(ended.attention_s or 0.0), max(0.0, ended.dwell_s)))
                for name in VIEWER_BREAKDOWNS:
                    if name in labels:
                        w.viewer_breakdowns.setdefault(name, Counter())[labels[name]] += 1
        if self.people is not None:
            count_people(w.people, update, people)

    def _cover(self, start: float, end: float) -> None:
        """Count [start, end) as observed, split at window boundaries (windows finish on the way)."""
        t = start
        while t < end:
            w = self._advance(t)
            stop = min(end, (w.index + 1) * self.config.window_s)
            if stop <= t:  # the clock went back: the open window is later than t
                break
            w.observed += stop - t
            t = stop

    def step_clock(self) -> None:
        """The wall clock was stepped (NTP correcting a board without a real-time clock): close the
        open window now as partial, and count on in the window holding the next frame's new wall
        time, without filling the gap (forward) or counting into a window of the old clock (back)."""
        if self._closed or self._open is None:
            return
        w, self._open = self._open, None
        w.partial = True
        self._ready.append(self._payload(w))
        self._last_frame = None

    def snapshot(self) -> Window | None:
        """The open window's payload as if it closed now (partial, suppressed, not numbered):
        the durable checkpoint a run that dies without closing it leaves for the next run."""
        if self._open is None or self._closed:
            return None
        copy = self._open.copy()
        copy.partial = True
        return self._payload(copy)

    def tick(self, wall: float) -> list[Window]:
        """Every window that ended at or before ``wall``, oldest first."""
        if not self._closed:
            self._advance(wall)
        out, self._ready = self._ready, []
        return out

    def close(self, wall: float) -> Window:
        """Publish the open window early with ``partial: true`` (shutdown).

        Call ``tick(wall)`` first: windows that ended before ``wall`` stay queued
        for a later ``tick`` (they come before the returned payload).
        """
        if self._closed:
            raise RuntimeError("aggregator is closed")
        w = self._advance(wall)
        self._closed = True
        self._open = None
        w.partial = True
        return self._payload(w)

    def _advance(self, wall: float) -> Tally:
        """Finish windows that ended by ``wall`` and return the one to count into."""
        index = math.floor(wall / self.config.window_s)
        if self._open is None:
            self._open = Tally(index, partial=wall > index * self.config.window_s)
            return self._open
        w = self._open
        if index < w.index:
            log.debug(
                "wall clock went back %.1f s; counting into the open window", w.index * self.config.window_s - wall
            )
            return w
        if index > w.index:
            self._ready.append(self._payload(w))
            gap = index - w.index - 1
            if gap > MAX_GAP_WINDOWS:
                log.warning("wall clock jumped %d windows ahead; not emitting empty windows for the gap", gap)
            else:
                self._ready.extend(self._payload(Tally(i, partial=False)) for i in range(w.index + 1, index))
            self._open = Tally(index, partial=False)
        return self._open

    def _labels(self, attrs: Attributes | None) -> dict[str, str]:
        """The breakdown cell of each enabled attribute for one ended visitor."""
        a = attrs or Attributes()

        def known(value: str | None, allowed: tuple[str, ...]) -> str:
            return value if value in allowed else UNKNOWN

        labels = {}
        if self.attributes.gender:
            labels["gender"] = known(a.gender, GENDERS)
        if self.attributes.age:
            labels["age"] = age_label(a.age, self.config)
        if self.attributes.expression:
            labels["expression"] = known(a.expression, EXPRESSIONS)
        if self.attributes.ethnicity:
            labels["ethnicity"] = known(a.ethnicity, ETHNICITIES)
        return labels

    def _payload(self, w: Tally) -> Window:
        """The window with rule-based suppression applied, not yet numbered."""
        k = self.config.min_cell
        suppressed: list[str] = []

        def guard(path: str, value: int) -> int | None:
            if 1 <= value < k:
                suppressed.append(path)
                return None
            return value

        visitors = guard("visitors", w.visitors)

        faces = Faces(w.peak, round(w.face_sum / w.frames, 2) if w.frames else 0.0)
        if 1 <= w.peak < k:
            faces = Faces(None, None)
            suppressed += ["faces.peak", "faces.mean"]

        n = len(w.dwell)
        dwell = Dwell(n, None, None, None)
        if 1 <= n < k:
            dwell = Dwell(None, None, None, None)
            suppressed += ["dwell_s.n", "dwell_s.mean", "dwell_s.p50", "dwell_s.p90"]
        elif n:
            values = sorted(w.dwell)
            dwell = Dwell(
                n,
                round(sum(values) / n, 2),
                round(percentile(values, 50), 2),
                round(percentile(values, 90), 2),
            )

        breakdowns: dict[str, dict[str, int | None]] = {}
        counted: dict[str, dict[str, int]] = {}
        hidden_paths: list[str] = []
        hidden_cells: dict[str, set[str]] = {}
        for name, labels in self._cells.items():
            counts = w.breakdowns.get(name, Counter())
            cells = counted[name] = {label: counts.get(label, 0) for label in labels}
            hidden = hidden_cells[name] = suppressed_cells(cells, k)
            breakdowns[name] = {c: (None if c in hidden else v) for c, v in cells.items()}
            hidden_paths += [f"{name}.{c}" for c in labels if c in hidden]
        people = None
        if self.people is not None:  # in payload order: people come after dwell_s, before viewers
            people, people_paths = people_cells(w.people, self.people, k)
            suppressed += people_paths
        attention = None
        if self.attention.enabled:
            split = {name: counted[name] for name in VIEWER_BREAKDOWNS if name in counted}
            attention, viewer_paths = attention_cells(w.looked, n, w.viewer_breakdowns, split, hidden_cells, k)
            suppressed += viewer_paths  # viewers come before the breakdowns
        suppressed += hidden_paths

        start = w.index * self.config.window_s
        return Window(
            device=self.device,
            site=self.site,
            span=Span(_iso(start), _iso(start + self.config.window_s), w.partial or w.frames == 0),
            observed_s=round(min(w.observed, self.config.window_s), 1),
            visitors=visitors,
            faces=faces,
            dwell=dwell,
            breakdowns=breakdowns,
            suppressed=tuple(suppressed),
            attention=attention,
            people=people,
        )
