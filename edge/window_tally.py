"""What the aggregator has counted into one open window so far (``edge.aggregator``).

Mutable and private to the aggregator; ``copy`` gives the checkpoint its own snapshot.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from edge.people_cells import PeopleTally


@dataclass
class Tally:
    index: int  # start = index * window_s
    partial: bool
    visitors: int = 0
    frames: int = 0
    face_sum: int = 0
    peak: int = 0
    dwell: list[float] = field(default_factory=list)
    breakdowns: dict[str, Counter[str]] = field(default_factory=dict)
    observed: float = 0.0  # seconds covered by processed frames
    looked: list[float] = field(default_factory=list)  # attention seconds of each ended viewer
    viewer_breakdowns: dict[str, Counter[str]] = field(default_factory=dict)
    people: PeopleTally = field(default_factory=PeopleTally)

    def copy(self) -> Tally:
        return Tally(
            self.index,
            self.partial,
            self.visitors,
            self.frames,
            self.face_sum,
            self.peak,
            list(self.dwell),
            {k: Counter(v) for k, v in self.breakdowns.items()},
            self.observed,
            list(self.looked),
            {k: Counter(v) for k, v in self.viewer_breakdowns.items()},
            self.people.copy(),
        )


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of non-empty sorted values."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
