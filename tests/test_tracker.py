"""Tracker behaviour, driven by explicit monotonic timestamps (no sleeping)."""

from __future__ import annotations

import dataclasses

import pytest

from edge.attention import AttentionConfig
from edge.attributes import AttributesConfig
from edge.config import ConfigError
from edge.detector import DetectorConfig
from edge.records import Attributes, Detection
from edge.settings import parse_config
from edge.tracker import (
    AttributeRequest,
    Tracker,
    TrackerUpdate,
    TrackingConfig,
    VisitorEnded,
    VisitorStarted,
    combine_attributes,
)

FPS = 10.0
DT = 1.0 / FPS


def face(cx: float, cy: float, size: float = 40.0, score: float = 0.9) -> Detection:
    h = size / 2
    return Detection((cx - h, cy - h, cx + h, cy + h), score)


class Run:
    """Feeds frames to a tracker and collects everything it reports."""

    def __init__(
        self,
        config: TrackingConfig | None = None,
        *,
        tile_interval: int = 1,
        min_face_px: int = 0,
        min_gender_score: float = 0.0,
        attention: AttentionConfig | None = None,
    ) -> None:
        """The tracker alone: presence counted per frame, no quality gate, no gender threshold,
        unless a test sets them (in the daemon they come from the detector and attributes sections)."""
        detector = DetectorConfig(tile_interval=tile_interval)
        attributes = AttributesConfig(min_face_px=min_face_px, min_gender_score=min_gender_score)
        self.tracker = Tracker(config or TrackingConfig(), detector, attributes, attention or AttentionConfig())
        self.started: list[VisitorStarted] = []
        self.ended: list[VisitorEnded] = []
        self.requests: list[AttributeRequest] = []
        self.updates: list[TrackerUpdate] = []

    def frame(self, t: float, *dets: Detection) -> TrackerUpdate:
        u = self.tracker.update(list(dets), t)
        self.updates.append(u)
        self.started += u.new_visitors
        self.ended += u.ended
        self.requests += u.needs_attributes
        return u

    def idle(self, t0: float, seconds: float) -> float:
        """Empty frames from t0 for ``seconds``; returns the next frame time."""
        n = round(seconds * FPS)
        for i in range(n):
            self.frame(t0 + i * DT)
        return t0 + n * DT


def test_moving_face_is_one_visitor() -> None:
    run = Run()
    for i in range(30):  # 3 s walking right at 5 px/frame
        run.frame(i * DT, face(100 + 5 * i, 200))
    run.idle(30 * DT, 2.0)
    assert len(run.started) == 1
    assert len(run.ended) == 1
    assert run.tracker.tracks == 0


def test_one_frame_false_positive_is_not_a_visitor() -> None:
    # Even the laxest settings never turn a single frame into a visitor.
    for config in (TrackingConfig(), TrackingConfig(min_visitor_s=0.0, min_hits=1)):
        run = Run(config)
        run.frame(0.0, face(300, 300))
        run.idle(DT, 3.0)
        run.tracker.flush(10.0)
        assert run.started == [] and run.ended == []


def test_short_tracks_below_min_visitor_s_vanish_silently() -> None:
    run = Run()
    for i in range(5):  # 0.4 s, 5 hits
        run.frame(i * DT, face(100, 100))
    run.idle(5 * DT, 2.0)
    assert run.started == [] and run.ended == []
    assert run.tracker.flush(10.0).ended == ()


def test_face_missing_for_a_few_frames_stays_one_track() -> None:
    run = Run()
    t = 0.0
    for i in range(10):
        run.frame(t, face(100 + 3 * i, 100))
        t += DT
    t = run.idle(t, 0.7)  # < max_missed_s; the face keeps walking meanwhile
    for i in range(17, 30):
        run.frame(t, face(100 + 3 * i, 100))
        last = t
        t += DT
    run.idle(t, 2.0)
    assert len(run.started) == 1
    assert len(run.ended) == 1
    assert run.ended[0].dwell_s == pytest.approx(last, abs=DT)


def test_gap_longer_than_max_missed_starts_a_new_track() -> None:
    run = Run()
    for i in range(15):
        run.frame(i * DT, face(100, 100))
    t = run.idle(15 * DT, 1.5)
    for i in range(15):
        run.frame(t + i * DT, face(100, 100))
    run.idle(t + 15 * DT, 2.0)
    assert len(run.started) == 2 and len(run.ended) == 2


def test_two_faces_crossing_paths_stay_two_visitors() -> None:
    run = Run()
    owner: dict[int, set[str]] = {}
    for i in range(40):
        score = 0.5 + 0.01 * i  # quality rises every frame, so every frame asks for attributes
        a = face(100 + 20 * i, 200, score=score)  # walks right
        b = face(880 - 20 * i, 205, score=score)  # walks left; at i = 20 each is where the other was
        u = run.frame(i * DT, a, b)
        assert u.active == 2
        for r in u.needs_attributes:
            owner.setdefault(r.track_key, set()).add("a" if r.detection is a else "b")
    run.idle(40 * DT, 2.0)
    assert len(run.started) == 2 and len(run.ended) == 2
    assert sorted(map(frozenset, owner.values())) == [frozenset("a"), frozenset("b")]


def test_a_face_that_passes_behind_another_stays_one_visitor() -> None:
    """As a crowd shows it: the face behind is cut to a sliver for two frames (its box shrinks on
    the side the passer-by covers), hidden for three, then whole again where it walked to. The
    track goes on: its predicted box keeps its size (a size extrapolated from the shrinking boxes
    collapsed to nothing and a second visitor was counted) and its velocity is smoothed."""
    run = Run()
    size, speed = 60.0, 220.0  # px, px/s: about a third of a face per frame at 10 fps
    for i in range(40):
        t = i * DT
        cx = 100 + speed * t
        behind = face(cx, 300, size)
        front = face(1000 - speed * t, 305, size, score=0.95)
        x1, y1, x2, y2 = behind.box
        fx1, fx2 = front.box[0], front.box[2]
        covered = max(0.0, min(x2, fx2) - max(x1, fx1))
        if covered > 0.75 * size:
            run.frame(t, front)  # hidden
        elif covered > 0:  # the uncovered part: left of the front face before it passes, right after
            part = (x1, y1, fx1, y2) if fx1 > x1 else (fx2, y1, x2, y2)
            run.frame(t, front, Detection(part, 0.6))
        else:
            run.frame(t, front, behind)
    run.idle(40 * DT, 2.0)
    assert len(run.started) == 2 and len(run.ended) == 2


def test_a_face_that_steps_up_to_the_camera_is_followed_at_its_new_size() -> None:
    """A box of another size is taken for a piece of the face for two matches at most: a size change
    that lasts (someone stepping closer between two detections) is the face, and the track follows."""
    run = Run()
    for i in range(10):
        run.frame(i * DT, face(300, 300, 40))
    for i in range(10, 30):
        run.frame(i * DT, face(300, 300, 64))  # closer now: sides 1.6x as long
    for i in range(30, 50):
        run.frame(i * DT, face(300 + 150 * (i - 29) * DT, 300, 64))  # and walks on
    assert run.tracker.tracks == 1
    run.idle(50 * DT, 2.0)
    assert len(run.started) == 1 and len(run.ended) == 1


@pytest.mark.parametrize("speed", [24.0, 30.0, 45.0])
def test_fast_small_face_is_one_visitor(speed: float) -> None:
    # IoU between consecutive 40 px boxes is < 0.3 at these speeds: prediction and
    # the centre-distance fallback have to carry the track.
    run = Run()
    for i in range(20):
        run.frame(i * DT, face(50 + speed * i, 300))
    run.idle(20 * DT, 2.0)
    assert len(run.started) == 1 and len(run.ended) == 1


def test_far_apart_detections_are_not_merged() -> None:
    run = Run()
    for i in range(20):
        run.frame(i * DT, face(100, 100), face(400, 100))
    run.idle(20 * DT, 2.0)
    assert len(run.ended) == 2


def test_dwell_within_one_frame_period() -> None:
    run = Run()
    t0 = 1000.0
    for i in range(41):  # visible from t0 to t0 + 4.0 s
        run.frame(t0 + i * DT, face(200, 200))
    run.idle(t0 + 41 * DT, 2.0)
    (ended,) = run.ended
    assert abs(ended.dwell_s - 4.0) <= DT


def test_visitor_starts_after_min_visitor_s_and_min_hits() -> None:
    run = Run(TrackingConfig(min_visitor_s=1.0, min_hits=3))
    for i in range(10):
        assert run.frame(i * DT, face(100, 100)).new_visitors == ()
    assert len(run.frame(10 * DT, face(100, 100)).new_visitors) == 1  # 1.0 s seen
    assert run.frame(11 * DT, face(100, 100)).new_visitors == ()


def test_active_counts_concurrent_faces() -> None:
    run = Run()
    assert run.frame(0.0, face(100, 100), face(300, 100), face(500, 100)).active == 3
    assert run.frame(DT, face(100, 100)).active == 1
    assert run.frame(2 * DT).active == 0


def test_requests_only_for_top_k_observations() -> None:
    run = Run(TrackingConfig(best_observations=3))
    qualities = [5, 4, 3, 1, 2, 6, 3.5, 4.5]
    asked = []
    for i, q in enumerate(qualities):
        u = run.frame(i * DT, face(100, 100, score=0.5 + q / 20))  # all confident; quality ranks by q
        asked += [round((r.detection.score - 0.5) * 20, 3) for r in u.needs_attributes]
        for r in u.needs_attributes:
            run.tracker.add_attributes(r.track_key, Attributes(age=30.0))
    # 5, 4, 3 fill the top 3; 1 and 2 never beat 3; 6 evicts 3; 3.5 loses to 4; 4.5 evicts 4.
    assert asked == [5, 4, 3, 6, 4.5]


def test_requests_stop_and_state_stays_bounded_over_long_dwell() -> None:
    k = 3
    run = Run(TrackingConfig(best_observations=k))
    key = None
    for i in range(10_000):
        u = run.frame(i * DT, face(100, 100))
        for r in u.needs_attributes:
            key = r.track_key
            run.tracker.add_attributes(r.track_key, Attributes(age=40.0))
    assert len(run.requests) == k  # constant quality: only the first k ever enter
    assert key is not None and run.tracker.held_observations(key) == k
    assert len(run.started) == 1


def test_state_bounded_when_quality_keeps_improving_and_nobody_answers() -> None:
    k = 3
    run = Run(TrackingConfig(best_observations=k))
    key = None
    for i in range(10_000):
        u = run.frame(i * DT, face(100, 100, score=0.5 + i * 4e-5))
        assert len(u.needs_attributes) == 1  # each frame beats the worst kept one
        key = u.needs_attributes[0].track_key
    assert key is not None
    assert run.tracker.held_observations(key) <= 5 * k  # k observations + bounded request queue


def test_attributes_are_combined_from_kept_observations() -> None:
    run = Run(TrackingConfig(best_observations=2))
    answers = [
        Attributes(age=20.0, gender="male", gender_score=0.9, expression="sad", expression_score=0.5),
        Attributes(age=30.0, gender="female", gender_score=0.6, expression="happy", expression_score=0.9),
        Attributes(age=40.0, gender="female", gender_score=0.7, expression="happy", expression_score=0.8),
    ]
    scores = [0.5, 0.7, 0.9]  # the third evicts the first; later frames (0.6) never enter
    for i in range(20):
        u = run.frame(i * DT, face(100, 100, score=scores[i] if i < 3 else 0.6))
        for r in u.needs_attributes:
            run.tracker.add_attributes(r.track_key, answers[i])
    run.idle(20 * DT, 2.0)
    (ended,) = run.ended
    assert ended.attributes == Attributes(
        age=35.0,
        gender="female",
        gender_score=pytest.approx(0.65),
        expression="happy",
        expression_score=pytest.approx(0.85),
    )


def test_skipped_requests_keep_answers_aligned() -> None:
    run = Run(TrackingConfig(best_observations=3, min_visitor_s=0.2))
    reqs = [run.frame(i * DT, face(100, 100, score=0.5 + 0.1 * i)).needs_attributes[0] for i in range(3)]
    run.tracker.add_attributes(reqs[0].track_key, None)  # skipped
    run.tracker.add_attributes(reqs[1].track_key, Attributes(age=10.0))
    run.tracker.add_attributes(reqs[2].track_key, Attributes(age=20.0))
    run.tracker.add_attributes(reqs[2].track_key, Attributes(age=99.0))  # no request left: ignored
    (ended,) = run.tracker.flush(1.0).ended
    assert ended.attributes is not None and ended.attributes.age == 15.0


def test_answers_for_ended_tracks_are_ignored() -> None:
    run = Run()
    req = run.frame(0.0, face(100, 100)).needs_attributes[0]
    run.idle(DT, 2.0)
    run.tracker.add_attributes(req.track_key, Attributes(age=30.0))
    assert run.tracker.held_observations(req.track_key) == 0


def test_combine_votes() -> None:
    obs = [
        Attributes(
            age=20.0,
            gender="male",
            gender_score=0.55,
            expression="sad",
            expression_score=0.9,
            ethnicity="asian",
            ethnicity_score=0.6,
        ),
        Attributes(
            age=30.0,
            gender="male",
            gender_score=0.55,
            expression="happy",
            expression_score=0.6,
            ethnicity="white",
            ethnicity_score=0.9,
        ),
        Attributes(
            age=None,
            gender="female",
            gender_score=0.95,
            expression="happy",
            expression_score=0.5,
            ethnicity="asian",
            ethnicity_score=0.7,
        ),
        Attributes(age=40.0, gender=None, expression="sad", expression_score=0.3),
    ]
    c = combine_attributes(obs)
    assert c is not None
    assert c.age == pytest.approx(30.0)  # mean of known ages
    assert c.gender is None  # two votes against one: they do not agree (AGREEMENT)
    assert c.expression == "sad"  # 2 votes each; summed score 1.2 > 1.1
    assert (c.ethnicity, c.ethnicity_score) == ("asian", pytest.approx(0.65))  # 2 votes beat 1
    assert combine_attributes([]) is None
    assert combine_attributes([Attributes()]) == Attributes()


def test_gender_needs_votes_that_agree() -> None:
    male, female = Attributes(gender="male", gender_score=0.9), Attributes(gender="female", gender_score=0.9)
    assert combine_attributes([male] * 3).gender == "male"  # type: ignore[union-attr]
    assert combine_attributes([male] * 3 + [female]).gender == "male"  # type: ignore[union-attr]  # 3 of 4
    assert combine_attributes([male] * 2 + [female]).gender is None  # type: ignore[union-attr]  # 2 of 3
    # The score-weighted winner must also hold the share: 0.99 outweighs two votes of 0.3, but is one of three.
    obs = [Attributes(gender="male", gender_score=0.3)] * 2 + [Attributes(gender="female", gender_score=0.99)]
    assert combine_attributes(obs).gender is None  # type: ignore[union-attr]


def test_a_face_seen_every_third_frame_stays_in_view_between() -> None:
    run = Run(tile_interval=3)
    for i in range(30):
        u = run.frame(i * DT, *([face(100 + i, 100)] if i % 3 == 0 else []))
        assert u.active == 1, i
    assert len(run.started) == 1
    run.idle(30 * DT, 0.3)  # three empty frames: no longer in view
    assert run.updates[-1].active == 0


def test_unsure_gender_needs_three_agreeing_votes() -> None:
    one = Attributes(age=30.0, gender="female", gender_score=0.7)
    assert combine_attributes([one, one], min_gender_score=0.8) == Attributes(age=30.0)  # two unsure votes
    assert combine_attributes([one] * 3, min_gender_score=0.8) == Attributes(
        age=30.0, gender="female", gender_score=pytest.approx(0.7)
    )
    coin = Attributes(age=30.0, gender="female", gender_score=0.6)
    assert combine_attributes([coin] * 5, min_gender_score=0.8) == Attributes(age=30.0)  # mean under 0.65
    # One sure vote names the gender when the others do not contradict it ...
    sure = Attributes(age=30.0, gender="male", gender_score=0.85)
    assert combine_attributes([sure], min_gender_score=0.8).gender == "male"  # type: ignore[union-attr]
    assert combine_attributes([sure, sure, sure, coin], min_gender_score=0.8).gender == "male"  # type: ignore[union-attr]
    # ... and not when they do: one sure vote against three unsure ones is no agreement.
    unsure_male = Attributes(age=30.0, gender="male", gender_score=0.6)
    mixed = [unsure_male] * 3 + [Attributes(gender="female", gender_score=0.85)]
    assert combine_attributes(mixed, min_gender_score=0.8) == Attributes(age=30.0)


def test_visitor_seen_only_with_unsure_gender_ends_with_gender_unknown() -> None:
    run = Run(min_gender_score=0.8)
    for i in range(15):
        for r in run.frame(i * DT, face(100, 100)).needs_attributes:
            run.tracker.add_attributes(r.track_key, Attributes(age=25.0, gender="female", gender_score=0.6))
    run.idle(15 * DT, 2.0)
    (ended,) = run.ended
    assert ended.attributes == Attributes(age=25.0)


def test_visitor_whose_votes_agree_ends_with_their_gender() -> None:
    run = Run(min_gender_score=0.8)
    answered = 0
    for i in range(15):
        for r in run.frame(i * DT, face(100 + i, 100, 40 + i)).needs_attributes:
            answered += 1
            run.tracker.add_attributes(r.track_key, Attributes(age=25.0, gender="female", gender_score=0.7))
    run.idle(15 * DT, 2.0)
    (ended,) = run.ended
    assert answered >= 3
    assert ended.attributes == Attributes(age=25.0, gender="female", gender_score=pytest.approx(0.7))


def test_flush_ends_all_tracks() -> None:
    run = Run()
    for i in range(20):
        run.frame(i * DT, face(100, 100), face(400, 100), *([face(700, 100)] if i == 19 else []))
    assert run.tracker.tracks == 3
    u = run.tracker.flush(20 * DT)
    assert len(u.ended) == 2  # the tentative third face vanishes silently
    assert u.frame is False and u.active == 0 and u.new_visitors == () and u.needs_attributes == ()
    assert all(e.dwell_s == pytest.approx(19 * DT) for e in u.ended)
    assert run.tracker.tracks == 0


def test_track_keys_never_leave_in_visitor_records() -> None:
    for record in (VisitorStarted, VisitorEnded, TrackerUpdate):
        names = {f.name for f in dataclasses.fields(record)}
        assert not any("key" in n or "box" in n or "id" in n for n in names), names


def test_tracking_settings_are_checked_where_the_config_is_read() -> None:
    base = {"device_id": "t", "source": {"type": "file", "path": "clip.mp4"}}
    for key, value in (("iou_threshold", 0.0), ("max_missed_s", 0.0), ("best_observations", 0)):
        with pytest.raises(ConfigError, match=rf"tracking\.{key}: expected"):
            parse_config({**base, "tracking": {key: value}})
