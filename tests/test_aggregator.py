"""Aggregator windows, payload schema and minimum-cell-size suppression."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.aggregator import (
    ETHNICITIES,
    EXPRESSIONS,
    AggregationConfig,
    Aggregator,
    age_label,
    suppressed_cells,
)
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config import ConfigError
from edge.records import Attributes
from edge.settings import parse_config
from edge.tracker import TrackerUpdate, VisitorEnded, VisitorStarted

NOON = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
TOP_KEYS = [
    "schema",
    "device",
    "site",
    "stream",
    "seq",
    "window",
    "observed_s",
    "visitors",
    "faces",
    "dwell_s",
    "viewers",
    "viewer_rate",
    "attention_s",
    "viewers_by",
    "gender",
    "age",
    "expression",
    "suppressed",
]
ATTENTION_KEYS = ["viewers", "viewer_rate", "attention_s", "viewers_by"]


class Published:
    """An aggregator whose windows come out in their published form (``Window.to_payload``): the
    JSON these tests check, key by key."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def observe(self, update: TrackerUpdate, wall: float) -> None:
        self.aggregator.observe(update, wall)

    def step_clock(self) -> None:
        self.aggregator.step_clock()

    def tick(self, wall: float) -> list[dict[str, Any]]:
        return [w.to_payload() for w in self.aggregator.tick(wall)]

    def close(self, wall: float) -> dict[str, Any]:
        return self.aggregator.close(wall).to_payload()

    def snapshot(self) -> dict[str, Any] | None:
        w = self.aggregator.snapshot()
        return None if w is None else w.to_payload()


BREAKDOWN_SWITCHES = ("gender", "age", "expression", "ethnicity")  # from the attributes section


def agg(*, attention: AttentionConfig | None = None, **kw: Any) -> Published:
    switches = {k: kw.pop(k) for k in BREAKDOWN_SWITCHES if k in kw}
    looking = attention or AttentionConfig()
    return Published(
        Aggregator(AggregationConfig(**kw), AttributesConfig(**switches), looking, device="lobby-1", site="hq")
    )


def started(n: int) -> tuple[VisitorStarted, ...]:
    return tuple(VisitorStarted(None) for _ in range(n))


def ended(*attrs: Attributes | None, dwell: float = 10.0, looked: float | None = None) -> tuple[VisitorEnded, ...]:
    return tuple(VisitorEnded(dwell, a, attention_s=looked) for a in attrs)


def test_windows_align_to_utc_wall_clock() -> None:
    a = agg()
    a.observe(TrackerUpdate(active=1), NOON + 30.5)
    assert a.tick(NOON + 59.999) == []
    (p,) = a.tick(NOON + 60.0)
    assert p["window"] == {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:01:00Z", "partial": True}
    assert p["stream"] is None and p["seq"] is None  # the state store numbers windows


def test_window_started_on_a_boundary_is_complete() -> None:
    a = agg(window_s=300)
    a.observe(TrackerUpdate(), NOON + 600)
    (p,) = a.tick(NOON + 900)
    assert p["window"] == {"start": "2024-05-01T12:10:00Z", "end": "2024-05-01T12:15:00Z", "partial": False}


def test_empty_windows_are_emitted_in_order() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(new_visitors=started(2), active=2), NOON + 10)
    a.observe(TrackerUpdate(new_visitors=started(1), active=1), NOON + 200)  # rolls over 12:00..12:02
    out = a.tick(NOON + 250)
    out += a.tick(NOON + 245)  # clock went back: nothing new
    out += a.tick(NOON + 300)
    assert [p["window"]["start"][11:16] for p in out] == ["12:00", "12:01", "12:02", "12:03", "12:04"]
    assert [p["visitors"] for p in out] == [2, 0, 0, 1, 0]
    # 12:00 started mid-window; 12:01, 12:02 and 12:04 saw no processed frame, so their zeros
    # are "not observed" (partial), unlike 12:03, which was watched.
    assert [p["window"]["partial"] for p in out] == [True, True, True, False, True]
    assert out[1]["faces"] == {"peak": 0, "mean": 0.0}


def test_close_publishes_partial_window() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(new_visitors=started(1), active=1), NOON)
    assert a.tick(NOON + 59) == []
    a.observe(TrackerUpdate(ended=ended(Attributes())), NOON + 70)  # in the next window
    assert [p["window"]["start"] for p in a.tick(NOON + 75)] == ["2024-05-01T12:00:00Z"]
    p = a.close(NOON + 80)
    assert p["window"]["partial"] is True
    assert p["window"]["start"] == "2024-05-01T12:01:00Z" and p["window"]["end"] == "2024-05-01T12:02:00Z"
    assert p["dwell_s"]["n"] == 1
    with pytest.raises(RuntimeError):
        a.observe(TrackerUpdate(), NOON + 81)


def test_close_without_observations_still_publishes_an_empty_window() -> None:
    p = agg().close(NOON + 5)
    assert p["visitors"] == 0 and p["window"]["partial"] is True and p["suppressed"] == []


def test_large_clock_jump_is_not_filled_with_empty_windows() -> None:
    a = agg()
    a.observe(TrackerUpdate(), 0.0)  # RTC-less board before NTP
    out = a.tick(NOON)
    assert len(out) == 1 and out[0]["window"]["start"] == "1970-01-01T00:00:00Z"
    (p,) = a.tick(NOON + 60)
    assert p["window"]["start"] == "2024-05-01T12:00:00Z"


def test_payload_schema_is_exact() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(new_visitors=started(1), active=1), NOON)
    a.observe(TrackerUpdate(ended=ended(Attributes(age=30.0, gender="female", expression="happy")), active=2), NOON + 1)
    (p,) = a.tick(NOON + 60)
    assert list(p) == TOP_KEYS
    assert p == {
        "schema": 4,
        "device": "lobby-1",
        "site": "hq",
        "stream": None,
        "seq": None,
        "window": {"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T12:01:00Z", "partial": False},
        "observed_s": 1.0,  # two frames a second apart
        "visitors": 1,
        "faces": {"peak": 2, "mean": 1.5},
        "dwell_s": {"n": 1, "mean": 10.0, "p50": 10.0, "p90": 10.0},
        "viewers": 0,  # the visitor's attention time is unknown: not a viewer
        "viewer_rate": 0.0,
        "attention_s": {"sum": 0.0, "median": None},
        "viewers_by": {
            "gender": {"female": 0, "male": 0, "unknown": 0},
            "age": {"0-17": 0, "18-24": 0, "25-34": 0, "35-44": 0, "45-54": 0, "55-64": 0, "65+": 0, "unknown": 0},
        },
        "gender": {"female": 1, "male": 0, "unknown": 0},
        "age": {"0-17": 0, "18-24": 0, "25-34": 1, "35-44": 0, "45-54": 0, "55-64": 0, "65+": 0, "unknown": 0},
        "expression": {
            "neutral": 0,
            "happy": 1,
            "sad": 0,
            "angry": 0,
            "fearful": 0,
            "disgusted": 0,
            "surprised": 0,
            "unknown": 0,
        },
        "suppressed": [],
    }


def test_ethnicity_only_when_enabled() -> None:
    white = ended(*[Attributes(ethnicity="white")] * 6)
    for enabled in (False, True):
        a = agg(ethnicity=enabled)
        a.observe(TrackerUpdate(ended=white), NOON)
        (p,) = a.tick(NOON + 60)
        assert ("ethnicity" in p) is enabled
        assert list(p) == TOP_KEYS[:-1] + (["ethnicity"] if enabled else []) + ["suppressed"]
    assert p["ethnicity"] == {"white": 6, "black": 0, "asian": 0, "indian": 0, "other": 0, "unknown": 0}


def test_unknown_and_unrecognised_values_count_as_unknown() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(ended=ended(None, Attributes(gender="other", expression="bored"))), NOON)
    (p,) = a.tick(NOON + 60)
    assert p["gender"]["unknown"] == 2 and p["age"]["unknown"] == 2 and p["expression"]["unknown"] == 2


def test_age_brackets() -> None:
    c = AggregationConfig()
    assert c.age_labels == ("0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
    assert [age_label(x, c) for x in (-1.0, 0.0, 17.9, 18.0, 64.99, 65.0, 104.0, None)] == [
        "0-17",
        "0-17",
        "0-17",
        "18-24",
        "55-64",
        "65+",
        "65+",
        "unknown",
    ]


def test_dwell_statistics() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(ended=tuple(VisitorEnded(float(d), None) for d in range(1, 11))), NOON)
    (p,) = a.tick(NOON + 60)
    assert p["dwell_s"] == {"n": 10, "mean": 5.5, "p50": 5.5, "p90": 9.1}


def test_flush_update_does_not_count_as_a_frame() -> None:
    a = agg(min_cell=1)
    a.observe(TrackerUpdate(active=4), NOON)
    a.observe(TrackerUpdate(active=2), NOON + 1)
    a.observe(TrackerUpdate(frame=False), NOON + 2)
    (p,) = a.tick(NOON + 60)
    assert p["faces"] == {"peak": 4, "mean": 3.0}


def test_small_counts_are_suppressed_with_complement() -> None:
    a = agg(min_cell=5)
    a.observe(TrackerUpdate(new_visitors=started(3), active=3), NOON)
    people = [Attributes(gender="female", age=30.0, expression="happy")] * 7 + [
        Attributes(gender="male", age=30.0, expression="happy")
    ] * 3
    a.observe(TrackerUpdate(ended=ended(*people)), NOON + 1)
    (p,) = a.tick(NOON + 60)
    assert p["visitors"] is None
    assert p["faces"] == {"peak": None, "mean": None}
    assert p["dwell_s"]["n"] == 10
    # male=3 alone would follow from n - female: female is suppressed as its complement.
    assert p["gender"] == {"female": None, "male": None, "unknown": 0}
    assert p["age"]["25-34"] == 10 and p["expression"]["happy"] == 10
    assert p["suppressed"] == ["visitors", "faces.peak", "faces.mean", "gender.female", "gender.male"]


def test_small_total_suppresses_whole_breakdown_and_dwell() -> None:
    a = agg(min_cell=5)
    a.observe(TrackerUpdate(ended=ended(*[Attributes(gender="female")] * 4)), NOON)
    (p,) = a.tick(NOON + 60)
    assert p["dwell_s"] == {"n": None, "mean": None, "p50": None, "p90": None}
    assert set(p["gender"].values()) == {None} and set(p["expression"].values()) == {None}
    assert "dwell_s.n" in p["suppressed"] and "gender.male" in p["suppressed"]


def test_suppressed_cells_rule() -> None:
    assert suppressed_cells({"a": 0, "b": 0}, 5) == set()
    assert suppressed_cells({"a": 4, "b": 0}, 5) == {"a", "b"}  # total < k
    assert suppressed_cells({"a": 10, "b": 5, "c": 0}, 5) == set()
    assert suppressed_cells({"a": 10, "b": 6, "c": 1}, 5) == {"c", "b"}  # complement: smallest non-zero
    assert suppressed_cells({"a": 10, "b": 3, "c": 3}, 5) == {"b", "c"}  # 3 + 3 >= k: enough
    assert suppressed_cells({"a": 10, "b": 1, "c": 1, "d": 6}, 5) == {"b", "c", "d"}  # 1 + 1 < k


def test_aggregation_settings_are_checked_where_the_config_is_read() -> None:
    base = {"device_id": "t", "source": {"type": "file", "path": "clip.mp4"}}
    for key, bad in (("window_s", 0), ("min_cell", 0), ("age_brackets", [18, 25]), ("age_brackets", [0, 25, 25])):
        with pytest.raises(ConfigError, match=rf"aggregation\.{key}: expected"):
            parse_config({**base, "aggregation": {key: bad}})


# ---- property: no published number reveals a group of 1..k-1 people -------------------------------

_attributes = st.builds(
    Attributes,
    age=st.one_of(st.none(), st.floats(0, 99)),
    gender=st.sampled_from(["female", "male", None]),
    expression=st.sampled_from(list(EXPRESSIONS) + [None]),
    ethnicity=st.sampled_from(list(ETHNICITIES) + [None]),
)


def _walk_keys(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in [prefix + k, *_walk_keys(v, prefix + k + ".")]]
    return []


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(2, 10),
    ethnicity=st.booleans(),
    people=st.lists(_attributes, max_size=40),
    n_started=st.one_of(st.none(), st.integers(0, 40)),  # None: the same people started in the window
    active=st.lists(st.integers(0, 12), max_size=8),
    looks=st.lists(st.one_of(st.none(), st.floats(0, 3)), max_size=40),  # attention seconds per person
)
def test_no_published_number_reveals_a_small_group(
    k: int, ethnicity: bool, people: list[Attributes], n_started: int | None, active: list[int], looks: list
) -> None:
    config = AggregationConfig(min_cell=k)
    a = Published(Aggregator(config, AttributesConfig(ethnicity=ethnicity), AttentionConfig(), device="d", site="s"))
    visitors = len(people) if n_started is None else n_started
    for i, n in enumerate(active):
        a.observe(TrackerUpdate(active=n), NOON + i)
    looked = [looks[i] if i < len(looks) else None for i in range(len(people))]
    gone = tuple(VisitorEnded(3.0, x, attention_s=t) for x, t in zip(people, looked))
    a.observe(TrackerUpdate(new_visitors=started(visitors), ended=gone), NOON + 30)
    (p,) = a.tick(NOON + 60)

    # Exact shape, and nothing per person in it.
    assert list(p) == TOP_KEYS[:-1] + (["ethnicity"] if ethnicity else []) + ["suppressed"]
    for path in _walk_keys(p):
        leaf = path.rsplit(".", 1)[-1]
        assert "track" not in leaf and "box" not in leaf and leaf != "id" and not leaf.endswith("_id")

    def small(v: int | None) -> bool:
        return v is not None and 1 <= v < k

    assert not small(p["visitors"]) and not small(p["dwell_s"]["n"]) and not small(p["faces"]["peak"])
    if p["visitors"] is not None:
        assert p["visitors"] == visitors

    truth = {
        "gender": Counter(x.gender or "unknown" for x in people),
        "age": Counter(age_label(x.age, config) for x in people),
        "expression": Counter(x.expression or "unknown" for x in people),
        "ethnicity": Counter(x.ethnicity or "unknown" for x in people),
    }
    published_totals = {t for t in (p["dwell_s"]["n"], p["visitors"]) if t is not None}
    for name in ("gender", "age", "expression") + (("ethnicity",) if ethnicity else ()):
        cells = p[name]
        shown = {c: v for c, v in cells.items() if v is not None}
        hidden = [c for c, v in cells.items() if v is None]
        assert all(not small(v) for v in shown.values())
        assert all(v == truth[name][c] for c, v in shown.items())
        assert sorted(f"{name}.{c}" for c in hidden) == sorted(s for s in p["suppressed"] if s.startswith(name + "."))
        if not hidden or not shown:
            continue  # nothing hidden, or the whole breakdown hidden
        # Subtracting the shown cells from any published total must not pin down a hidden cell,
        # nor reveal a hidden group of 1..k-1 people.
        for total in published_totals:
            if total != len(people):
                continue  # not this breakdown's total (e.g. visitors started != visitors ended)
            rest = total - sum(shown.values())
            assert len(hidden) >= 2
            assert rest == 0 or rest >= k
            assert all(truth[name][c] != rest for c in hidden if truth[name][c] >= 1) or rest == 0

    # Viewers split the ended visitors in two: neither side, nor any cell of either side that the
    # published numbers give, may be a group of 1..k-1 (edge.viewers).
    viewer = [x for x, t in zip(people, looked) if t is not None and t >= 1.0]
    assert not small(p["viewers"])
    if p["viewers"] is None:
        assert p["viewer_rate"] is None and set(p["attention_s"].values()) == {None}
        assert all(v is None for cells in p["viewers_by"].values() for v in cells.values())
    else:
        assert p["viewers"] == len(viewer) and not small(len(people) - len(viewer))
        assert p["attention_s"]["sum"] <= 3.0 * len(people)  # attention never exceeds dwell
    mine = {
        "gender": Counter(x.gender or "unknown" for x in viewer),
        "age": Counter(age_label(x.age, config) for x in viewer),
    }
    for name, cells in p["viewers_by"].items():
        shown = {c: v for c, v in cells.items() if v is not None}
        assert all(v == mine[name][c] for c, v in shown.items())
        for c, v in shown.items():
            assert not small(v)
            if v:  # a cell's viewers and its visitors give those who did not look
                assert p[name][c] is not None and not small(p[name][c] - v)
        if p["viewers"] is not None:
            assert not small(p["viewers"] - sum(shown.values()))
            others = len(people) - p["viewers"]
            known = {c: p[name][c] - v for c, v in shown.items() if p[name][c] is not None}
            assert not small(others - sum(known.values()))


def frames(a: Published, start: float, end: float, fps: float) -> None:
    n = round((end - start) * fps)
    for i in range(n + 1):
        a.observe(TrackerUpdate(), start + i / fps)


def test_observed_seconds_show_where_frames_were_processed() -> None:
    a = agg(window_s=60)
    frames(a, NOON + 10, NOON + 70, fps=5)  # from 12:00:10 into the next window
    frames(a, NOON + 100, NOON + 110, fps=5)  # then a 30 s camera outage, then 10 s more
    (first,) = a.tick(NOON + 60.1)
    assert first["observed_s"] == 50.0 and first["window"]["partial"] is True  # started 10 s in
    (second,) = a.tick(NOON + 125)
    assert second["observed_s"] == 20.0 and second["window"]["partial"] is False  # 10 + 10 of 60 s
    (empty,) = a.tick(NOON + 185)
    assert empty["observed_s"] == 0.0 and empty["window"]["partial"] is True


def test_frames_far_apart_do_not_count_the_time_between() -> None:
    a = agg(window_s=60)  # frames more than MAX_FRAME_GAP_S (2 s) apart leave the time between unobserved
    for t in range(0, 60, 3):  # one frame every 3 s: each frame is an island
        a.observe(TrackerUpdate(), NOON + t)
    (p,) = a.tick(NOON + 61)
    assert p["observed_s"] == 0.0


def test_snapshot_is_the_open_window_as_if_closed_now_and_changes_nothing() -> None:
    a = agg(window_s=60, min_cell=1)
    assert a.snapshot() is None
    frames(a, NOON, NOON + 20, fps=2)
    a.observe(TrackerUpdate(new_visitors=started(3), active=3), NOON + 20.5)
    snap = a.snapshot()
    assert snap is not None and snap["seq"] is None
    assert snap["window"]["partial"] is True and snap["visitors"] == 3 and snap["observed_s"] == 20.5
    (p,) = a.tick(NOON + 61)
    assert p["visitors"] == 3 and p["window"]["partial"] is False  # the snapshot took nothing


def test_snapshot_is_suppressed_like_a_published_window() -> None:
    a = agg(window_s=60, min_cell=5)
    a.observe(TrackerUpdate(new_visitors=started(2), active=2), NOON)
    snap = a.snapshot()
    assert snap is not None and snap["visitors"] is None and "visitors" in snap["suppressed"]


def test_a_forward_clock_step_closes_the_window_without_a_burst_of_empty_ones() -> None:
    a = agg(window_s=60, min_cell=1)
    a.observe(TrackerUpdate(new_visitors=started(2), active=2), NOON + 10)
    a.step_clock()  # NTP moved the clock an hour ahead
    a.observe(TrackerUpdate(new_visitors=started(1), active=1), NOON + 3610)
    out = a.tick(NOON + 3700)
    assert [(p["window"]["start"], p["window"]["partial"], p["visitors"]) for p in out] == [
        ("2024-05-01T12:00:00Z", True, 2),  # closed early by the step
        ("2024-05-01T13:00:00Z", True, 1),  # counting resumed mid-window on the new clock
    ]


def test_a_backward_clock_step_closes_the_window_and_counts_on_in_the_earlier_one() -> None:
    a = agg(window_s=60, min_cell=1)
    a.observe(TrackerUpdate(new_visitors=started(2), active=2), NOON + 3610)
    a.step_clock()  # the board booted an hour fast; NTP set it back
    a.observe(TrackerUpdate(new_visitors=started(1), active=1), NOON + 10)
    (first,) = a.tick(NOON + 30)
    assert (first["window"]["start"], first["window"]["partial"], first["visitors"]) == (
        "2024-05-01T13:00:00Z",
        True,
        2,
    )
    (second,) = a.tick(NOON + 61)  # the new clock's window closes on the new clock, a minute later
    assert (second["window"]["start"], second["visitors"]) == ("2024-05-01T12:00:00Z", 1)
