"""``edge eval``: accuracy of the full pipeline on a UTKFace-style labelled folder.

Every image goes through detector then attributes, as on the device. UTKFace
crops are tight (the face fills the image), which SSD detectors trained on
WIDER FACE mostly miss, so by default each crop is centred on a mid-grey
canvas (``--canvas 600``); ``--canvas 0`` measures the raw crops.
Per-group figures carry their group size and a 95% confidence interval.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from edge.analyzer import Analyzer
from edge.media import MediaError, read_image

AGE_BANDS = ((0, 17), (18, 29), (30, 44), (45, 59), (60, 75), (76, 200))
RACES = ("white", "black", "asian", "indian", "other")


class EvalError(ValueError):
    """The labelled folder is missing or malformed."""


@dataclass(frozen=True)
class Sample:
    file: str
    age: int
    gender: str
    race: str


@dataclass(frozen=True)
class Outcome:
    sample: Sample
    detected: bool
    age: float | None = None
    gender: str | None = None
    ethnicity: str | None = None


def read_labels(folder: Path) -> list[Sample]:
    path = folder / "labels.csv"
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder (expected a UTKFace-style folder with labels.csv)")
    if not path.is_file():
        raise EvalError(f"{path} not found: the folder needs labels.csv with columns file, age, gender, race")
    samples = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "age", "gender", "race"} - set(reader.fieldnames or [])
        if missing:
            raise EvalError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                samples.append(Sample(row["file"], int(row["age"]), row["gender"].strip().lower(),
                                      row["race"].strip().lower()))
            except ValueError:
                raise EvalError(f"{path}:{line}: age must be an integer, got {row['age']!r}") from None
    if not samples:
        raise EvalError(f"{path}: no rows")
    return samples


def on_canvas(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Centre the crop on a mid-grey square canvas; returns the canvas and the crop's region."""
    h, w = rgb.shape[:2]
    if size <= 0 or size < max(h, w):
        return rgb, (0, 0, w, h)
    canvas = np.full((size, size, 3), 128, np.uint8)
    y0, x0 = (size - h) // 2, (size - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = rgb
    return canvas, (x0, y0, x0 + w, y0 + h)


def analyse_one(analyzer: Analyzer, folder: Path, s: Sample, canvas: int) -> Outcome:
    frame, (rx1, ry1, rx2, ry2) = on_canvas(read_image(folder / s.file), canvas)
    faces = [f for f in analyzer.analyze(frame)
             if rx1 <= (f.detection.box[0] + f.detection.box[2]) / 2 <= rx2
             and ry1 <= (f.detection.box[1] + f.detection.box[3]) / 2 <= ry2]
    if not faces:
        return Outcome(s, False)
    best = max(faces, key=lambda f: f.detection.score)
    a = best.attributes
    return Outcome(s, True, a.age, a.gender, a.ethnicity)


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def proportion(hits: list[bool]) -> dict:
    n, k = len(hits), int(sum(hits))
    lo, hi = wilson(k, n)
    return {"n": n, "value": k / n if n else None, "ci95": [lo, hi] if n else None}


def mean_error(errors: list[float]) -> dict:
    n = len(errors)
    if n == 0:
        return {"n": 0, "value": None, "ci95": None}
    mean = float(np.mean(errors))
    half = 1.96 * float(np.std(errors, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "value": mean, "ci95": [mean - half, mean + half]}


def summarise(outcomes: list[Outcome], ethnicity: bool) -> dict:
    def stats(group: list[Outcome]) -> dict:
        found = [o for o in group if o.detected]
        out = {
            "n": len(group),
            "detected": len(found),
            "detection_rate": proportion([o.detected for o in group]),
            "gender_accuracy": proportion([o.gender == o.sample.gender for o in found if o.gender]),
            "gender_accuracy_adult": proportion([o.gender == o.sample.gender for o in found
                                                 if o.gender and 18 <= o.sample.age <= 75]),
            "age_mae": mean_error([abs(o.age - o.sample.age) for o in found if o.age is not None]),
            "age_mae_adult": mean_error([abs(o.age - o.sample.age) for o in found
                                         if o.age is not None and 18 <= o.sample.age <= 75]),
        }
        if ethnicity:
            out["ethnicity_accuracy"] = proportion([o.ethnicity == o.sample.race for o in found if o.ethnicity])
        return out

    overall = stats(outcomes)
    groups: dict[str, dict] = {"race_x_gender": {}, "age_band": {}}
    for race in RACES:
        for gender in ("female", "male"):
            members = [o for o in outcomes if o.sample.race == race and o.sample.gender == gender]
            if members:
                groups["race_x_gender"][f"{race} {gender}"] = stats(members)
    for lo, hi in AGE_BANDS:
        members = [o for o in outcomes if lo <= o.sample.age <= hi]
        if members:
            groups["age_band"][f"{lo}-{hi}" if hi < 200 else f"{lo}+"] = stats(members)
    result = {
        "n": overall["n"],
        "detected": overall["detected"],
        "detection_rate": overall["detection_rate"]["value"],
        "gender_accuracy": overall["gender_accuracy"]["value"],
        "gender_accuracy_adult": overall["gender_accuracy_adult"]["value"],
        "age_mae": overall["age_mae"]["value"],
        "age_mae_adult": overall["age_mae_adult"]["value"],
        "overall": overall,
        "groups": groups,
    }
    if ethnicity:
        result["ethnicity_accuracy"] = overall["ethnicity_accuracy"]["value"]
    return result


def progress(err: TextIO, label: str, total: int) -> Callable[[int], None]:
    width, last = 30, [-1]

    def update(done: int) -> None:
        pct = done * 100 // max(total, 1)
        if pct == last[0] and done != total:
            return
        last[0] = pct
        filled = width * done // max(total, 1)
        err.write(f"\r{label:<6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            err.write("\n")
        err.flush()

    return update


def evaluate(analyzer: Analyzer, folder: Path, samples: list[Sample], canvas: int, label: str,
             err: TextIO) -> tuple[list[Outcome], list[str]]:
    outcomes, problems = [], []
    tick = progress(err, label, len(samples))
    for i, s in enumerate(samples, start=1):
        try:
            outcomes.append(analyse_one(analyzer, folder, s, canvas))
        except MediaError as exc:
            problems.append(str(exc))
        tick(i)
    return outcomes, problems


def _fmt(cell: dict, pct: bool) -> str:
    if cell["value"] is None:
        return "-"
    v, (lo, hi) = cell["value"], cell["ci95"]
    if pct:
        return f"{100 * v:.1f} [{100 * lo:.1f}-{100 * hi:.1f}]"
    return f"{v:.2f} [{lo:.2f}-{hi:.2f}]" if not math.isnan(lo) else f"{v:.2f}"


def table(results: dict[str, dict], ethnicity: bool) -> str:
    """Markdown tables: overall and per group, variants side by side, n on every row."""
    variants = list(results)
    cols = [("detection_rate", True, "detected %"), ("gender_accuracy", True, "gender acc %"),
            ("gender_accuracy_adult", True, "gender acc 18-75 %"),
            ("age_mae", False, "age MAE"), ("age_mae_adult", False, "age MAE 18-75")]
    if ethnicity:
        cols.append(("ethnicity_accuracy", True, "ethnicity acc %"))
    head = "| group | n | " + " | ".join(f"{name} ({v})" for _, _, name in cols for v in variants) + " |"
    sep = "|" + "---|" * (2 + len(cols) * len(variants))
    lines = []

    def row(name: str, cells: list[dict]) -> str:
        return (f"| {name} | {cells[0]['n']} | "
                + " | ".join(_fmt(c[key], pct) for key, pct, _ in cols for c in cells) + " |")

    lines += ["Overall (95% CI in brackets)", "", head, sep,
              row("all", [results[v]["overall"] for v in variants]), ""]
    for kind, title in (("race_x_gender", "By race x gender (UTKFace labels)"), ("age_band", "By age band")):
        lines += [title, "", head, sep]
        for name in results[variants[0]]["groups"][kind]:
            lines.append(row(name, [results[v]["groups"][kind][name] for v in variants]))
        lines.append("")
    first = results[variants[0]]["groups"]["race_x_gender"]
    rated = {k: g["gender_accuracy"]["value"] for k, g in first.items() if g["gender_accuracy"]["value"] is not None}
    if rated:
        weakest = min(rated, key=rated.get)
        lines.append(f"Weakest group for gender ({variants[0]}): {weakest}, "
                     f"{100 * rated[weakest]:.1f}% (n={first[weakest]['gender_accuracy']['n']}).")
    maes = {k: g["age_mae_adult"]["value"] for k, g in first.items() if g["age_mae_adult"]["value"] is not None}
    if maes:
        worst = max(maes, key=maes.get)
        lines.append(f"Weakest group for adult age ({variants[0]}): {worst}, MAE {maes[worst]:.2f} years "
                     f"(n={first[worst]['age_mae_adult']['n']}).")
    return "\n".join(lines) + "\n"


def run(make_analyzer: Callable[[str], Analyzer], variants: list[str], folder: Path, canvas: int, as_json: bool,
        ethnicity: bool, limit: int | None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    samples = read_labels(folder)
    if limit:
        samples = samples[:limit]
    results: dict[str, dict] = {}
    for variant in variants:
        outcomes, problems = evaluate(make_analyzer(variant), folder, samples, canvas, variant, err)
        for p in problems:
            err.write(f"edge eval: {p}\n")
        results[variant] = summarise(outcomes, ethnicity)
        results[variant]["unreadable"] = len(problems)
    if as_json:
        doc = dict(results[variants[0]], variant=variants[0], canvas=canvas)
        doc["variants"] = results
        out.write(json.dumps(doc) + "\n")
    else:
        out.write(f"{len(samples)} images from {folder}, canvas {canvas or 'off'}\n\n")
        out.write(table(results, ethnicity))
    return 0
