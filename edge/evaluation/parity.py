"""Quantisation parity: what the int8 models cost each group against float, face by face.

A model that loses accuracy on one group only must not hide behind a good average, so every race
x gender group of at least ``PARITY_MIN_N`` faces is held to a bar of ``PARITY_BAR_POINTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.evaluation.labels import Groups, grouped
from edge.evaluation.outcomes import Outcome
from edge.evaluation.stats import Estimate, PairedChange, mean_error, paired_change, proportion

# Children are split finely: near the 0.5 gender boundary a small shift of the logit flips many of them.
PARITY_AGE_BANDS = ((0, 5), (6, 12), (13, 17), (18, 29), (30, 44), (45, 59), (60, 75), (76, 200))
PARITY_BAR_POINTS = 3.0  # a group may lose at most this much gender accuracy to quantisation
PARITY_MIN_N = 40  # groups smaller than this are shown but not held to the bar

Pair = tuple[Outcome, Outcome]  # (reference, candidate) for the same face


@dataclass(frozen=True)
class ParityGroup:
    """One group's paired comparison: gender accuracy change, agreement, age error change."""

    n: int
    gender: PairedChange
    gender_agreement: Estimate
    age_mae_change: Estimate
    expression_agreement: Estimate
    ethnicity_agreement: Estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "gender": self.gender.to_dict(),
            "gender_agreement": self.gender_agreement.to_dict(),
            "age_mae_change": self.age_mae_change.to_dict(),
            "expression_agreement": self.expression_agreement.to_dict(),
            "ethnicity_agreement": self.ethnicity_agreement.to_dict(),
        }


@dataclass(frozen=True)
class ParityBar:
    """The bar race x gender groups are held to, and the groups over it."""

    max_loss_points: float
    min_n: int
    groups_over: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"max_loss_points": self.max_loss_points, "min_n": self.min_n, "groups_over": list(self.groups_over)}


@dataclass(frozen=True)
class Weakest:
    """The held race x gender group that does worst on each measure (None: no group rated)."""

    gender_accuracy: str | None
    gender_change: str | None
    gender_agreement: str | None
    expression_agreement: str | None
    ethnicity_agreement: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gender_accuracy": self.gender_accuracy,
            "gender_change": self.gender_change,
            "gender_agreement": self.gender_agreement,
            "expression_agreement": self.expression_agreement,
            "ethnicity_agreement": self.ethnicity_agreement,
        }


@dataclass(frozen=True)
class Parity:
    overall: ParityGroup
    groups: Groups[ParityGroup]
    bar: ParityBar
    weakest: Weakest

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "groups": self.groups.to_dict(),
            "bar": self.bar.to_dict(),
            "weakest": self.weakest.to_dict(),
        }


def parity_group(rows: list[Pair]) -> ParityGroup:
    gendered = [(r, c) for r, c in rows if r.gender and c.gender]
    aged = [
        (abs(c.age - c.sample.age), abs(r.age - r.sample.age))
        for r, c in rows
        if r.age is not None and c.age is not None
    ]
    expressed = [(r, c) for r, c in rows if r.expression and c.expression]
    return ParityGroup(
        n=len(rows),
        gender=paired_change([(r.gender == r.sample.gender, c.gender == c.sample.gender) for r, c in gendered]),
        gender_agreement=proportion([r.gender == c.gender for r, c in gendered]),
        age_mae_change=mean_error([candidate - reference for candidate, reference in aged]),
        expression_agreement=proportion([r.expression == c.expression for r, c in expressed]),
        ethnicity_agreement=proportion([r.ethnicity == c.ethnicity for r, c in rows if r.ethnicity and c.ethnicity]),
    )


def parity(reference: list[Outcome], candidate: list[Outcome]) -> Parity:
    """What quantisation costs each group: candidate (int8) against reference (float), face by face."""
    by_file = {o.sample.file: o for o in candidate if o.detected}
    pairs = [(r, by_file[r.sample.file]) for r in reference if r.detected and r.sample.file in by_file]
    groups = grouped(pairs, lambda pair: pair[0].sample, parity_group, PARITY_AGE_BANDS)
    held = {k: g for k, g in groups.race_x_gender.items() if g.gender.n >= PARITY_MIN_N}
    over = tuple(
        sorted(k for k, g in held.items() if g.gender.change is not None and -100 * g.gender.change > PARITY_BAR_POINTS)
    )

    def lowest(value: Callable[[ParityGroup], float | None]) -> str | None:
        rated = {k: v for k, g in held.items() if (v := value(g)) is not None}
        return min(rated, key=lambda k: rated[k]) if rated else None

    return Parity(
        overall=parity_group(pairs),
        groups=groups,
        bar=ParityBar(PARITY_BAR_POINTS, PARITY_MIN_N, over),
        weakest=Weakest(
            gender_accuracy=lowest(lambda g: g.gender.candidate),
            gender_change=lowest(lambda g: g.gender.change),
            gender_agreement=lowest(lambda g: g.gender_agreement.value),
            expression_agreement=lowest(lambda g: g.expression_agreement.value),
            ethnicity_agreement=lowest(lambda g: g.ethnicity_agreement.value),
        ),
    )
