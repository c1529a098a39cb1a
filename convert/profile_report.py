"""The per-operator latency profile as text: a markdown report (summary, op types, slowest ops, ops
outside XNNPACK, float ops, every op) or one line per model.

``python -m convert.profile --markdown`` writes the tables of models/README.md's profile section.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .op_timing import SLOW_ROUND, Profile, slow_rounds
from .tflite_ops import Op

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avxvnni", "avx512_bf16", "amx_int8")
TOP_OPS = 10


def cpu_summary() -> str:
    model_name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model_name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    marks = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)
    return f"CPU: {model_name}, {os.cpu_count()} logical cores. Flags: {marks}."


def header(threads: int, runs: int, warmup: int) -> str:
    from importlib.metadata import version

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            "# Per-operator latency profile (truncation method)",
            "",
            f"- {cpu_summary()}",
            f"- ai-edge-litert {version('ai-edge-litert')}, numpy {np.__version__}; {threads} threads, XNNPACK on; "
            f"{runs} rounds after {warmup} warm-up rounds, each invoking the full model and every truncated prefix "
            f"once; load average at start {load}.",
            "- t(k) = median invoke time of the prefix with k ops; per-op ms = median over rounds of "
            "t(k) - t(k-1) within the round, clipped at 0; `cum ms` = raw t(k). % is of the sum of per-op ms. "
            "`ref` = built-in reference kernels (no XNNPACK), a third of the rounds.",
            "",
        ]
    )


def fmt_macs(macs: int) -> str:
    if macs >= 10**9:
        return f"{macs / 1e9:.2f} G"
    if macs >= 10**6:
        return f"{macs / 1e6:.1f} M"
    return f"{macs / 1e3:.1f} k" if macs else ""


def gmacs(macs: int, ms: float) -> str:
    return f"{macs / ms / 1e6:.1f}" if macs and ms > 0.0005 else ""


def table(headings: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headings) + " |", "|" + "|".join("---" for _ in headings) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def op_cells(op: Op) -> list[str]:
    weights = op.weights
    return [
        str(op.index),
        op.kind,
        ", ".join(str(t) for t in op.activations),
        str(weights) if weights else "",
        ", ".join(str(t) for t in op.outputs),
        fmt_macs(op.macs),
    ]


def reference_per_op(p: Profile) -> list[float] | None:
    return p.reference.per_op if p.reference and p.reference.has_ops else None


def summary_lines(p: Profile) -> list[str]:
    spread = np.percentile(p.xnnpack.full, [10, 90])
    slow = slow_rounds(p.xnnpack)
    lines = [
        f"## {p.name}",
        "",
        f"- Input {p.input}; {len(p.ops)} ops; {sum(op.is_float for op in p.ops)} with float activations.",
        f"- Full model, XNNPACK: **{p.total_ms:.3f} ms** median (p10-p90 {spread[0]:.3f}-{spread[1]:.3f} ms; "
        f"{slow} of {len(p.xnnpack.full)} rounds over {SLOW_ROUND}x p10).",
        f"- Truncation sweep: t(N) = {p.xnnpack.cumulative[-1]:.3f} ms, sum of per-op ms "
        f"{sum(p.xnnpack.per_op):.3f} ms, empty model t(0) = {p.xnnpack.cumulative[0] * 1000:.1f} us.",
    ]
    if p.reference:
        ref_ms = p.reference.total_ms
        lines.append(f"- Full model, reference kernels: {ref_ms:.3f} ms ({ref_ms / p.total_ms:.1f}x the XNNPACK time).")
    lines += [
        f"- MACs (conv, depthwise, dense): {fmt_macs(p.total_macs)} -> "
        f"**{gmacs(p.total_macs, p.total_ms)} GMAC/s** achieved over the full model.",
        f"- XNNPACK: {len(p.delegated)} of {len(p.ops)} ops in {p.partitions} partition(s).",
        *(f"- Note: {note}" for note in p.notes),
        "",
    ]
    return lines


def by_type_lines(p: Profile) -> list[str]:
    per_op, total = p.xnnpack.per_op, sum(p.xnnpack.per_op) or 1.0
    ref = reference_per_op(p)
    rows = []
    for kind in sorted({op.kind for op in p.ops}, key=lambda k: -sum(per_op[o.index] for o in p.ops if o.kind == k)):
        members = [op for op in p.ops if op.kind == kind]
        ms = sum(per_op[op.index] for op in members)
        macs = sum(op.macs for op in members)
        row = [kind, len(members), f"{ms:.3f}", f"{100 * ms / total:.1f}", fmt_macs(macs), gmacs(macs, ms)]
        if ref:
            row.append(f"{sum(ref[op.index] for op in members):.3f}")
        rows.append(row)
    headings = ["op type", "count", "ms", "%", "MACs", "GMAC/s"] + (["ref ms"] if ref else [])
    return ["### By op type", "", *table(headings, rows)]


def op_rows(p: Profile, ops: Sequence[Op]) -> tuple[list[str], list[list[object]]]:
    per_op, total = p.xnnpack.per_op, sum(p.xnnpack.per_op) or 1.0
    ref = reference_per_op(p)
    headings = ["#", "op", "inputs", "weights", "output", "MACs", "XNNPACK", "ms", "%", "cum ms"]
    headings += ["ref ms"] if ref else []
    rows = []
    for op in ops:
        ms = per_op[op.index]
        row: list[object] = [*op_cells(op), "yes" if op.index in p.delegated else "**no**"]
        row += [f"{ms:.3f}", f"{100 * ms / total:.1f}", f"{p.xnnpack.cumulative[op.index + 1]:.3f}"]
        if ref:
            row.append(f"{ref[op.index]:.3f}")
        rows.append(row)
    return headings, rows


def model_markdown(p: Profile) -> str:
    per_op = p.xnnpack.per_op
    top = sorted(p.ops, key=lambda op: -per_op[op.index])[:TOP_OPS]
    outside = [op for op in p.ops if op.index not in p.delegated]
    floats = [op for op in p.ops if op.is_float]
    lines = summary_lines(p) + by_type_lines(p)
    lines += [f"### Top {TOP_OPS} ops", "", *table(*op_rows(p, top))]
    lines += ["### Ops not taken by XNNPACK", ""]
    lines += table(*op_rows(p, outside)) if outside else ["None: every op runs inside the XNNPACK delegate.", ""]
    lines += ["### Float ops (float activations in or out)", ""]
    lines += table(*op_rows(p, floats)) if floats else ["None.", ""]
    lines += ["### All ops", "", *table(*op_rows(p, p.ops))]
    return "\n".join(lines)


def text_summary(p: Profile) -> str:
    per_op, total = p.xnnpack.per_op, sum(p.xnnpack.per_op) or 1.0
    kinds: dict[str, float] = {}
    for op in p.ops:
        kinds[op.kind] = kinds.get(op.kind, 0.0) + per_op[op.index]
    top = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
    ref = f", reference {p.reference.total_ms:.2f} ms" if p.reference else ""
    return (
        f"{p.name}: {p.total_ms:.2f} ms{ref}, {fmt_macs(p.total_macs)}MAC, {gmacs(p.total_macs, p.total_ms)} GMAC/s, "
        f"XNNPACK {len(p.delegated)}/{len(p.ops)} ops; {top}\n"
    )
