"""People counting (edge.people, edge.people_cells): person tracks driven through time by hand, one
human counted once with the face tracker, crossings, zones, and the minimum-cell rule on every
people cell of a window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.aggregator import AggregationConfig, Aggregator
from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config.errors import ConfigError
from edge.detector import DetectorConfig
from edge.people import PeopleTracker, PeopleUpdate, PersonEnded
from edge.people_config import LineConfig, PeopleConfig
from edge.records import Detection, PersonDetection
from edge.settings import parse_config
from edge.tracker import Tracker, TrackerUpdate, TrackingConfig, VisitorEnded

W, H = 640, 480
FPS = 10.0
NOON = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
# A door line across the lower middle of the frame; "in" is below it on screen.
DOOR = LineConfig(start=(0.2, 0.6), end=(0.8, 0.6), in_side="right")


def person(cx: float, feet: float, score: float = 0.8, w: float = 80, h: float = 240) -> PersonDetection:
    return PersonDetection((cx - w / 2, feet - h, cx + w / 2, feet), score)


def walk(
    people: PeopleTracker, paths: Sequence[Sequence[tuple[float, float] | None]], start: float = 0.0
) -> list[PersonEnded]:
    """Feed one frame per step: each path gives a person's (centre x, feet y) or None (not seen)."""
    ended: list[PersonEnded] = []
    steps = max(len(p) for p in paths)
    for i in range(steps):
        seen = [person(*p[i]) for p in paths if i < len(p) and p[i] is not None]
        ended += people.update(seen, start + i / FPS, (W, H)).ended
    return ended + list(people.flush(start + steps / FPS).ended)


def line_path(x0: float, y0: float, x1: float, y1: float, n: int) -> list[tuple[float, float]]:
    return [(x0 + (x1 - x0) * i / (n - 1), y0 + (y1 - y0) * i / (n - 1)) for i in range(n)]


def test_a_person_walking_through_counts_once_and_one_detection_never_counts() -> None:
    people = PeopleTracker(PeopleConfig())
    (ended,) = walk(people, [line_path(100, 300, 500, 320, 30), [None] * 10 + [(600, 460)]])
    assert ended.dwell_s == pytest.approx(2.9)
    assert not ended.with_face and ended.ins == ended.outs == 0  # no line configured


def test_a_short_track_is_no_person_and_a_gap_under_max_missed_keeps_one_track() -> None:
    people = PeopleTracker(PeopleConfig(min_s=0.5))
    assert walk(people, [line_path(100, 300, 140, 300, 4)]) == []  # 0.3 s: too short
    path: list[tuple[float, float] | None] = list(line_path(100, 300, 500, 300, 40))
    path[10:22] = [None] * 12  # 1.2 s unseen: within max_missed_s (1.5)
    assert len(walk(PeopleTracker(PeopleConfig()), [path])) == 1
    path[10:27] = [None] * 17  # 1.7 s: the track ended, and a new one started
    assert len(walk(PeopleTracker(PeopleConfig()), [path])) == 2


def test_weak_boxes_continue_a_person_but_never_start_one() -> None:
    config = PeopleConfig()
    people = PeopleTracker(config)
    weak = 0.6 * config.score_threshold
    for i in range(20):
        people.update([person(100 + 5 * i, 300, score=weak)], i / FPS, (W, H))
    assert people.tracks == 0
    strong_then_weak = [person(100 + 5 * i, 300, score=0.8 if i < 3 else weak) for i in range(20)]
    ended: list[PersonEnded] = []
    for i, p in enumerate(strong_then_weak):
        ended += people.update([p], i / FPS, (W, H)).ended
    ended += people.flush(2.0).ended
    assert len(ended) == 1 and ended[0].dwell_s == pytest.approx(1.9)


def test_crossings_count_each_way_on_the_segment_only() -> None:
    people = PeopleTracker(PeopleConfig(line=DOOR))
    down = line_path(320, 200, 320, 420, 20)  # feet cross y = 0.6 * 480 = 288, going down: in
    up = line_path(330, 420, 330, 200, 20)
    beside = line_path(600, 200, 600, 420, 20)  # x = 0.94: past the door's end
    (a,) = walk(people, [down + up])
    assert (a.ins, a.outs) == (1, 1)
    (b,) = walk(PeopleTracker(PeopleConfig(line=DOOR)), [beside])
    assert (b.ins, b.outs) == (0, 0)
    flipped = PeopleTracker(PeopleConfig(line=LineConfig(start=DOOR.start, end=DOOR.end, in_side="left")))
    (c,) = walk(flipped, [down])
    assert (c.ins, c.outs) == (0, 1)


def test_standing_on_the_line_with_jitter_counts_nothing() -> None:
    people = PeopleTracker(PeopleConfig(line=DOOR))
    feet = 0.6 * H
    jitter = [(320.0, feet + (4 if i % 2 else -4)) for i in range(40)]  # +-4 px: inside the dead band
    (p,) = walk(people, [line_path(320, 150, 320, feet - 4, 10) + jitter])
    assert (p.ins, p.outs) == (0, 0)


def test_zone_occupancy_counts_people_standing_in_it() -> None:
    left = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    people = PeopleTracker(PeopleConfig(zones=(("left", left), ("all", ((0, 0), (1, 0), (1, 1), (0, 1))))))
    zones = []
    for i in range(10):
        u = people.update([person(100, 400), person(500, 400)], i / FPS, (W, H))
        zones.append(u.zones)
    assert zones[0] == (0, 0)  # not yet people: one sighting
    assert zones[-1] == (1, 2)
    assert people.expire(5.0).zones is None  # not a person frame


class Counting:
    """The daemon's order on one frame: people first, faces against the people's boxes, then the
    visitors' faces back to the people; both updates into one aggregator (k = 1)."""

    def __init__(self) -> None:
        self.people = PeopleTracker(PeopleConfig())
        self.faces = Tracker(TrackingConfig(), DetectorConfig(), AttributesConfig(), AttentionConfig(enabled=False))
        self.agg = Aggregator(
            AggregationConfig(min_cell=1), AttributesConfig(), AttentionConfig(enabled=False), "d", "s", PeopleConfig()
        )

    def frame(self, persons: list[PersonDetection], faces: list[Detection], now: float) -> None:
        pu = self.people.update(persons, now, (W, H))
        fu = self.faces.update(faces, now, self.people.boxes(now))
        self.people.link(fu.visitor_faces, now)
        self.agg.observe(fu, NOON + now, pu)

    def window(self, end: float) -> dict[str, Any]:
        self.agg.observe(self.faces.flush(end), NOON + end, self.people.flush(end))
        return self.agg.tick(NOON + 60)[0].to_payload()


def test_a_face_inside_a_person_is_one_human_and_a_face_alone_is_a_person_too() -> None:
    counting = Counting()
    for i in range(30):
        x = 100 + 10 * i  # a body, its face near the top of its box; and a face alone
        faces = [Detection((x - 15, 170, x + 15, 205), 0.9), Detection((560, 40, 600, 80), 0.9)]
        counting.frame([person(x, 400)], faces, i / FPS)
    p = counting.window(3.0)
    assert p["dwell_s"]["n"] == 2  # two visitors
    assert (p["people"], p["people_with_face"]) == (2, 2)  # the walker once, the face alone once


def test_people_counting_off_leaves_no_people_keys_and_config_errors_name_the_key() -> None:
    off = Aggregator(AggregationConfig(), AttributesConfig(), AttentionConfig(), "d", "s", PeopleConfig(enabled=False))
    off.observe(TrackerUpdate(), NOON)
    assert not {"people", "crossings", "zones"} & set(off.close(NOON + 1).to_payload())
    base: dict[str, Any] = {"device_id": "d", "source": {"type": "file", "path": "x.mp4"}}
    config = parse_config({**base, "people": {"line": {"start": [0.1, 0.5], "end": [0.9, 0.5]}}})
    assert config.people.enabled and config.people.line is not None and config.people.line.in_side == "left"
    for people, path in [
        ({"line": {"start": [0.1, 0.5], "end": [0.1, 0.5]}}, "people.line.end"),
        ({"line": {"start": [0.1, 1.5], "end": [0.9, 0.5]}}, "people.line.start"),
        ({"zones": {"Door": [[0, 0], [1, 0], [1, 1]]}}, "people.zones"),
        ({"zones": {"door": [[0, 0], [1, 1], [0.5, 0.5]]}}, "people.zones"),
        ({"every_frames": 0}, "people.every_frames"),
        ({"counting": True}, "people.counting"),
    ]:
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            parse_config({**base, "people": people})


_ended = st.builds(
    PersonEnded,
    dwell_s=st.sampled_from([0.5, 3.0, 9.9, 10.0, 60.0]),
    with_face=st.booleans(),
    ins=st.integers(0, 2),
    outs=st.integers(0, 2),
    together=st.sampled_from([1, 1, 1, 2]),
)


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(2, 10),
    persons=st.lists(_ended, max_size=30),
    face_only=st.lists(st.sampled_from([0.5, 12.0]), max_size=12),  # visitors never inside a person
    in_person=st.integers(0, 5),  # visitors seen inside a person: counted by their person
    zones=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=6),
    line=st.booleans(),
)
def test_no_published_people_number_reveals_a_small_group(
    k: int,
    persons: list[PersonEnded],
    face_only: list[float],
    in_person: int,
    zones: list[tuple[int, int]],
    line: bool,
) -> None:
    square = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    config = PeopleConfig(line=DOOR if line else None, zones=(("a", square), ("b", square)))
    agg = Aggregator(AggregationConfig(min_cell=k), AttributesConfig(), AttentionConfig(), "d", "s", config)
    for i, z in enumerate(zones):
        agg.observe(TrackerUpdate(), NOON + i, PeopleUpdate(zones=z))
    visitors = tuple(VisitorEnded(d, None) for d in face_only) + tuple(
        VisitorEnded(5.0, None, in_person=True) for _ in range(in_person)
    )
    agg.observe(TrackerUpdate(ended=visitors), NOON + 30, PeopleUpdate(ended=tuple(persons)))
    (w,) = agg.tick(NOON + 60)
    p = w.to_payload()

    def small(v: int | None) -> bool:
        return v is not None and 1 <= v < k

    n = sum(x.together for x in persons) + len(face_only)
    faced = sum(x.together for x in persons if x.with_face) + len(face_only)
    stay = sum(x.together for x in persons if x.dwell_s >= config.min_dwell_s)
    stay += sum(d >= config.min_dwell_s for d in face_only)
    assert p["people"] in (None, n) and not small(p["people"])
    if p["people"] is None:
        assert p["people_with_face"] is None and p["passers_by"] is None and p["stayers"] is None
    for shown, truth in [(p["people_with_face"], faced), (p["stayers"], stay), (p["passers_by"], n - stay)]:
        if shown is not None:  # a split is published only where neither side is a small group
            assert shown == truth and not small(shown) and not small(n - shown)
    assert (p["passers_by"] is None) == (p["stayers"] is None)
    if line:
        ins, outs = sum(x.ins for x in persons), sum(x.outs for x in persons)
        assert p["crossings"]["in"] in (None, ins) and p["crossings"]["out"] in (None, outs)
        assert not small(p["crossings"]["in"]) and not small(p["crossings"]["out"])
        assert (p["crossings"]["in"] is None) == small(ins)
    else:
        assert "crossings" not in p
    for i, name in enumerate(("a", "b")):
        zone = p["zones"][name]
        peak = max((z[i] for z in zones), default=0)
        assert zone["peak"] in (None, peak) and not small(zone["peak"])
        assert (zone["mean"] is None) == (zone["peak"] is None) == small(peak)
    nulls = {
        path
        for path in _null_paths(p)
        if path.split(".")[0] in {"people", "people_with_face", "passers_by", "stayers", "crossings", "zones"}
    }
    assert nulls == {
        s
        for s in p["suppressed"]
        if s.split(".")[0] in {"people", "people_with_face", "passers_by", "stayers", "crossings", "zones"}
    }


def _null_paths(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [q for k, v in obj.items() for q in _null_paths(v, prefix + k + ".")]
    return [prefix[:-1]] if obj is None else []


def test_a_flickering_box_is_no_person_and_a_face_is_never_given_to_a_tentative_track() -> None:
    people = PeopleTracker(PeopleConfig())
    ended: list[PersonEnded] = []
    for i in range(30):  # a box in one person frame of three, for 3 s: never sure half the time
        seen = [person(300, 400)] if i % 3 == 0 else []
        ended += people.update(seen, i / FPS, (W, H)).ended
        people.link([(7, (285.0, 170.0, 315.0, 205.0))], i / FPS)  # a visitor's face inside it
    assert ended + list(people.flush(3.0).ended) == []


def test_two_visitors_under_one_person_box_are_two_people() -> None:
    """Two people walking close together under one person box: their two faces make it two."""
    counting = Counting()
    for i in range(30):
        x = 100 + 10 * i
        pair = [Detection((x - 50, 170, x - 20, 205), 0.9), Detection((x + 20, 172, x + 50, 207), 0.9)]
        counting.frame([person(x, 400, w=160)], pair, i / FPS)
    p = counting.window(3.0)
    assert (p["dwell_s"]["n"], p["people"], p["people_with_face"]) == (2, 2, 2)


def test_a_visitor_counted_twice_in_one_person_makes_two_people() -> None:
    """The face tracker loses a face for longer than max_missed_s and counts it again; its person
    stays one track. A visitor is always also a person: people follow the visitors."""
    counting = Counting()
    for i in range(45):
        x = 100 + 5 * i
        seen = [] if 15 <= i < 28 else [Detection((x - 15, 170, x + 15, 205), 0.9)]  # 1.3 s without the face
        counting.frame([person(x, 400)], seen, i / FPS)
    p = counting.window(4.5)
    assert (p["visitors"], p["people"], p["people_with_face"]) == (2, 2, 2)
