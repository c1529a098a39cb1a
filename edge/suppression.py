"""The minimum-cell rule (k) on one breakdown, and on a breakdown split in two.

The rules are stated in ``edge.aggregator``'s docstring; these are the functions both the device
(``edge.aggregator``, ``edge.viewers``) and the fleet's roll-ups apply.
"""

from __future__ import annotations


def suppressed_cells(cells: dict[str, int], k: int) -> set[str]:
    """Cells of one breakdown to publish as null (rule 3 of ``edge.aggregator``)."""
    total = sum(cells.values())
    if total == 0:
        return set()
    if total < k:
        return set(cells)
    hidden = {c for c, v in cells.items() if 1 <= v < k}
    while hidden and sum(cells[c] for c in hidden) < k:
        order = list(cells)
        rest = sorted((v, order.index(c), c) for c, v in cells.items() if c not in hidden and v > 0)
        hidden.add(rest[0][2])  # non-empty: the total is >= k
    return hidden


def risky(count: int, k: int) -> bool:
    """A count that would expose a small group: 1..k-1 people (zero is safe)."""
    return 1 <= count < k


def hidden_pairs(viewers: dict[str, int], everyone: dict[str, int], hidden_main: set[str], k: int) -> set[str]:
    """Cells of a breakdown split in two (``viewers`` of each cell and the rest of ``everyone``) to
    publish as null: rule 4 of ``edge.aggregator`` (``edge.viewers``). ``hidden_main``: the
    cells the breakdown itself hides."""
    others = {c: everyone[c] - viewers[c] for c in everyone}
    hidden = {c for c in everyone if c in hidden_main or risky(viewers[c], k) or risky(others[c], k)}
    while True:
        short = [
            row
            for row in (viewers, others)
            if risky(sum(row[c] for c in hidden), k) and any(row[c] > 0 for c in everyone if c not in hidden)
        ]
        if not short:
            return hidden
        row = short[0]
        order = list(everyone)
        rest = sorted((row[c], order.index(c), c) for c in everyone if c not in hidden and row[c] > 0)
        hidden.add(rest[0][2])
