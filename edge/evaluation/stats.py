"""Estimates with their 95% confidence intervals, as typed rows.

Every accuracy figure ``edge eval`` reports carries its sample size and interval, so that a group
of twelve faces is not read like a group of twelve hundred; the arithmetic for those lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Interval = tuple[float, float]


def _interval(ci95: Interval | None) -> list[float] | None:
    return None if ci95 is None else [ci95[0], ci95[1]]


@dataclass(frozen=True)
class Estimate:
    """A proportion or a mean over ``n`` items; ``value`` and ``ci95`` are None when ``n`` is 0."""

    n: int
    value: float | None
    ci95: Interval | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "value": self.value, "ci95": _interval(self.ci95)}


@dataclass(frozen=True)
class PairedChange:
    """Accuracy of a reference and a candidate on the same items, and the candidate's change."""

    n: int
    reference: float | None
    candidate: float | None
    change: float | None
    ci95: Interval | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "reference": self.reference,
            "candidate": self.candidate,
            "change": self.change,
            "ci95": _interval(self.ci95),
        }


def wilson(k: int, n: int) -> Interval:
    """The Wilson score interval of ``k`` hits in ``n`` (nan, nan when ``n`` is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def proportion(hits: list[bool]) -> Estimate:
    n, k = len(hits), int(sum(hits))
    return Estimate(n, k / n, wilson(k, n)) if n else Estimate(0, None, None)


def mean_error(errors: list[float]) -> Estimate:
    """The mean with a normal-approximation interval (nan bounds for a single value)."""
    n = len(errors)
    if n == 0:
        return Estimate(0, None, None)
    mean = float(np.mean(errors))
    half = 1.96 * float(np.std(errors, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return Estimate(n, mean, (mean - half, mean + half))


def paired_change(pairs: list[tuple[bool, bool]]) -> PairedChange:
    """Accuracy of a reference and a candidate on the same faces, and the candidate's change.

    The change's 95% CI is the normal approximation of the mean paired difference (each face
    contributes -1, 0 or +1), which is tighter and more honest than comparing two independent CIs.
    """
    n = len(pairs)
    if n == 0:
        return PairedChange(0, None, None, None, None)
    d = np.array([int(c) - int(r) for r, c in pairs], dtype=np.float64)
    change = float(d.mean())
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return PairedChange(
        n,
        sum(r for r, _ in pairs) / n,
        sum(c for _, c in pairs) / n,
        change,
        (change - half, change + half),
    )


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
