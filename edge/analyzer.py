"""The public analysis API: frame in, faces with attributes out.

``Analyzer`` is what the CLI (``edge analyze``, ``eval``, ``bench``) and the
daemon share; it owns the loaded models and keeps per-stage timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.attributes import AttributeEstimator, AttributeSwitches
from edge.detector import FaceDetector
from edge.face_check import MODEL_KEY as FACE_CHECK_KEY
from edge.face_check import FaceCheck
from edge.models import DEFAULT_DIR, Manifest
from edge.preprocess import DEFAULT_VIEWS
from edge.records import Detection, Face


@dataclass(frozen=True)
class AnalyzerConfig:
    model_dir: Path = DEFAULT_DIR
    variant: str = "int8"  # "int8" or "float"
    detector_input: int = 512  # 512, or 320 for slower devices
    score_threshold: float = 0.5
    min_face_px: int = 0
    tile_interval: int = 1  # video: frames between searches of the same tile (see FaceDetector)
    attributes: AttributeSwitches = field(default_factory=AttributeSwitches)
    attribute_views: int = DEFAULT_VIEWS  # crops averaged per estimate near a decision (edge.attributes)
    gender_gate: float | None = None  # the score a gender needs to count (the daemon's min_gender_score)
    backend: str = "auto"
    threads: int | None = None  # None: all cores
    # Confirm boxes in the detector's weak size bands with the face check (edge.face_check), when
    # the model set has it; off: the detector's scores alone, as before it was added.
    face_check: bool = True


@dataclass(frozen=True)
class Timings:
    detect_ms: float
    attributes_ms: float

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.attributes_ms


class Analyzer:
    """Detect faces and estimate the enabled attributes of each."""

    def __init__(self, config: AnalyzerConfig = AnalyzerConfig()) -> None:
        self.config = config
        manifest = Manifest(config.model_dir)
        key = "detector" if config.detector_input == 512 else f"detector_{config.detector_input}"
        check = None
        if config.face_check and FACE_CHECK_KEY in manifest.models:  # a model set from before it: without
            check = FaceCheck(manifest, config.variant, config.backend, config.threads)
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
        )
        self.last_timings = Timings(0.0, 0.0)

    def detect(self, frame_rgb: np.ndarray, frame_index: int | None = None) -> list[Detection]:
        """Faces only; ``frame_index`` for video frames (tiles take turns), None for photos."""
        return self.detector.detect(frame_rgb, frame_index)

    def analyze(self, frame_rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 frame, with attributes; timings in ``last_timings``."""
        t0 = time.perf_counter()
        detections = self.detector.detect(frame_rgb)
        t1 = time.perf_counter()
        attrs = self.attributes.estimate(frame_rgb, detections)
        t2 = time.perf_counter()
        self.last_timings = Timings((t1 - t0) * 1000.0, (t2 - t1) * 1000.0)
        return [Face(d, a) for d, a in zip(detections, attrs)]
