"""Looking, attention time and viewers: the tracker's gaze per track and the window's viewers, driven
by explicit timestamps and poses (the pose itself is measured in tests/head_pose_eval.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from edge.aggregator import AggregationConfig, Aggregator
from edge.attention import AttentionConfig, ConeConfig, Gaze, OffsetConfig, looking
from edge.attributes import AttributesConfig
from edge.config import ConfigError
from edge.detector import DetectorConfig
from edge.records import Attributes, Detection, HeadPose
from edge.settings import parse_config
from edge.tracker import Tracker, TrackerUpdate, TrackingConfig, VisitorEnded
from edge.window import Window

DT = 0.1  # 10 frames a second
FRONT = HeadPose(0.0, 0.0, 0.0)
AWAY = HeadPose(60.0, 0.0, 0.0)
NOON = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def face(x: float, pose: HeadPose | None) -> Detection:
    return Detection((x, 100.0, x + 60.0, 160.0), 0.9, pose)


def walk(poses: list[HeadPose | None], attention: AttentionConfig | None = None) -> VisitorEnded:
    """One face seen in consecutive frames with these poses, then gone: its ended visitor."""
    tracker = Tracker(TrackingConfig(), DetectorConfig(), AttributesConfig(), attention or AttentionConfig())
    for i, pose in enumerate(poses):
        tracker.update([face(100.0 + 2 * i, pose)], i * DT)
    (ended,) = tracker.flush(len(poses) * DT).ended
    return ended


def test_the_cone_is_centred_on_the_camera_offset() -> None:
    plain = AttentionConfig()
    assert looking(HeadPose(22.0, -22.0, 40.0), plain)  # roll does not matter
    assert not looking(HeadPose(23.0, 0.0, 0.0), plain) and not looking(HeadPose(0.0, 23.0, 0.0), plain)
    assert not looking(None, plain)
    above = AttentionConfig(camera_offset=OffsetConfig(pitch_deg=-15.0), cone=ConeConfig(yaw_deg=10.0))
    assert looking(HeadPose(0.0, -30.0, 0.0), above) and not looking(HeadPose(0.0, 10.0, 0.0), above)
    assert not looking(HeadPose(11.0, -15.0, 0.0), above)


def test_attention_is_the_time_spent_looking() -> None:
    # 1 s facing the camera, 1 s turned away, 1 s facing it again: 31 frames, 3 s of dwell.
    ended = walk([FRONT] * 11 + [AWAY] * 10 + [FRONT] * 10)
    assert ended.dwell_s == pytest.approx(3.0)
    # Looking is read on the median of the last three poses: a turn counts one frame late.
    assert ended.attention_s == pytest.approx(1.0 + 0.9 + 0.1)  # 0.1 s: the frame after the turn away
    assert ended.first_look_s == 0.0


def test_one_bad_frame_neither_makes_a_glance_nor_breaks_one() -> None:
    steady = walk([FRONT] * 20)
    glitch = walk([FRONT] * 10 + [AWAY] + [FRONT] * 9)
    unread = walk([FRONT] * 10 + [None] + [FRONT] * 9)  # the mesh found no face in one frame
    assert steady.attention_s == glitch.attention_s == unread.attention_s == pytest.approx(1.9)
    glance = walk([AWAY] * 10 + [FRONT] + [AWAY] * 9)
    assert glance.attention_s == 0.0 and glance.first_look_s is None


def test_attention_never_exceeds_dwell_and_waits_for_the_first_look() -> None:
    ended = walk([AWAY] * 5 + [FRONT] * 30)
    assert ended.attention_s is not None and ended.first_look_s is not None
    assert ended.attention_s <= ended.dwell_s
    assert ended.first_look_s == pytest.approx(0.6)  # two looking poses of three from frame 6


def test_gaze_is_not_tracked_when_attention_is_off() -> None:
    ended = walk([FRONT] * 20, AttentionConfig(enabled=False))
    assert ended.attention_s is None and ended.first_look_s is None


def test_a_gaze_counts_the_gaps_between_sightings() -> None:
    # A face matched every third frame (a tile searched in turns) still looks the whole time.
    g, config = Gaze(), AttentionConfig()
    for t in (0.0, 0.3, 0.6, 0.9, 1.2):
        g.see(FRONT, t, 0.0, config)
    assert g.attention_s == pytest.approx(1.2)


def _window(ended: list[VisitorEnded], attention: AttentionConfig, k: int = 1) -> dict:
    a = Aggregator(AggregationConfig(min_cell=k), AttributesConfig(), attention, "d", "s")
    a.observe(TrackerUpdate(ended=tuple(ended)), NOON)
    (w,) = a.tick(NOON + 60)
    return w.to_payload()


def test_a_viewer_looked_for_min_s() -> None:
    people = [
        VisitorEnded(5.0, Attributes(gender="female", age=30.0), attention_s=a) for a in (0.0, 0.99, 1.0, 2.5, 4.0)
    ]
    w = _window(people, AttentionConfig())
    assert w["viewers"] == 3 and w["viewer_rate"] == 0.6
    assert w["attention_s"] == {"sum": 7.5, "median": 2.5}
    assert w["viewers_by"]["gender"] == {"female": 3, "male": 0, "unknown": 0}
    assert w["viewers_by"]["age"]["25-34"] == 3
    strict = _window(people, AttentionConfig(min_s=3.0))
    assert strict["viewers"] == 1 and strict["attention_s"] == {"sum": 4.0, "median": 4.0}


def test_a_window_has_no_attention_keys_when_attention_is_off() -> None:
    w = _window([VisitorEnded(5.0, None, attention_s=None)], AttentionConfig(enabled=False))
    assert not {"viewers", "viewer_rate", "attention_s", "viewers_by"} & set(w)


def test_few_viewers_or_few_non_viewers_are_suppressed() -> None:
    looked = [VisitorEnded(5.0, Attributes(gender="male"), attention_s=2.0)] * 8
    passed = [VisitorEnded(5.0, Attributes(gender="male"), attention_s=0.0)] * 2
    w = _window(looked + passed, AttentionConfig(), k=5)
    # 8 viewers of 10 would say that 2 did not look.
    assert w["viewers"] is None and w["viewer_rate"] is None and w["attention_s"] == {"sum": None, "median": None}
    assert set(w["viewers_by"]["gender"].values()) == {None}
    assert w["dwell_s"]["n"] == 10 and "viewers" in w["suppressed"]
    w = _window(looked + passed * 3, AttentionConfig(), k=5)  # 8 viewers, 6 who did not look
    assert w["viewers"] == 8 and w["viewers_by"]["gender"] == {"female": 0, "male": 8, "unknown": 0}


def test_attention_config_is_validated_with_key_value_and_expectation() -> None:
    base = {"device_id": "d", "source": {"type": "file", "path": "x.mp4"}}
    config = parse_config(base)
    assert config.attention == AttentionConfig() and config.attention.enabled
    with pytest.raises(ConfigError) as e:
        parse_config({**base, "attention": {"cone": {"yaw_deg": 0}, "min_s": -1, "camera_offset": {"roll": 3}}})
    text = str(e.value)
    assert "attention.cone.yaw_deg" in text and "> 0 and <= 90" in text
    assert "attention.min_s" in text and "attention.camera_offset.roll" in text
    off = parse_config({**base, "attention": {"enabled": False}})
    assert dataclasses.replace(off.attention, enabled=True) == AttentionConfig()


def test_a_window_with_viewers_reads_back_from_its_payload_unchanged() -> None:
    # The state store keeps checkpoints and the fleet decodes windows through the payload.
    people = [VisitorEnded(5.0, Attributes(gender="male", age=30.0), attention_s=a) for a in (2.0, 0.0, 3.0)]
    a = Aggregator(AggregationConfig(min_cell=1), AttributesConfig(), AttentionConfig(), "d", "s")
    a.observe(TrackerUpdate(ended=tuple(people)), NOON)
    window = a.snapshot()
    assert window is not None and window.attention is not None and window.attention.viewers == 2
    assert Window.from_payload(window.to_payload()) == window
    off = Aggregator(AggregationConfig(min_cell=1), AttributesConfig(), AttentionConfig(enabled=False), "d", "s")
    off.observe(TrackerUpdate(ended=tuple(people)), NOON)
    quiet = off.snapshot()
    assert quiet is not None and quiet.attention is None and Window.from_payload(quiet.to_payload()) == quiet
