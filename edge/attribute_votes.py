"""One estimate per person from the estimates of several crops: how a track's votes combine.

A track keeps its few best crops (``edge.tracker``); each was described on its own. Gender is
published only when those estimates agree well enough (``agreed_gender``); age is their mean;
expression and ethnicity go by vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from edge.records import Attributes, Detection


def quality(detection: Detection) -> float:
    """How useful a crop is for attribute models: bigger and surer faces win."""
    return detection.area * detection.score


def _vote(labels: Sequence[tuple[str, float | None]], weighted: bool) -> tuple[str, float | None] | None:
    """Winner among (label, score) votes and the mean score of its voters.

    ``weighted``: votes weigh their score (None weighs 1); otherwise most frequent
    wins and ties go to the larger summed score. Remaining ties go to the label
    that sorts first so the result never depends on order.
    """
    if not labels:
        return None
    count: Counter[str] = Counter()
    summed: dict[str, float] = {}
    for label, score in labels:
        count[label] += 1
        summed[label] = summed.get(label, 0.0) + (1.0 if score is None else score)
    if weighted:
        ranked = sorted(count, key=lambda lab: (-summed[lab], -count[lab], lab))
    else:
        ranked = sorted(count, key=lambda lab: (-count[lab], -summed[lab], lab))
    winner = ranked[0]
    scores = [s for lab, s in labels if lab == winner and s is not None]
    return winner, (sum(scores) / len(scores) if scores else None)


# A track's gender comes from its kept observations' estimates (its votes). It is published only
# when they agree: at least this share of them names the winner, and either one of the winner's
# votes reaches ``min_gender_score``, or at least ``AGREEING_VOTES`` of them average
# ``AGREEING_SCORE``. On utkface-dev adults (948 crops, upright and turned 30 degrees), a single
# int8 estimate scoring 0.7-0.8 was right 79% of the time, 0.8-0.9 93% (models/README.md,
# "Gender you can rely on"): three such votes that agree are stronger evidence than one vote at
# 0.8, and one vote at 0.85 contradicted by the others is weaker.
AGREEMENT = 0.75
AGREEING_VOTES = 3
AGREEING_SCORE = 0.65


def agreed_gender(votes: Sequence[tuple[str, float | None]], min_score: float) -> tuple[str, float | None] | None:
    """The gender a track's votes agree on, with the mean score of its voters; None when they
    disagree or are too unsure (see ``AGREEMENT``). A vote without a score counts as sure."""
    winner = _vote(votes, weighted=True)
    if winner is None:
        return None
    scores = [1.0 if s is None else s for label, s in votes if label == winner[0]]
    if len(scores) < AGREEMENT * len(votes):
        return None
    sure = max(scores) >= min_score
    agreeing = len(scores) >= AGREEING_VOTES and sum(scores) / len(scores) >= AGREEING_SCORE
    return winner if sure or agreeing else None


def combine_attributes(observations: Iterable[Attributes], min_gender_score: float = 0.0) -> Attributes | None:
    """One estimate per person from several crops: gender from agreeing votes
    (``agreed_gender``), age by mean, expression and ethnicity by vote (ties by summed score).

    Each winner's score is the mean score of the observations that voted for it. Returns None
    when there is nothing to combine.
    """
    obs = list(observations)
    if not obs:
        return None
    ages = [a.age for a in obs if a.age is not None]
    gender = agreed_gender([(a.gender, a.gender_score) for a in obs if a.gender is not None], min_gender_score)
    expression = _vote([(a.expression, a.expression_score) for a in obs if a.expression is not None], weighted=False)
    ethnicity = _vote([(a.ethnicity, a.ethnicity_score) for a in obs if a.ethnicity is not None], weighted=False)
    return Attributes(
        age=sum(ages) / len(ages) if ages else None,
        gender=gender[0] if gender else None,
        gender_score=gender[1] if gender else None,
        expression=expression[0] if expression else None,
        expression_score=expression[1] if expression else None,
        ethnicity=ethnicity[0] if ethnicity else None,
        ethnicity_score=ethnicity[1] if ethnicity else None,
    )
