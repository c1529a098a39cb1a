"""The public analysis API: frame in, faces with attributes out.

``Analyzer`` is what the CLI (``edge analyze``, ``eval``, ``bench``) and the
daemon share; it owns the loaded models and keeps per-stage timings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.attributes import AttributeEstimator, AttributesConfig
from edge.detector import FaceDetector
from edge.face_check import CONFIRMED_SCORE, FACE_MIN, FaceCheck
from edge.face_mesh import MODEL_KEY as FACE_MESH_KEY
from edge.face_mesh import FaceMesh, MeshReading
from edge.head_pose import head_pose
from edge.models import DEFAULT_DIR, Manifest
from edge.person_detector import PersonDetector
from edge.preprocess import DEFAULT_VIEWS
from edge.records import Detection, Face, PersonDetection


@dataclass(frozen=True)
class AnalyzerConfig:
    model_dir: Path = DEFAULT_DIR
    variant: str = "int8"  # "int8" or "float"
    detector_input: int = 512  # 512, or 320 for slower devices
    score_threshold: float = 0.5
    min_face_px: int = 0
    tile_interval: int = 1  # video: frames between searches of the same tile (see FaceDetector)
    attributes: AttributesConfig = field(default_factory=AttributesConfig)
    attribute_views: int = DEFAULT_VIEWS  # crops averaged per estimate near a decision (edge.attributes)
    gender_gate: float | None = None  # the score a gender needs to count (the daemon's min_gender_score)
    backend: str = "auto"
    threads: int | None = None  # None: all cores
    # Confirm boxes in the detector's weak size bands with the face check (edge.face_check), when
    # the model set has the face mesh; off: the detector's scores alone, as before it was added.
    face_check: bool = True
    # Turn tilted faces upright before the attribute models (edge.attributes.MIN_ROLL_DEG), when the
    # model set has the face mesh. The daemon does (it describes a track's few best observations);
    # per photo it costs about 4 ms a face, which `edge analyze` pays only when asked (--align).
    align: bool = False
    # Read each face's head pose from the face mesh (edge.head_pose): the daemon does when attention
    # is on (about 2 ms a face on two cores); `edge analyze` when asked (--pose).
    pose: bool = False
    # Load the person detector (edge.person_detector): the daemon does where people are counted
    # (people.enabled), `edge analyze` when asked (--people).
    people: bool = False
    # The person detector reports boxes down to this score; the people tracker starts tracks only at
    # people.score_threshold (0.3 by default) and lets weaker boxes, down to half of it, continue them.
    person_threshold: float = 0.15


def readable(detection: Detection, reading: MeshReading) -> bool:
    """Whether a box's landmarks say which way a head points: the mesh takes the box for a face, or
    the detector is sure of it on its own (``CONFIRMED_SCORE``, the start threshold). On the back of
    a head (weak boxes, face flag under 0.1) the mesh still draws a face, looking ahead; on a real
    face that the video's compression has dithered the flag can fall to 0 at 50 px while the pose
    stays within a few degrees (docs/attention.md)."""
    return reading.face >= FACE_MIN or detection.score >= CONFIRMED_SCORE


@dataclass(frozen=True)
class Timings:
    detect_ms: float
    attributes_ms: float
    pose_ms: float = 0.0  # head pose of every face (AnalyzerConfig.pose)

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.pose_ms + self.attributes_ms


class Analyzer:
    """Detect faces and estimate the enabled attributes of each."""

    def __init__(self, config: AnalyzerConfig = AnalyzerConfig()) -> None:
        self.config = config
        manifest = Manifest(config.model_dir)
        key = "detector" if config.detector_input == 512 else f"detector_{config.detector_input}"
        mesh = None
        # Older model sets lack the mesh: the face check and turning faces upright do without it;
        # head pose needs it, and a set without it is refused (ModelError) as any missing model is.
        if config.pose or ((config.face_check or config.align) and FACE_MESH_KEY in manifest.models):
            mesh = FaceMesh(manifest, config.variant, config.backend, config.threads)
        self.pose_mesh = mesh if config.pose else None  # reads head poses (None: pose off)
        check = FaceCheck(mesh) if config.face_check and mesh is not None else None
        self.detector = FaceDetector(
            manifest,
            config.variant,
            config.score_threshold,
            config.min_face_px,
            config.backend,
            config.threads,
            key=key,
            tile_interval=config.tile_interval,
            face_check=check,
        )
        self.attributes = AttributeEstimator(
            manifest,
            config.attributes,
            config.variant,
            config.backend,
            config.threads,
            config.attribute_views,
            gates={} if config.gender_gate is None else {"gender": config.gender_gate},
            mesh=mesh if config.align else None,
        )
        self.person_detector = (
            PersonDetector(manifest, config.variant, config.backend, config.threads, config.person_threshold)
            if config.people
            else None
        )
        self.last_timings = Timings(0.0, 0.0)

    def persons(self, frame_rgb: np.ndarray) -> tuple[PersonDetection, ...]:
        """Everyone in the frame, face or not (needs ``AnalyzerConfig.people``); weak boxes too,
        down to ``AnalyzerConfig.person_threshold``: a tracker decides what they may do (``edge.people``)."""
        if self.person_detector is None:
            raise RuntimeError("this analyzer finds no people (AnalyzerConfig.people is off)")
        return self.person_detector.detect(frame_rgb)

    def detect(self, frame_rgb: np.ndarray, frame_index: int | None = None) -> list[Detection]:
        """Faces only; ``frame_index`` for video frames (tiles take turns), None for photos."""
        return self.detector.detect(frame_rgb, frame_index)

    def read_poses(
        self, frame_rgb: np.ndarray, detections: Sequence[Detection]
    ) -> tuple[list[Detection], list[MeshReading]]:
        """The detections with their head pose (None where the mesh finds no face in the box), and
        the mesh readings, which ``AttributeEstimator.estimate`` takes instead of a second run.
        Needs ``AnalyzerConfig.pose``."""
        if self.pose_mesh is None:
            raise RuntimeError("this analyzer reads no head pose (AnalyzerConfig.pose is off)")
        readings = [self.pose_mesh.read(frame_rgb, d.box) for d in detections]
        posed = [replace(d, pose=head_pose(r.points) if readable(d, r) else None) for d, r in zip(detections, readings)]
        return posed, readings

    def analyze(self, frame_rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 frame, with attributes (and head pose where configured);
        timings in ``last_timings``."""
        t0 = time.perf_counter()
        detections = self.detector.detect(frame_rgb)
        t1 = time.perf_counter()
        readings: list[MeshReading] | None = None
        if self.pose_mesh is not None:
            detections, readings = self.read_poses(frame_rgb, detections)
        t2 = time.perf_counter()
        attrs = self.attributes.estimate(frame_rgb, detections, readings)
        t3 = time.perf_counter()
        self.last_timings = Timings((t1 - t0) * 1000.0, (t3 - t2) * 1000.0, (t2 - t1) * 1000.0)
        return [Face(d, a) for d, a in zip(detections, attrs)]
