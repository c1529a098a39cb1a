"""Who looked at the screen, and for how long: the looking rule and each track's attention time.

A face is *looking* when its head pose lies inside a cone around the screen's direction:
``|yaw - offset.yaw| <= cone.yaw`` and ``|pitch - offset.pitch| <= cone.pitch``. The default cone,
+-22.5 degrees both ways, is the "looker" rule of Intel's shopper-gaze-monitor reference; the offset
is the pose a viewer looking at the screen's centre shows the camera (zero for a camera on the
screen's centre). One frame's pose can be wrong (blur, a hand, a turning head), so a track's looking
is read on the median of its last ``SMOOTH_FRAMES`` poses: one bad frame neither makes a glance nor
breaks one. A face the mesh does not read as a face counts as turned away.

A track's *attention time* is the sum of the intervals between its sightings that end looking, so
it never exceeds its dwell; a visitor is a *viewer* when it reaches ``min_s`` (attention sensors on
the market start counting after a second of gaze). Pure: times are passed in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from edge.config.fields import boolean, leaf, number, section
from edge.records import HeadPose

SMOOTH_FRAMES = 3  # poses per track a median is taken over


@dataclass(frozen=True, kw_only=True)
class ConeConfig:
    """Half-widths of the looking cone, in degrees either side of the screen's direction."""

    yaw_deg: float = leaf(22.5, number("an angle in degrees, > 0 and <= 90", lo=0, hi=90, lo_open=True))
    pitch_deg: float = leaf(22.5, number("an angle in degrees, > 0 and <= 90", lo=0, hi=90, lo_open=True))


@dataclass(frozen=True, kw_only=True)
class OffsetConfig:
    """The head pose (as ``edge analyze --pose`` prints it) of a viewer looking at the screen's
    centre from where viewers stand: 0, 0 for a camera in the middle of the screen; a negative
    pitch for a camera above it (viewers look below the lens), a yaw for one beside it."""

    yaw_deg: float = leaf(0.0, number("an angle in degrees from -90 to 90", lo=-90, hi=90))
    pitch_deg: float = leaf(0.0, number("an angle in degrees from -90 to 90", lo=-90, hi=90))


@dataclass(frozen=True, kw_only=True)
class AttentionConfig:
    """Attention measurement: on by default (head pose is not a protected attribute); off removes
    viewers and attention from windows and their sensors, and the per-frame mesh run."""

    enabled: bool = leaf(True, boolean())
    cone: ConeConfig = section(ConeConfig)
    camera_offset: OffsetConfig = section(OffsetConfig)
    min_s: float = leaf(1.0, number("a number of seconds >= 0", lo=0))


def looking(pose: HeadPose | None, config: AttentionConfig) -> bool:
    """Whether one pose lies inside the configured cone (no pose: not looking)."""
    if pose is None:
        return False
    offset, cone = config.camera_offset, config.cone
    return abs(pose.yaw - offset.yaw_deg) <= cone.yaw_deg and abs(pose.pitch - offset.pitch_deg) <= cone.pitch_deg


def median(values: Sequence[float]) -> float:
    """The median of non-empty values."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


class Gaze:
    """One track's looking: its last few poses, its attention time and when it first looked."""

    __slots__ = ("_recent", "_last", "attention_s", "first_look_s")

    def __init__(self) -> None:
        self._recent: deque[tuple[float, float]] = deque(maxlen=SMOOTH_FRAMES)
        self._last: float | None = None  # time of the previous sighting
        self.attention_s = 0.0
        self.first_look_s: float | None = None  # seconds from the first sighting to the first look

    def see(self, pose: HeadPose | None, now: float, first_seen: float, config: AttentionConfig) -> bool:
        """Add one sighting at ``now``; True when the track counts as looking at it."""
        # A face the mesh could not read is turned away: infinitely far off-axis.
        self._recent.append((pose.yaw, pose.pitch) if pose is not None else (math.inf, math.inf))
        yaw = median([y for y, _ in self._recent])
        pitch = median([p for _, p in self._recent])
        smoothed = HeadPose(yaw, pitch, 0.0) if math.isfinite(yaw) and math.isfinite(pitch) else None
        is_looking = looking(smoothed, config)
        if is_looking:
            if self._last is not None:
                self.attention_s += max(0.0, now - self._last)
            if self.first_look_s is None:
                self.first_look_s = max(0.0, now - first_seen)
        self._last = now
        return is_looking
