"""Accuracy against face size (``edge eval --face-px``), to set the attribute quality gate from data.

Each crop is downscaled (``cv2.INTER_AREA``) so that the *crop* is S px wide, placed at a seeded
random position on a frame (640x480 by default) with a smooth grey gradient, and the whole frame
goes through ``Analyzer.analyze`` exactly as a camera frame would. UTKFace crops are tight, so the
detected box is roughly the crop; each row also gives the median detected box short side so crop
px can be read as box px. Rows report detection rate, median detector score, adult (18-75) gender
accuracy and age MAE with 95% CIs, and adult gender accuracy among faces whose gender_score clears
0.7 / 0.8 / 0.9 with the share of faces kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.analyzer import Analyzer
from edge.evaluation.labels import SEED, EvalError, read_labels, stratified
from edge.evaluation.outcomes import Outcome
from edge.evaluation.placement import FRAME_H, FRAME_W, evaluate_sizes
from edge.evaluation.stats import Estimate, mean_error, median, proportion

# Attributes are scored on faces detected at least this surely: the daemon describes only
# detections that may start a track (detector.score_threshold), whatever weaker ones it tracks.
STRONG_SCORE = 0.5
FACE_PX_RANGE = (4, 400)
GENDER_SCORE_CUTS = (0.7, 0.8, 0.9)
PLATEAU_POINTS = 0.02
PLATEAU_MIN_N = 30  # rows with fewer rated adults are too noisy to count as on the plateau


def parse_face_px(text: str) -> list[int]:
    """Crop widths from ``16,24,32``: sorted, deduplicated, each one from 4 to 400 px."""
    lo, hi = FACE_PX_RANGE
    sizes = set()
    for token in text.split(","):
        try:
            value = int(token.strip())
        except ValueError:
            value = 0
        if not lo <= value <= hi:
            raise EvalError(
                f"--face-px: {token.strip()!r} in {text!r} is not a crop width in pixels "
                f"(expected comma-separated integers from {lo} to {hi}, e.g. 16,24,32)"
            )
        sizes.add(value)
    return sorted(sizes)


@dataclass(frozen=True)
class ScoreCut:
    """Adult gender accuracy among the faces whose gender_score clears ``min_score``."""

    min_score: float
    kept: int
    coverage: float | None  # the share of rated adults kept
    accuracy: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_score": self.min_score,
            "kept": self.kept,
            "coverage": self.coverage,
            "accuracy": self.accuracy.to_dict(),
        }


@dataclass(frozen=True)
class SizeRow:
    """One row of the face-size table: every image at one crop width."""

    face_px: int
    n: int
    detected: int
    detection_rate: Estimate
    detection_rate_strong: Estimate
    box_short_side_median: float | None
    detector_score_median: float | None
    gender_accuracy: Estimate
    gender_accuracy_adult: Estimate
    age_mae: Estimate
    age_mae_adult: Estimate
    gender_accuracy_adult_by_score: dict[str, ScoreCut]  # by cut, "0.7"

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_px": self.face_px,
            "n": self.n,
            "detected": self.detected,
            "detection_rate": self.detection_rate.to_dict(),
            "detection_rate_strong": self.detection_rate_strong.to_dict(),
            "box_short_side_median": self.box_short_side_median,
            "detector_score_median": self.detector_score_median,
            "gender_accuracy": self.gender_accuracy.to_dict(),
            "gender_accuracy_adult": self.gender_accuracy_adult.to_dict(),
            "age_mae": self.age_mae.to_dict(),
            "age_mae_adult": self.age_mae_adult.to_dict(),
            "gender_accuracy_adult_by_score": {k: c.to_dict() for k, c in self.gender_accuracy_adult_by_score.items()},
        }


@dataclass(frozen=True)
class Plateau:
    """The smallest crop from which adult gender accuracy stays within ``within_points`` of the largest's."""

    face_px: int
    box_short_side_median: float | None
    gender_accuracy_adult: float | None
    reference_face_px: int
    reference_gender_accuracy_adult: float | None
    within_points: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_px": self.face_px,
            "box_short_side_median": self.box_short_side_median,
            "gender_accuracy_adult": self.gender_accuracy_adult,
            "reference_face_px": self.reference_face_px,
            "reference_gender_accuracy_adult": self.reference_gender_accuracy_adult,
            "within_points": self.within_points,
        }


def summarise_size(size: int, outcomes: list[Outcome]) -> SizeRow:
    """One row of the face-size table."""
    found = [o for o in outcomes if o.detected]
    strong = [o for o in found if (o.detector_score or 0.0) >= STRONG_SCORE]
    adults = [o for o in strong if o.sample.adult]
    rated = [o for o in adults if o.gender is not None]
    by_score = {}
    for cut in GENDER_SCORE_CUTS:
        kept = [o for o in rated if (o.gender_score or 0.0) >= cut]
        by_score[f"{cut:.1f}"] = ScoreCut(
            min_score=cut,
            kept=len(kept),
            coverage=len(kept) / len(rated) if rated else None,
            accuracy=proportion([o.gender == o.sample.gender for o in kept]),
        )
    return SizeRow(
        face_px=size,
        n=len(outcomes),
        detected=len(found),
        detection_rate=proportion([o.detected for o in outcomes]),
        detection_rate_strong=proportion([o.detected and (o.detector_score or 0.0) >= STRONG_SCORE for o in outcomes]),
        box_short_side_median=median([o.box_short_side for o in found if o.box_short_side is not None]),
        detector_score_median=median([o.detector_score for o in found if o.detector_score is not None]),
        gender_accuracy=proportion([o.gender == o.sample.gender for o in strong if o.gender]),
        gender_accuracy_adult=proportion([o.gender == o.sample.gender for o in rated]),
        age_mae=mean_error([abs(o.age - o.sample.age) for o in strong if o.age is not None]),
        age_mae_adult=mean_error([abs(o.age - o.sample.age) for o in adults if o.age is not None]),
        gender_accuracy_adult_by_score=by_score,
    )


def plateau_size(rows: list[SizeRow], points: float = PLATEAU_POINTS) -> Plateau | None:
    """The smallest size from which every larger size's adult gender accuracy is within ``points`` of the largest's.

    A pointer for the quality gate, not the gate itself: read it with the CIs. The scan stops at the
    first size with fewer than ``PLATEAU_MIN_N`` rated adults.
    """
    if not rows or rows[-1].gender_accuracy_adult.n < PLATEAU_MIN_N:
        return None
    reference = rows[-1].gender_accuracy_adult.value
    chosen = rows[-1]
    for row in reversed(rows):
        cell = row.gender_accuracy_adult
        if cell.n < PLATEAU_MIN_N or cell.value is None or reference is None or cell.value < reference - points:
            break
        chosen = row
    return Plateau(
        face_px=chosen.face_px,
        box_short_side_median=chosen.box_short_side_median,
        gender_accuracy_adult=chosen.gender_accuracy_adult.value,
        reference_face_px=rows[-1].face_px,
        reference_gender_accuracy_adult=reference,
        within_points=points,
    )


@dataclass(frozen=True)
class SizeResult:
    """One model variant's face-size table, with what it ran and what it cost."""

    detector_input: int
    detection_plan: str
    score_threshold: float
    sizes: tuple[SizeRow, ...]
    plateau: Plateau | None
    unreadable: int
    seconds: float
    ms_per_analysis: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector_input": self.detector_input,
            "detection_plan": self.detection_plan,
            "score_threshold": self.score_threshold,
            "sizes": [row.to_dict() for row in self.sizes],
            "plateau": None if self.plateau is None else self.plateau.to_dict(),
            "unreadable": self.unreadable,
            "seconds": self.seconds,
            "ms_per_analysis": self.ms_per_analysis,
        }


@dataclass(frozen=True)
class FaceSizeRun:
    """Every variant's face-size table on the same (possibly sampled) images."""

    folder: Path
    images: int
    available: int  # images in the folder, before sampling
    sizes: tuple[int, ...]
    frame: tuple[int, int]
    results: dict[str, SizeResult]  # by variant, the first one the headline

    @property
    def sample(self) -> str:
        return f"stratified sample of {self.images} of {self.available}" if self.images < self.available else "all"

    def to_dict(self) -> dict[str, Any]:
        first = next(iter(self.results))
        doc = dict(self.results[first].to_dict(), variant=first, mode="face_px", images=self.images, sample=self.sample)
        doc.update(
            frame=list(self.frame),
            background="grey gradient",
            seed=SEED,
            variants={variant: result.to_dict() for variant, result in self.results.items()},
        )
        return doc


def evaluate_face_sizes(
    make_analyzer: Callable[[str], Analyzer],
    variants: list[str],
    folder: Path,
    sizes: list[int],
    limit: int | None,
    err: TextIO,
    frame: tuple[int, int] = (FRAME_W, FRAME_H),
) -> FaceSizeRun:
    """Each variant's table; ``limit`` takes a stratified sample. Progress and unreadable images are
    reported on ``err`` as they come."""
    if limit is not None and limit < 1:
        raise EvalError(f"--limit: {limit} is not a number of images (expected 1 or more)")
    every = read_labels(folder)
    samples = stratified(every, limit) if limit else every
    results: dict[str, SizeResult] = {}
    for variant in variants:
        analyzer = make_analyzer(variant)
        start = time.perf_counter()
        outcomes, problems = evaluate_sizes(analyzer, folder, samples, sizes, variant, err, frame)
        seconds = time.perf_counter() - start
        for p in problems:
            err.write(f"edge eval: {p}\n")
        rows = [summarise_size(size, outcomes[size]) for size in sizes]
        analyses = sum(len(v) for v in outcomes.values())
        results[variant] = SizeResult(
            detector_input=analyzer.config.detector_input,
            detection_plan=analyzer.detector.plan(*frame).describe(),
            score_threshold=analyzer.config.score_threshold,
            sizes=tuple(rows),
            plateau=plateau_size(rows),
            unreadable=len(problems),
            seconds=seconds,
            ms_per_analysis=1000 * seconds / analyses if analyses else None,
        )
    return FaceSizeRun(folder, len(samples), len(every), tuple(sizes), frame, results)
