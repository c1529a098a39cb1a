"""``edge eval``'s results as Markdown text: accuracy, parity and face-size tables.

The numbers are computed elsewhere as typed rows; this module only formats them, with n on every
row and the 95% interval next to every figure, so a reader can tell a small group from a weak one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from edge.evaluation.accuracy import AccuracyRun, GroupAccuracy
from edge.evaluation.face_size import GENDER_SCORE_CUTS, STRONG_SCORE, FaceSizeRun, SizeRow
from edge.evaluation.labels import GROUP_KINDS
from edge.evaluation.parity import Parity
from edge.evaluation.stats import Estimate, PairedChange


def _fmt(cell: Estimate, pct: bool) -> str:
    if cell.value is None or cell.ci95 is None:
        return "-"
    v, (lo, hi) = cell.value, cell.ci95
    if pct:
        return f"{100 * v:.1f} [{100 * lo:.1f}-{100 * hi:.1f}]"
    return f"{v:.2f} [{lo:.2f}-{hi:.2f}]" if not math.isnan(lo) else f"{v:.2f}"


def _pct(cell: Estimate) -> str:
    """``_fmt`` for a proportion, with Wilson bounds clipped to 0-100 (no "-0.0" at zero hits)."""
    if cell.value is None or cell.ci95 is None:
        return "-"
    lo, hi = cell.ci95
    return _fmt(Estimate(cell.n, cell.value, (min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0))), True)


Column = tuple[Callable[[GroupAccuracy], Estimate | None], bool, str]  # the cell, a percentage?, header


def table(run: AccuracyRun) -> str:
    """Markdown tables: overall and per group, variants side by side, n on every row."""
    results, variants = run.results, run.variants
    cols: list[Column] = [
        (lambda g: g.detection_rate, True, "detected %"),
        (lambda g: g.gender_accuracy, True, "gender acc %"),
        (lambda g: g.gender_accuracy_adult, True, "gender acc 18-75 %"),
        (lambda g: g.age_mae, False, "age MAE"),
        (lambda g: g.age_mae_adult, False, "age MAE 18-75"),
    ]
    if run.ethnicity:
        cols.append((lambda g: g.ethnicity_accuracy, True, "ethnicity acc %"))
    head = "| group | n | " + " | ".join(f"{name} ({v})" for _, _, name in cols for v in variants) + " |"
    sep = "|" + "---|" * (2 + len(cols) * len(variants))
    lines = []

    def cell(group: GroupAccuracy, pick: Callable[[GroupAccuracy], Estimate | None], pct: bool) -> str:
        estimate = pick(group)
        return "-" if estimate is None else _fmt(estimate, pct)

    def row(name: str, cells: list[GroupAccuracy]) -> str:
        return (
            f"| {name} | {cells[0].n} | "
            + " | ".join(cell(c, pick, pct) for pick, pct, _ in cols for c in cells)
            + " |"
        )

    lines += ["Overall (95% CI in brackets)", "", head, sep, row("all", [results[v].overall for v in variants]), ""]
    for kind, title in GROUP_KINDS:
        lines += [title, "", head, sep]
        for name in results[variants[0]].groups.of_kind(kind):
            lines.append(row(name, [results[v].groups.of_kind(kind)[name] for v in variants]))
        lines.append("")
    first = results[variants[0]].groups.race_x_gender
    rated = {k: v for k, g in first.items() if (v := g.gender_accuracy.value) is not None}
    if rated:
        weakest = min(rated, key=lambda k: rated[k])
        lines.append(
            f"Weakest group for gender ({variants[0]}): {weakest}, "
            f"{100 * rated[weakest]:.1f}% (n={first[weakest].gender_accuracy.n})."
        )
    maes = {k: v for k, g in first.items() if (v := g.age_mae_adult.value) is not None}
    if maes:
        worst = max(maes, key=lambda k: maes[k])
        lines.append(
            f"Weakest group for adult age ({variants[0]}): {worst}, MAE {maes[worst]:.2f} years "
            f"(n={first[worst].age_mae_adult.n})."
        )
    return "\n".join(lines) + "\n"


def parity_table(p: Parity, reference: str, candidate: str) -> str:
    """Markdown: per group, gender accuracy of both, the change with its CI, agreement, age MAE change."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    def change(cell: PairedChange) -> str:
        if cell.change is None or cell.ci95 is None:
            return "-"
        lo, hi = cell.ci95
        ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if not math.isnan(lo) else ""
        return f"{100 * cell.change:+.1f}{ci}"

    def years(cell: Estimate) -> str:
        if cell.value is None or cell.ci95 is None:
            return "-"
        lo, hi = cell.ci95
        return f"{cell.value:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else "")

    head = (
        f"| group | n | gender acc % ({reference}) | gender acc % ({candidate}) | change, points [95% CI] "
        f"| gender agreement % | age MAE change, years [95% CI] | expression agreement % |"
    )
    lines = [
        f"Quantisation parity: {candidate} against {reference} on the same faces (paired)",
        "",
    ]
    for kind, title in GROUP_KINDS:
        lines += [title, "", head, "|" + "---|" * 8]
        for name, g in [("all", p.overall), *p.groups.of_kind(kind).items()]:
            lines.append(
                f"| {name} | {g.n} | {pct(g.gender.reference)} | {pct(g.gender.candidate)} "
                f"| {change(g.gender)} | {pct(g.gender_agreement.value)} | {years(g.age_mae_change)} "
                f"| {pct(g.expression_agreement.value)} |"
            )
        lines.append("")
    bar, weakest = p.bar, p.weakest
    over = ", ".join(bar.groups_over) or "none"
    lines.append(
        f"Race x gender groups of at least {bar.min_n} faces losing more than {bar.max_loss_points:g} "
        f"points of gender accuracy: {over}."
    )
    lines.append(
        f"Weakest groups ({candidate}): gender accuracy {weakest.gender_accuracy}, largest gender loss "
        f"{weakest.gender_change}, lowest gender agreement {weakest.gender_agreement}, lowest "
        f"expression agreement {weakest.expression_agreement}"
        + (f", lowest ethnicity agreement {weakest.ethnicity_agreement}." if weakest.ethnicity_agreement else ".")
    )
    return "\n".join(lines) + "\n"


def accuracy_report(run: AccuracyRun) -> str:
    """``edge eval --utkface``'s text: what ran, the accuracy tables, and parity when both variants ran."""
    text = f"{run.images} images from {run.folder}, canvas {run.canvas or 'off'}\n\n" + table(run)
    if run.parity is not None:
        text += "\n" + parity_table(run.parity, "float", "int8")
    return text


def size_table(rows: tuple[SizeRow, ...] | list[SizeRow]) -> str:
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
        box, det = r.box_short_side_median, r.detector_score_median
        cells = [
            str(r.face_px),
            str(r.n),
            _pct(r.detection_rate),
            _pct(r.detection_rate_strong),
            "-" if box is None else f"{box:.1f}",
            "-" if det is None else f"{det:.2f}",
            _pct(r.gender_accuracy_adult) + f" n={r.gender_accuracy_adult.n}",
            _fmt(r.age_mae_adult, False),
        ]
        for c in cuts:
            cut = r.gender_accuracy_adult_by_score[c]
            cov = cut.coverage
            cells.append(_pct(cut.accuracy) + ("" if cov is None else f" ({100 * cov:.0f})"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def face_size_report(run: FaceSizeRun) -> str:
    """``edge eval --face-px``'s text: how the frames were made, then each variant's table and plateau."""
    frame = run.frame
    parts = [
        f"{run.images} images from {run.folder} ({run.sample}); each crop downscaled (INTER_AREA) to S px wide "
        f"and placed at a seeded position on a {frame[0]}x{frame[1]} grey-gradient frame.\n"
        "crop px is the crop's width; UTKFace crops are tight, so the detected box is about the crop: "
        f"see the box column. Attribute columns count faces detected at score >= {STRONG_SCORE} (the ones the "
        "daemon describes). 95% CI in brackets; kept % = share of those adults at that gender_score.\n"
    ]
    for variant, res in run.results.items():
        parts.append(
            f"\n{variant}, detector input {res.detector_input}, threshold {res.score_threshold}, "
            f"{res.detection_plan}: {run.images * len(run.sizes)} analyses in "
            f"{res.seconds:.0f} s ({res.ms_per_analysis or 0:.1f} ms each)\n\n"
        )
        parts.append(size_table(res.sizes))
        gate = res.plateau
        if gate is not None and gate.reference_gender_accuracy_adult is not None:
            box = gate.box_short_side_median
            parts.append(
                f"\nSmallest crop whose adult gender accuracy (and every larger one's) is within "
                f"{100 * gate.within_points:.0f} points of {gate.reference_face_px} px "
                f"({100 * gate.reference_gender_accuracy_adult:.1f}%): {gate.face_px} px"
                f"{'' if box is None else f' (median box short side {box:.0f} px)'}.\n"
            )
    return "".join(parts)
