"""Small frozen records that stages hand each other.

A frame flows source -> detector -> tracker -> aggregator -> state store -> sink; the
tracker asks for the attributes of a track's few best crops, and the attribute models
answer it (``edge.pipeline``). These are the only shapes that cross a stage boundary
before the aggregator; nothing here is ever published: the aggregator turns them into
counts (an ``edge.window.Window``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured frame. ``pixels`` is uint8 RGB [H, W, 3] and never leaves the process."""

    pixels: np.ndarray
    index: int
    monotonic: float  # time.monotonic() at capture: for durations
    wall: float  # time.time() at capture: only to label windows


@dataclass(frozen=True)
class HeadPose:
    """Which way a head points, in degrees, as the camera sees it (``edge.head_pose``).

    ``yaw`` is positive when the face turns towards the image's right, ``pitch`` when it tilts
    up, ``roll`` when it leans clockwise on screen; all three are 0 for a face looking straight
    into the lens. Never published: the tracker turns it into attention time."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class Detection:
    """A face box in frame pixels (x1, y1, x2, y2) with the detector's confidence, and the head's
    pose where it was read (None: not read, or the face mesh did not find a face in the box)."""

    box: tuple[float, float, float, float]
    score: float
    pose: HeadPose | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class PersonDetection:
    """A person's box in frame pixels (x1, y1, x2, y2), head to feet as far as in view, with the
    person detector's confidence (``edge.person_detector``). Never published."""

    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class Attributes:
    """Attribute estimates for one face; a field is None when that attribute is switched off."""

    age: float | None = None
    gender: str | None = None  # "female" | "male"
    gender_score: float | None = None
    expression: str | None = None
    expression_score: float | None = None
    ethnicity: str | None = None  # opt-in only
    ethnicity_score: float | None = None


@dataclass(frozen=True)
class Face:
    """A detection with its attributes (what ``Analyzer.analyze`` returns)."""

    detection: Detection
    attributes: Attributes
