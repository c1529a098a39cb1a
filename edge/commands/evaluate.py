"""``edge eval``: accuracy of the full pipeline on a UTKFace-style labelled folder.

Every image goes through detector then attributes, as on the device. UTKFace
crops are tight (the face fills the image), which SSD detectors trained on
WIDER FACE mostly miss, so by default each crop is centred on a mid-grey
canvas (``--canvas 600``); ``--canvas 0`` measures the raw crops.
Per-group figures carry their group size and a 95% confidence interval.

``--face-px 16,24,...`` measures how accuracy falls with face size, to set the
attribute quality gate from data: each crop is downscaled (``cv2.INTER_AREA``)
so that the *crop* is S px wide, placed at a seeded random position on a
640x480 frame with a smooth grey gradient, and the whole frame goes through
``Analyzer.analyze`` exactly as a camera frame would. UTKFace crops are tight,
so the detected box is roughly the crop; each row also gives the median
detected box short side so crop px can be read as box px. Rows report
detection rate, median detector score, adult (18-75) gender accuracy and age
MAE with 95% CIs, and adult gender accuracy among faces whose gender_score
clears 0.7 / 0.8 / 0.9 with the share of faces kept. It is int8 only unless
``--with-float``; ``--limit N`` takes a seeded sample stratified by age band,
gender and race. Cost: one full analysis per image and size; measured 154 ms
each (512 detector) on a shared 2-core machine at load ~6, so 10 sizes x 2,000
images took 51 minutes there. The time is in the output.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.analyzer import Analyzer
from edge.media import MediaError, read_image
from edge.records import Face

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
    gender_score: float | None = None
    box_short_side: float | None = None
    detector_score: float | None = None
    expression: str | None = None


# UTKFace's own file names: AGE_GENDER_RACE_DATE.jpg, gender 0 male / 1 female, race 0..4 as RACES.
UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_[^/]*\.(?:jpe?g|png)$", re.IGNORECASE)
FOLDER_LAYOUT = (
    "expected a folder of face images with either labels.csv (columns file, age, gender, race; "
    "gender male|female; race white|black|asian|indian|other) or UTKFace file names "
    "AGE_GENDER_RACE_DATE.jpg (gender 0 male, 1 female; race 0 white, 1 black, 2 asian, 3 indian, 4 other)"
)


def read_labels(folder: Path) -> list[Sample]:
    """Labels from ``labels.csv`` when the folder has one, else from UTKFace-style file names."""
    path = folder / "labels.csv"
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder ({FOLDER_LAYOUT})")
    if not path.is_file():
        return _labels_from_names(folder)
    samples = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "age", "gender", "race"} - set(reader.fieldnames or [])
        if missing:
            raise EvalError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                samples.append(
                    Sample(row["file"], int(row["age"]), row["gender"].strip().lower(), row["race"].strip().lower())
                )
            except ValueError:
                raise EvalError(f"{path}:{line}: age must be an integer, got {row['age']!r}") from None
    if not samples:
        raise EvalError(f"{path}: no rows")
    return samples


def _labels_from_names(folder: Path) -> list[Sample]:
    samples = []
    for item in sorted(folder.iterdir()):
        m = UTKFACE_NAME.match(item.name)
        if m:
            age, gender, race = int(m[1]), ("male", "female")[int(m[2])], RACES[int(m[3])]
            samples.append(Sample(item.name, age, gender, race))
    if not samples:
        raise EvalError(f"{folder}: no labels.csv and no UTKFace-style file names ({FOLDER_LAYOUT})")
    return samples


def on_canvas(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Centre the crop on a mid-grey square canvas; returns the canvas and the crop's region."""
    h, w = rgb.shape[:2]
    if size <= 0 or size < max(h, w):
        return rgb, (0, 0, w, h)
    canvas = np.full((size, size, 3), 128, np.uint8)
    y0, x0 = (size - h) // 2, (size - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = rgb
    return canvas, (x0, y0, x0 + w, y0 + h)


def analyse_one(analyzer: Analyzer, folder: Path, s: Sample, canvas: int) -> Outcome:
    frame, region = on_canvas(read_image(folder / s.file), canvas)
    return labelled_face(s, analyzer.analyze(frame), region)


def labelled_face(s: Sample, faces: list[Face], region: tuple[int, int, int, int]) -> Outcome:
    """The labelled face is the best-scoring detection whose centre lies inside the placed crop."""
    rx1, ry1, rx2, ry2 = region
    inside = [
        f
        for f in faces
        if rx1 <= (f.detection.box[0] + f.detection.box[2]) / 2 <= rx2
        and ry1 <= (f.detection.box[1] + f.detection.box[3]) / 2 <= ry2
    ]
    if not inside:
        return Outcome(s, False)
    best = max(inside, key=lambda f: f.detection.score)
    a, (x1, y1, x2, y2) = best.attributes, best.detection.box
    return Outcome(
        s,
        True,
        a.age,
        a.gender,
        a.ethnicity,
        a.gender_score,
        min(x2 - x1, y2 - y1),
        best.detection.score,
        a.expression,
    )


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
            "gender_accuracy_adult": proportion(
                [o.gender == o.sample.gender for o in found if o.gender and 18 <= o.sample.age <= 75]
            ),
            "age_mae": mean_error([abs(o.age - o.sample.age) for o in found if o.age is not None]),
            "age_mae_adult": mean_error(
                [abs(o.age - o.sample.age) for o in found if o.age is not None and 18 <= o.sample.age <= 75]
            ),
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


def evaluate(
    analyzer: Analyzer, folder: Path, samples: list[Sample], canvas: int, label: str, err: TextIO
) -> tuple[list[Outcome], list[str]]:
    outcomes, problems = [], []
    tick = progress(err, label, len(samples))
    for i, s in enumerate(samples, start=1):
        try:
            outcomes.append(analyse_one(analyzer, folder, s, canvas))
        except MediaError as exc:
            problems.append(str(exc))
        tick(i)
    return outcomes, problems


# Quantisation parity (int8 against float on the same faces). Children are split finely: near the
# 0.5 gender boundary a small shift of the logit flips many of them.
PARITY_AGE_BANDS = ((0, 5), (6, 12), (13, 17), (18, 29), (30, 44), (45, 59), (60, 75), (76, 200))
PARITY_BAR_POINTS = 3.0  # a group may lose at most this much gender accuracy to quantisation
PARITY_MIN_N = 40  # groups smaller than this are shown but not held to the bar


def paired_change(pairs: list[tuple[bool, bool]]) -> dict:
    """Accuracy of a reference and a candidate on the same faces, and the candidate's change.

    The change's 95% CI is the normal approximation of the mean paired difference (each face
    contributes -1, 0 or +1), which is tighter and more honest than comparing two independent CIs.
    """
    n = len(pairs)
    if n == 0:
        return {"n": 0, "reference": None, "candidate": None, "change": None, "ci95": None}
    d = np.array([int(c) - int(r) for r, c in pairs], dtype=np.float64)
    change = float(d.mean())
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {
        "n": n,
        "reference": sum(r for r, _ in pairs) / n,
        "candidate": sum(c for _, c in pairs) / n,
        "change": change,
        "ci95": [change - half, change + half],
    }


def parity(reference: list[Outcome], candidate: list[Outcome]) -> dict:
    """What quantisation costs each group: candidate (int8) against reference (float), face by face."""
    by_file = {o.sample.file: o for o in candidate if o.detected}
    pairs = [(r, by_file[r.sample.file]) for r in reference if r.detected and r.sample.file in by_file]

    def stats(rows: list[tuple[Outcome, Outcome]]) -> dict:
        gendered = [(r, c) for r, c in rows if r.gender and c.gender]
        aged = [(r, c) for r, c in rows if r.age is not None and c.age is not None]
        expressed = [(r, c) for r, c in rows if r.expression and c.expression]
        return {
            "n": len(rows),
            "gender": paired_change([(r.gender == r.sample.gender, c.gender == c.sample.gender) for r, c in gendered]),
            "gender_agreement": proportion([r.gender == c.gender for r, c in gendered]),
            "age_mae_change": mean_error(
                [abs(c.age - c.sample.age) - abs(r.age - r.sample.age) for r, c in aged]  # type: ignore[operator]
            ),
            "expression_agreement": proportion([r.expression == c.expression for r, c in expressed]),
            "ethnicity_agreement": proportion(
                [r.ethnicity == c.ethnicity for r, c in rows if r.ethnicity and c.ethnicity]
            ),
        }

    groups: dict[str, dict] = {"race_x_gender": {}, "age_band": {}}
    for race in RACES:
        for gender in ("female", "male"):
            members = [(r, c) for r, c in pairs if r.sample.race == race and r.sample.gender == gender]
            if members:
                groups["race_x_gender"][f"{race} {gender}"] = stats(members)
    for lo, hi in PARITY_AGE_BANDS:
        members = [(r, c) for r, c in pairs if lo <= r.sample.age <= hi]
        if members:
            groups["age_band"][f"{lo}-{hi}" if hi < 200 else f"{lo}+"] = stats(members)
    held = {k: g for k, g in groups["race_x_gender"].items() if g["gender"]["n"] >= PARITY_MIN_N}
    over = sorted(k for k, g in held.items() if -100 * g["gender"]["change"] > PARITY_BAR_POINTS)

    def lowest(key: str, field: str) -> str | None:
        rated = {k: g[key][field] for k, g in held.items() if g[key][field] is not None}
        return min(rated, key=lambda k: rated[k]) if rated else None

    return {
        "overall": stats(pairs),
        "groups": groups,
        "bar": {"max_loss_points": PARITY_BAR_POINTS, "min_n": PARITY_MIN_N, "groups_over": over},
        "weakest": {
            "gender_accuracy": lowest("gender", "candidate"),
            "gender_change": lowest("gender", "change"),
            "gender_agreement": lowest("gender_agreement", "value"),
            "expression_agreement": lowest("expression_agreement", "value"),
            "ethnicity_agreement": lowest("ethnicity_agreement", "value"),
        },
    }


def parity_table(p: dict, reference: str, candidate: str) -> str:
    """Markdown: per group, gender accuracy of both, the change with its CI, agreement, age MAE change."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    def change(cell: dict) -> str:
        if cell["change"] is None:
            return "-"
        lo, hi = cell["ci95"]
        ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if not math.isnan(lo) else ""
        return f"{100 * cell['change']:+.1f}{ci}"

    def years(cell: dict) -> str:
        if cell["value"] is None:
            return "-"
        lo, hi = cell["ci95"]
        return f"{cell['value']:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "")

    head = (
        f"| group | n | gender acc % ({reference}) | gender acc % ({candidate}) | change, points [95% CI] "
        f"| gender agreement % | age MAE change, years [95% CI] | expression agreement % |"
    )
    lines = [
        f"Quantisation parity: {candidate} against {reference} on the same faces (paired)",
        "",
    ]
    for kind, title in (("race_x_gender", "By race x gender (UTKFace labels)"), ("age_band", "By age band")):
        lines += [title, "", head, "|" + "---|" * 8]
        for name, g in [("all", p["overall"])] + list(p["groups"][kind].items()):
            lines.append(
                f"| {name} | {g['n']} | {pct(g['gender']['reference'])} | {pct(g['gender']['candidate'])} "
                f"| {change(g['gender'])} | {pct(g['gender_agreement']['value'])} | {years(g['age_mae_change'])} "
                f"| {pct(g['expression_agreement']['value'])} |"
            )
        lines.append("")
    bar, weakest = p["bar"], p["weakest"]
    over = ", ".join(bar["groups_over"]) or "none"
    lines.append(
        f"Race x gender groups of at least {bar['min_n']} faces losing more than {bar['max_loss_points']:g} "
        f"points of gender accuracy: {over}."
    )
    lines.append(
        f"Weakest groups ({candidate}): gender accuracy {weakest['gender_accuracy']}, largest gender loss "
        f"{weakest['gender_change']}, lowest gender agreement {weakest['gender_agreement']}, lowest "
        f"expression agreement {weakest['expression_agreement']}"
        + (f", lowest ethnicity agreement {weakest['ethnicity_agreement']}." if weakest["ethnicity_agreement"] else ".")
    )
    return "\n".join(lines) + "\n"


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
    cols = [
        ("detection_rate", True, "detected %"),
        ("gender_accuracy", True, "gender acc %"),
        ("gender_accuracy_adult", True, "gender acc 18-75 %"),
        ("age_mae", False, "age MAE"),
        ("age_mae_adult", False, "age MAE 18-75"),
    ]
    if ethnicity:
        cols.append(("ethnicity_accuracy", True, "ethnicity acc %"))
    head = "| group | n | " + " | ".join(f"{name} ({v})" for _, _, name in cols for v in variants) + " |"
    sep = "|" + "---|" * (2 + len(cols) * len(variants))
    lines = []

    def row(name: str, cells: list[dict]) -> str:
        return (
            f"| {name} | {cells[0]['n']} | "
            + " | ".join(_fmt(c[key], pct) for key, pct, _ in cols for c in cells)
            + " |"
        )

    lines += ["Overall (95% CI in brackets)", "", head, sep, row("all", [results[v]["overall"] for v in variants]), ""]
    for kind, title in (("race_x_gender", "By race x gender (UTKFace labels)"), ("age_band", "By age band")):
        lines += [title, "", head, sep]
        for name in results[variants[0]]["groups"][kind]:
            lines.append(row(name, [results[v]["groups"][kind][name] for v in variants]))
        lines.append("")
    first = results[variants[0]]["groups"]["race_x_gender"]
    rated = {k: g["gender_accuracy"]["value"] for k, g in first.items() if g["gender_accuracy"]["value"] is not None}
    if rated:
        weakest = min(rated, key=lambda k: rated[k])
        lines.append(
            f"Weakest group for gender ({variants[0]}): {weakest}, "
            f"{100 * rated[weakest]:.1f}% (n={first[weakest]['gender_accuracy']['n']})."
        )
    maes = {k: g["age_mae_adult"]["value"] for k, g in first.items() if g["age_mae_adult"]["value"] is not None}
    if maes:
        worst = max(maes, key=lambda k: maes[k])
        lines.append(
            f"Weakest group for adult age ({variants[0]}): {worst}, MAE {maes[worst]:.2f} years "
            f"(n={first[worst]['age_mae_adult']['n']})."
        )
    return "\n".join(lines) + "\n"


def run(
    make_analyzer: Callable[[str], Analyzer],
    variants: list[str],
    folder: Path,
    canvas: int,
    as_json: bool,
    ethnicity: bool,
    limit: int | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    samples = read_labels(folder)
    if limit:
        samples = samples[:limit]
    results: dict[str, dict] = {}
    outcomes_by: dict[str, list[Outcome]] = {}
    for variant in variants:
        outcomes, problems = evaluate(make_analyzer(variant), folder, samples, canvas, variant, err)
        for p in problems:
            err.write(f"edge eval: {p}\n")
        results[variant] = summarise(outcomes, ethnicity)
        results[variant]["unreadable"] = len(problems)
        outcomes_by[variant] = outcomes
    quantisation = None
    if "int8" in outcomes_by and "float" in outcomes_by:
        quantisation = parity(outcomes_by["float"], outcomes_by["int8"])
    if as_json:
        doc = dict(results[variants[0]], variant=variants[0], canvas=canvas)
        doc["variants"] = results
        if quantisation is not None:
            doc["parity"] = quantisation
        out.write(json.dumps(doc) + "\n")
    else:
        out.write(f"{len(samples)} images from {folder}, canvas {canvas or 'off'}\n\n")
        out.write(table(results, ethnicity))
        if quantisation is not None:
            out.write("\n" + parity_table(quantisation, "float", "int8"))
    return 0


# --face-px: accuracy against face size, in frames as the detector sees them.
FRAME_W, FRAME_H = 640, 480  # the default frame; --frame picks another
# Attributes are scored on faces detected at least this surely: the daemon describes only
# detections that may start a track (detector.score_threshold), whatever weaker ones it tracks.
STRONG_SCORE = 0.5
FACE_PX_RANGE = (4, 400)
GENDER_SCORE_CUTS = (0.7, 0.8, 0.9)
SEED = 0
PLATEAU_POINTS = 0.02
PLATEAU_MIN_N = 30  # rows with fewer rated adults are too noisy to count as on the plateau


def parse_frame(text: str) -> tuple[int, int]:
    """``WxH`` for --frame."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise EvalError(f"--frame: expected a frame size like 640x480 or 1280x720, got {text!r}")
    return w, h


def parse_face_px(text: str) -> list[int]:
    """Crop widths from ``16,24,32``: sorted, deduplicated, each one from 4 to 400 px."""
    lo, hi = FACE_PX_RANGE
    sizes = set()
    for token in text.split(","):
        try:
            value = int(token.strip())
        except ValueError:
            value = 0
        if not lo <= value <= hi:
            raise EvalError(
                f"--face-px: {token.strip()!r} in {text!r} is not a crop width in pixels "
                f"(expected comma-separated integers from {lo} to {hi}, e.g. 16,24,32)"
            )
        sizes.add(value)
    return sorted(sizes)


def stratified(samples: list[Sample], n: int, seed: int = SEED) -> list[Sample]:
    """A seeded sample of ``n`` with each age band x gender x race in proportion (systematic allocation).

    The labelled folder is usually sorted by age, so its first N would be all children.
    """
    if n >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    strata: dict[tuple[int, str, str], list[int]] = {}
    for i, s in enumerate(samples):
        band = next((k for k, (lo, hi) in enumerate(AGE_BANDS) if lo <= s.age <= hi), len(AGE_BANDS))
        strata.setdefault((band, s.gender, s.race), []).append(i)
    keys = np.empty(len(samples))
    for members in strata.values():
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random(len(members))) / len(members)
    chosen = sorted(np.argsort(keys, kind="stable")[:n].tolist())
    return [samples[i] for i in chosen]


def gradient_frame(width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """A smooth grey gradient (darker top-left, lighter bottom-right): a plain background, no edges."""
    x = np.linspace(0.0, 1.0, width)[None, :]
    y = np.linspace(0.0, 1.0, height)[:, None]
    grey = 80.0 + 70.0 * x + 30.0 * y
    return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=2)


def place(
    background: np.ndarray, crop: np.ndarray, size: int, key: str
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Downscale the crop to ``size`` px wide and paste it where ``key`` (the file name) seeds.

    The same image lands at the same relative position at every size, so sizes differ only in size.
    """
    h0, w0 = crop.shape[:2]
    frame_h, frame_w = background.shape[:2]
    w, h = size, max(1, round(h0 * size / w0))
    if h > frame_h or w > frame_w:
        raise MediaError(f"{key}: crop too big to fit a {frame_w}x{frame_h} frame at {size} px wide")
    interp = cv2.INTER_AREA if w <= w0 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (w, h), interpolation=interp)
    u, v = np.random.default_rng([SEED, zlib.crc32(key.encode())]).random(2)
    x0, y0 = int(u * (frame_w - w + 1)), int(v * (frame_h - h + 1))
    frame = background.copy()
    frame[y0 : y0 + h, x0 : x0 + w] = small
    return frame, (x0, y0, x0 + w, y0 + h)


def evaluate_sizes(
    analyzer: Analyzer,
    folder: Path,
    samples: list[Sample],
    sizes: list[int],
    label: str,
    err: TextIO,
    frame: tuple[int, int] = (FRAME_W, FRAME_H),
) -> tuple[dict[int, list[Outcome]], list[str]]:
    """Every sample at every size; each image is read once."""
    outcomes: dict[int, list[Outcome]] = {size: [] for size in sizes}
    problems: list[str] = []
    background = gradient_frame(*frame)
    tick = progress(err, label, len(samples) * len(sizes))
    done = 0
    for s in samples:
        try:
            rgb = read_image(folder / s.file)
            placed = [place(background, rgb, size, s.file) for size in sizes]
        except MediaError as exc:
            problems.append(str(exc))
        else:
            for size, (pixels, region) in zip(sizes, placed):
                outcomes[size].append(labelled_face(s, analyzer.analyze(pixels), region))
        done += len(sizes)
        tick(done)
    return outcomes, problems


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def summarise_size(size: int, outcomes: list[Outcome]) -> dict:
    """One row of the face-size table."""
    found = [o for o in outcomes if o.detected]
    strong = [o for o in found if (o.detector_score or 0.0) >= STRONG_SCORE]
    adults = [o for o in strong if 18 <= o.sample.age <= 75]
    rated = [o for o in adults if o.gender is not None]
    by_score = {}
    for cut in GENDER_SCORE_CUTS:
        kept = [o for o in rated if (o.gender_score or 0.0) >= cut]
        by_score[f"{cut:.1f}"] = {
            "min_score": cut,
            "kept": len(kept),
            "coverage": len(kept) / len(rated) if rated else None,
            "accuracy": proportion([o.gender == o.sample.gender for o in kept]),
        }
    return {
        "face_px": size,
        "n": len(outcomes),
        "detected": len(found),
        "detection_rate": proportion([o.detected for o in outcomes]),
        "detection_rate_strong": proportion(
            [o.detected and (o.detector_score or 0.0) >= STRONG_SCORE for o in outcomes]
        ),
        "box_short_side_median": _median([o.box_short_side for o in found if o.box_short_side is not None]),
        "detector_score_median": _median([o.detector_score for o in found if o.detector_score is not None]),
        "gender_accuracy": proportion([o.gender == o.sample.gender for o in strong if o.gender]),
        "gender_accuracy_adult": proportion([o.gender == o.sample.gender for o in rated]),
        "age_mae": mean_error([abs(o.age - o.sample.age) for o in strong if o.age is not None]),
        "age_mae_adult": mean_error([abs(o.age - o.sample.age) for o in adults if o.age is not None]),
        "gender_accuracy_adult_by_score": by_score,
    }


def plateau_size(rows: list[dict], points: float = PLATEAU_POINTS) -> dict | None:
    """The smallest size from which every larger size's adult gender accuracy is within ``points`` of the largest's.

    A pointer for the quality gate, not the gate itself: read it with the CIs. The scan stops at the
    first size with fewer than ``PLATEAU_MIN_N`` rated adults.
    """
    if not rows or rows[-1]["gender_accuracy_adult"]["n"] < PLATEAU_MIN_N:
        return None
    reference = rows[-1]["gender_accuracy_adult"]["value"]
    chosen = rows[-1]
    for row in reversed(rows):
        cell = row["gender_accuracy_adult"]
        if cell["n"] < PLATEAU_MIN_N or cell["value"] < reference - points:
            break
        chosen = row
    return {
        "face_px": chosen["face_px"],
        "box_short_side_median": chosen["box_short_side_median"],
        "gender_accuracy_adult": chosen["gender_accuracy_adult"]["value"],
        "reference_face_px": rows[-1]["face_px"],
        "reference_gender_accuracy_adult": reference,
        "within_points": points,
    }


def _pct(cell: dict) -> str:
    """``_fmt`` for a proportion, with Wilson bounds clipped to 0-100 (no "-0.0" at zero hits)."""
    if cell["value"] is None:
        return "-"
    lo, hi = cell["ci95"]
    return _fmt(dict(cell, ci95=[min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)]), True)


def size_table(rows: list[dict]) -> str:
    """Markdown table, one row per crop size, n on every row."""
    cuts = [f"{c:.1f}" for c in GENDER_SCORE_CUTS]
    head = (
        f"| crop px | n | detected % | detected % at score>={STRONG_SCORE} | box short side px (median) "
        "| det score (median) "
        "| gender acc 18-75 % | age MAE 18-75 | "
        + " | ".join(f"gender acc 18-75 % at score>={c} (kept %)" for c in cuts)
        + " |"
    )
    lines = [head, "|" + "---|" * (8 + len(cuts))]
    for r in rows:
        box, det = r["box_short_side_median"], r["detector_score_median"]
        cells = [
            str(r["face_px"]),
            str(r["n"]),
            _pct(r["detection_rate"]),
            _pct(r["detection_rate_strong"]),
            "-" if box is None else f"{box:.1f}",
            "-" if det is None else f"{det:.2f}",
            _pct(r["gender_accuracy_adult"]) + f" n={r['gender_accuracy_adult']['n']}",
            _fmt(r["age_mae_adult"], False),
        ]
        for c in cuts:
            cut = r["gender_accuracy_adult_by_score"][c]
            cov = cut["coverage"]
            cells.append(_pct(cut["accuracy"]) + ("" if cov is None else f" ({100 * cov:.0f})"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_face_px(
    make_analyzer: Callable[[str], Analyzer],
    variants: list[str],
    folder: Path,
    sizes: list[int],
    as_json: bool,
    limit: int | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    frame: tuple[int, int] = (FRAME_W, FRAME_H),
) -> int:
    """``edge eval --face-px``: the face-size table per variant, as text or one JSON object."""
    out, err = out or sys.stdout, err or sys.stderr
    if limit is not None and limit < 1:
        raise EvalError(f"--limit: {limit} is not a number of images (expected 1 or more)")
    every = read_labels(folder)
    samples = stratified(every, limit) if limit else every
    results: dict[str, dict] = {}
    for variant in variants:
        analyzer = make_analyzer(variant)
        start = time.perf_counter()
        outcomes, problems = evaluate_sizes(analyzer, folder, samples, sizes, variant, err, frame)
        seconds = time.perf_counter() - start
        for p in problems:
            err.write(f"edge eval: {p}\n")
        rows = [summarise_size(size, outcomes[size]) for size in sizes]
        analyses = sum(len(v) for v in outcomes.values())
        results[variant] = {
            "detector_input": analyzer.config.detector_input,
            "detection_plan": analyzer.detector.plan(*frame).describe(),
            "score_threshold": analyzer.config.score_threshold,
            "sizes": rows,
            "plateau": plateau_size(rows),
            "unreadable": len(problems),
            "seconds": seconds,
            "ms_per_analysis": 1000 * seconds / analyses if analyses else None,
        }
    sampled = f"stratified sample of {len(samples)} of {len(every)}" if len(samples) < len(every) else "all"
    if as_json:
        doc = dict(results[variants[0]], variant=variants[0], mode="face_px", images=len(samples), sample=sampled)
        doc.update(frame=list(frame), background="grey gradient", seed=SEED, variants=results)
        out.write(json.dumps(doc) + "\n")
        return 0
    out.write(
        f"{len(samples)} images from {folder} ({sampled}); each crop downscaled (INTER_AREA) to S px wide "
        f"and placed at a seeded position on a {frame[0]}x{frame[1]} grey-gradient frame.\n"
        "crop px is the crop's width; UTKFace crops are tight, so the detected box is about the crop: "
        f"see the box column. Attribute columns count faces detected at score >= {STRONG_SCORE} (the ones the "
        "daemon describes). 95% CI in brackets; kept % = share of those adults at that gender_score.\n"
    )
    for variant, res in results.items():
        out.write(
            f"\n{variant}, detector input {res['detector_input']}, threshold {res['score_threshold']}, "
            f"{res['detection_plan']}: {len(samples) * len(sizes)} analyses in "
            f"{res['seconds']:.0f} s ({res['ms_per_analysis'] or 0:.1f} ms each)\n\n"
        )
        out.write(size_table(res["sizes"]))
        gate = res["plateau"]
        if gate is not None:
            box = gate["box_short_side_median"]
            out.write(
                f"\nSmallest crop whose adult gender accuracy (and every larger one's) is within "
                f"{100 * gate['within_points']:.0f} points of {gate['reference_face_px']} px "
                f"({100 * gate['reference_gender_accuracy_adult']:.1f}%): {gate['face_px']} px"
                f"{'' if box is None else f' (median box short side {box:.0f} px)'}.\n"
            )
    return 0
