"""A window's viewers and attention time, with the minimum-cell rule (``edge.aggregator``'s rules,
extended to a split of the visitors into viewers and the rest).

Viewers are a part of the ``n`` visitors whose track ended in the window, so the published
viewer count also tells the non-viewers (``n - viewers``): the count is null when either side
holds 1..k-1 people (both sides of a small ``n`` do). Viewers by gender or age are a second
split of each published cell of that breakdown, so a cell is published only when the cell itself
is, and its viewers and its non-viewers are each 0 or at least k; while the hidden cells together
hold 1..k-1 viewers or 1..k-1 non-viewers, the smallest remaining cell is hidden too (the
complement the published totals would otherwise give away).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from edge.attention import median
from edge.suppression import hidden_pairs, risky
from edge.window import Attention


def attention_cells(
    looked: Sequence[float],
    ended: int,
    viewer_counts: Mapping[str, Counter[str]],
    cells: Mapping[str, Mapping[str, int]],
    hidden: Mapping[str, set[str]],
    k: int,
) -> tuple[Attention, list[str]]:
    """The published ``Attention`` of a window and the paths it suppressed.

    ``looked``: attention seconds of each viewer among the ``ended`` visitors; ``viewer_counts``:
    the viewers per breakdown cell; ``cells``: every ended visitor per cell of the breakdowns
    viewers are split by (their labels in payload order); ``hidden``: each breakdown's cells the
    aggregator already hides."""
    v = len(looked)
    suppressed: list[str] = []
    viewers: int | None = v
    if risky(v, k) or risky(ended - v, k):
        viewers = None
        suppressed.append("viewers")
    rate = round(v / ended, 3) if viewers is not None and ended else None
    if viewers is None:
        suppressed.append("viewer_rate")
    seconds_sum = seconds_median = None
    if viewers is not None:
        seconds_sum = round(sum(looked), 1)
        seconds_median = round(median(looked), 1) if looked else None
    else:
        suppressed += ["attention_s.sum", "attention_s.median"]
    by: dict[str, dict[str, int | None]] = {}
    for name, everyone in cells.items():
        counts = dict(everyone)
        mine = {label: viewer_counts.get(name, Counter()).get(label, 0) for label in counts}
        if viewers is None:
            gone = set(counts)
        elif v == 0:
            gone = set()  # no viewer anywhere: the zeros follow from viewers = 0
        else:
            gone = hidden_pairs(mine, counts, hidden.get(name, set()), k)
        by[name] = {label: (None if label in gone else mine[label]) for label in counts}
        suppressed += [f"viewers_by.{name}.{label}" for label in counts if label in gone]
    return Attention(viewers, rate, seconds_sum, seconds_median, by), suppressed
