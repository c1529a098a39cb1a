"""Accuracy of detector and attributes on labelled crops, overall and per group (``edge eval --utkface``).

Each crop is centred on a mid-grey canvas (the detector misses tight crops) and analysed as a camera
frame would be; with both model variants the int8 models are also compared with float face by face
(``edge.evaluation.parity``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edge.analyzer import Analyzer
from edge.evaluation.labels import Groups, grouped, read_labels
from edge.evaluation.outcomes import Outcome, analyse_all
from edge.evaluation.parity import Parity, parity
from edge.evaluation.stats import Estimate, mean_error, proportion


@dataclass(frozen=True)
class GroupAccuracy:
    """One group's (or all faces') detection rate, gender accuracy and age error."""

    n: int
    detected: int
    detection_rate: Estimate
    gender_accuracy: Estimate
    gender_accuracy_adult: Estimate
    age_mae: Estimate
    age_mae_adult: Estimate
    ethnicity_accuracy: Estimate | None = None  # only when ethnicity was estimated

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "n": self.n,
            "detected": self.detected,
            "detection_rate": self.detection_rate.to_dict(),
            "gender_accuracy": self.gender_accuracy.to_dict(),
            "gender_accuracy_adult": self.gender_accuracy_adult.to_dict(),
            "age_mae": self.age_mae.to_dict(),
            "age_mae_adult": self.age_mae_adult.to_dict(),
        }
        if self.ethnicity_accuracy is not None:
            doc["ethnicity_accuracy"] = self.ethnicity_accuracy.to_dict()
        return doc


@dataclass(frozen=True)
class Accuracy:
    """One model variant's accuracy: all faces, each group, and how many images were unreadable."""

    overall: GroupAccuracy
    groups: Groups[GroupAccuracy]
    unreadable: int

    def to_dict(self) -> dict[str, Any]:
        """The overall values first (without their intervals), then the full rows."""
        o = self.overall
        doc: dict[str, Any] = {
            "n": o.n,
            "detected": o.detected,
            "detection_rate": o.detection_rate.value,
            "gender_accuracy": o.gender_accuracy.value,
            "gender_accuracy_adult": o.gender_accuracy_adult.value,
            "age_mae": o.age_mae.value,
            "age_mae_adult": o.age_mae_adult.value,
            "overall": o.to_dict(),
            "groups": self.groups.to_dict(),
        }
        if o.ethnicity_accuracy is not None:
            doc["ethnicity_accuracy"] = o.ethnicity_accuracy.value
        doc["unreadable"] = self.unreadable
        return doc


@dataclass(frozen=True)
class AccuracyRun:
    """Every variant's accuracy on the same images, and int8 against float when both ran."""

    folder: Path
    images: int
    canvas: int
    ethnicity: bool
    results: dict[str, Accuracy]  # by variant, the first one the headline
    parity: Parity | None

    @property
    def variants(self) -> list[str]:
        return list(self.results)

    def to_dict(self) -> dict[str, Any]:
        first = self.variants[0]
        doc = dict(self.results[first].to_dict(), variant=first, canvas=self.canvas)
        doc["variants"] = {variant: result.to_dict() for variant, result in self.results.items()}
        if self.parity is not None:
            doc["parity"] = self.parity.to_dict()
        return doc


def group_accuracy(group: list[Outcome], ethnicity: bool) -> GroupAccuracy:
    found = [o for o in group if o.detected]
    return GroupAccuracy(
        n=len(group),
        detected=len(found),
        detection_rate=proportion([o.detected for o in group]),
        gender_accuracy=proportion([o.gender == o.sample.gender for o in found if o.gender]),
        gender_accuracy_adult=proportion([o.gender == o.sample.gender for o in found if o.gender and o.sample.adult]),
        age_mae=mean_error([abs(o.age - o.sample.age) for o in found if o.age is not None]),
        age_mae_adult=mean_error([abs(o.age - o.sample.age) for o in found if o.age is not None and o.sample.adult]),
        ethnicity_accuracy=(
            proportion([o.ethnicity == o.sample.race for o in found if o.ethnicity]) if ethnicity else None
        ),
    )


def summarise(outcomes: list[Outcome], ethnicity: bool, unreadable: int = 0) -> Accuracy:
    return Accuracy(
        group_accuracy(outcomes, ethnicity),
        grouped(outcomes, lambda o: o.sample, lambda members: group_accuracy(members, ethnicity)),
        unreadable,
    )


def evaluate_accuracy(
    make_analyzer: Callable[[str], Analyzer],
    variants: list[str],
    folder: Path,
    canvas: int,
    ethnicity: bool,
    limit: int | None,
    err: TextIO,
) -> AccuracyRun:
    """Each variant on the folder's first ``limit`` images (all when None); progress and unreadable
    images are reported on ``err`` as they come."""
    samples = read_labels(folder)
    if limit:
        samples = samples[:limit]
    results: dict[str, Accuracy] = {}
    outcomes_by: dict[str, list[Outcome]] = {}
    for variant in variants:
        outcomes, problems = analyse_all(make_analyzer(variant), folder, samples, canvas, variant, err)
        for p in problems:
            err.write(f"edge eval: {p}\n")
        results[variant] = summarise(outcomes, ethnicity, len(problems))
        outcomes_by[variant] = outcomes
    quantisation = None
    if "int8" in outcomes_by and "float" in outcomes_by:
        quantisation = parity(outcomes_by["float"], outcomes_by["int8"])
    return AccuracyRun(folder, len(samples), canvas, ethnicity, results, quantisation)
