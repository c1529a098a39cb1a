"""One frame through detector -> head pose -> people -> tracker -> attributes: the counting core.

The daemon and ``edge eval --clips`` both run frames through this, so what the
evaluation scores is exactly what a device counts. Pure apart from inference:
the caller passes each frame's monotonic time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge.analyzer import Analyzer
from edge.face_mesh import MeshReading
from edge.people import PeopleTracker, PeopleUpdate
from edge.records import Detection, PersonDetection
from edge.tracker import Tracker, TrackerUpdate


@dataclass(frozen=True)
class FrameResult:
    """What one frame produced, with the time each stage took (ms)."""

    update: TrackerUpdate
    detections: tuple[Detection, ...]
    detect_ms: float
    pose_ms: float  # head pose of every face (0 where attention is off)
    track_ms: float
    attributes_ms: float
    people: PeopleUpdate | None = None  # None: people are not counted
    persons: tuple[PersonDetection, ...] = ()  # this frame's person boxes (empty between person runs)
    person_ms: float = 0.0  # the person detector (0 on frames it does not run on)


@dataclass(frozen=True)
class Counted:
    """What an expiry or the flush changed, for the aggregator: no frame was processed."""

    update: TrackerUpdate
    people: PeopleUpdate | None


class FramePipeline:
    """Detect, track, and estimate attributes only where the tracker asks for them."""

    def __init__(self, analyzer: Analyzer, tracker: Tracker, people: PeopleTracker | None = None) -> None:
        """Head poses are read (for the tracker's attention time) when the analyzer reads them
        (``AnalyzerConfig.pose``). With ``people``, the analyzer's person detector runs on every
        ``people.config.every_frames``-th frame (``AnalyzerConfig.people``)."""
        self.analyzer = analyzer
        self.tracker = tracker
        self.people = people
        if people is not None and analyzer.person_detector is None:
            raise ValueError("counting people needs an analyzer with the person detector (AnalyzerConfig.people)")
        self._frames = 0

    def process(self, pixels: np.ndarray, monotonic: float) -> FrameResult:
        t0 = time.perf_counter()
        persons: tuple[PersonDetection, ...] = ()
        people = None
        if self.people is not None:
            if self._frames % self.people.config.every_frames == 0:
                persons = self.analyzer.persons(pixels)
                people = self.people.update(persons, monotonic, (pixels.shape[1], pixels.shape[0]))
            else:
                people = self.people.expire(monotonic)
        tp = time.perf_counter()
        detections = self.analyzer.detect(pixels, self._frames)
        self._frames += 1
        t1 = time.perf_counter()
        readings: dict[int, MeshReading] = {}
        if self.analyzer.pose_mesh is not None and detections:
            detections, meshes = self.analyzer.read_poses(pixels, detections)
            readings = {id(d): r for d, r in zip(detections, meshes)}
        t2 = time.perf_counter()
        if self.people is not None:
            update = self.tracker.update(detections, monotonic, self.people.boxes(monotonic))
            self.people.link(update.visitor_faces, monotonic)
        else:
            update = self.tracker.update(detections, monotonic)
        t3 = time.perf_counter()
        if update.needs_attributes:
            requests = list(update.needs_attributes)
            estimates = self.analyzer.attributes.estimate(
                pixels, [r.detection for r in requests], [readings.get(id(r.detection)) for r in requests]
            )
            for request, attributes in zip(requests, estimates):
                self.tracker.add_attributes(request.track_key, attributes)
        t4 = time.perf_counter()
        return FrameResult(
            update,
            tuple(detections),
            (t1 - tp) * 1000.0,
            (t2 - t1) * 1000.0,
            (t3 - t2) * 1000.0,
            (t4 - t3) * 1000.0,
            people,
            persons,
            (tp - t0) * 1000.0,
        )

    def expire(self, monotonic: float) -> Counted:
        """End the tracks unseen for too long when no frame arrives (camera outage)."""
        people = self.people.expire(monotonic) if self.people is not None else None
        return Counted(self.tracker.expire(monotonic), people)

    def flush(self, monotonic: float) -> Counted:
        """End every track (shutdown)."""
        people = self.people.flush(monotonic) if self.people is not None else None
        return Counted(self.tracker.flush(monotonic), people)
