"""x86-64 against aarch64: ``edge analyze --json`` records and ``edge run`` windows side by side.

The tolerances are the ones the README states for LiteRT: the same faces in every picture, box
corners within 2 px, ages within 3 years and every label equal.  With the pre-processing giving
the same bytes on both architectures (edge/preprocess.py) LiteRT's outputs are measured identical;
the tolerances leave room for a kernel that rounds one quantisation step otherwise, not for a
flipped label, which is what a broken build (a wrong qemu CPU model, a miscompiled kernel) looks
like.  The same comparison is printed, not enforced, for tflite-runtime 2.14, whose
integer kernels are measured to differ more between the two architectures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LABELS = ("gender", "expression", "ethnicity")


@dataclass(frozen=True)
class Tolerance:
    box_px: float = 2.0
    age_years: float = 3.0


@dataclass
class Comparison:
    """What differs between two runs over the same pictures."""

    pictures: int = 0
    faces: int = 0
    box_px: float = 0.0
    age_years: float = 0.0
    label_flips: list[str] = field(default_factory=list)
    count_mismatches: list[str] = field(default_factory=list)

    def failures(self, tol: Tolerance) -> list[str]:
        out = list(self.count_mismatches) + list(self.label_flips)
        if self.box_px > tol.box_px:
            out.append(f"a box corner moved {self.box_px:.1f} px (tolerance {tol.box_px:g} px)")
        if self.age_years > tol.age_years:
            out.append(f"an age moved {self.age_years:.1f} y (tolerance {tol.age_years:g} y)")
        return out


def read_records(path: Path) -> dict[str, list[dict]]:
    """Faces per picture, keyed by file name (the two machines see different folders)."""
    records: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            records[f"{Path(rec['source']).name}#{rec['frame']}"] = rec["faces"]
    return records


def _by_position(faces: Sequence[Mapping]) -> list[Mapping]:
    return sorted(faces, key=lambda f: (round(f["box"][0] / 8), round(f["box"][1] / 8)))


def compare_records(ref: Mapping[str, Sequence[Mapping]], other: Mapping[str, Sequence[Mapping]]) -> Comparison:
    """Picture by picture; faces are paired by position (boxes that agree within a few pixels
    sort the same way; a pairing that goes wrong shows up as a large box difference)."""
    cmp = Comparison()
    for name in sorted(set(ref) | set(other)):
        if name not in ref or name not in other:
            cmp.count_mismatches.append(f"{name}: analysed on one side only")
            continue
        a, b = _by_position(ref[name]), _by_position(other[name])
        cmp.pictures += 1
        if len(a) != len(b):
            cmp.count_mismatches.append(f"{name}: {len(a)} faces against {len(b)}")
            continue
        for i, (fa, fb) in enumerate(zip(a, b)):
            cmp.faces += 1
            cmp.box_px = max(cmp.box_px, max(abs(x - y) for x, y in zip(fa["box"], fb["box"])))
            if "age" in fa and "age" in fb:
                cmp.age_years = max(cmp.age_years, abs(fa["age"] - fb["age"]))
            for key in LABELS:
                if fa.get(key) != fb.get(key):
                    cmp.label_flips.append(f"{name} face {i}: {key} {fa.get(key)} against {fb.get(key)}")
    return cmp


CATEGORIES = ("gender", "age", "expression", "ethnicity")


def run_totals(path: Path) -> dict:
    """What a run counted, summed over its windows.  Window boundaries follow the wall clock
    (a run that starts at another second cuts the clip elsewhere), so per-window counts of two
    runs are not comparable; their totals are."""
    totals: dict = {"visitors": 0, "ended_tracks": 0, "dwell_s": 0.0, "people": 0}
    for line in path.read_text().splitlines():
        w = json.loads(line)
        if "visitors" not in w:
            continue
        totals["visitors"] += w["visitors"]
        totals["people"] += w.get("people") or 0  # everyone, face or not (people counting on)
        totals["ended_tracks"] += w["dwell_s"]["n"]
        totals["dwell_s"] += (w["dwell_s"]["mean"] or 0.0) * w["dwell_s"]["n"]
        for cat in CATEGORIES:
            for key, n in (w.get(cat) or {}).items():
                totals[f"{cat}.{key}"] = totals.get(f"{cat}.{key}", 0) + n
    totals["dwell_s"] = round(totals["dwell_s"], 1)
    return totals


def compare_totals(ref: Mapping, other: Mapping, dwell_tolerance_s: float = 0.5) -> list[str]:
    """Counts must be equal; the summed dwell may differ by rounding of each window's mean."""
    out = []
    for key in sorted(set(ref) | set(other)):
        a, b = ref.get(key, 0), other.get(key, 0)
        if key == "dwell_s" and abs(a - b) <= dwell_tolerance_s:
            continue
        if a != b:
            out.append(f"{key}: {a} against {b}")
    return out


def table(rows: Iterable[tuple[str, Comparison]]) -> str:
    lines = [
        "| runs compared | pictures | faces | face counts equal | max box change (px) | max age change (y) "
        "| labels changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in rows:
        lines.append(
            f"| {name} | {c.pictures} | {c.faces} | {'yes' if not c.count_mismatches else 'no'} | "
            f"{c.box_px:.1f} | {c.age_years:.1f} | {len(c.label_flips)} |"
        )
    return "\n".join(lines)
