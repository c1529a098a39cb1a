"""The proof table: every figure a conversion measured, its bar, and whether it holds.

The converter prints it, writes it to ``proof.txt`` and puts it in the model card; it exits
non-zero when any row misses its bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    rows: list[tuple[str, str, float, str, bool]] = field(default_factory=list)

    def add(self, model: str, metric: str, value: float, bar: str = "", ok: bool = True) -> None:
        self.rows.append((model, metric, value, bar, ok))

    @property
    def passed(self) -> bool:
        return all(r[4] for r in self.rows)

    def table(self) -> str:
        lines = [f"{'model':<12} {'metric':<34} {'value':>10}  {'bar':<9} result", "-" * 76]
        for model, metric, value, bar, ok in self.rows:
            shown = f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"
            lines.append(f"{model:<12} {metric:<34} {shown:>10}  {bar:<9} {'ok' if ok else 'FAIL' if bar else ''}")
        return "\n".join(lines)
