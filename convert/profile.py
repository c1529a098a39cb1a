"""Per-operator latency profile of the shipped int8 models on this CPU.

LiteRT's Python API has no op profiler and the ``benchmark_model`` binary is not at hand, so the
profile is measured by truncation: the operators of a .tflite subgraph are stored in execution
order, so a copy of the model that keeps only ``operators[:k]`` runs exactly the first k ops.
Timing every prefix k = 0..N (XNNPACK on, as on the device) gives a cumulative curve t(k), and
op k-1 costs t(k) - t(k-1). Each prefix exposes as outputs all the tensors its ops produce and no
kept op consumes (the output of op k-1 among them), so no kept op is dead code a runtime could drop.

A shared machine's load changes over seconds, and a difference of two noisy times is noisier
still. So the full model and all prefixes are timed interleaved, in rounds that invoke each of
them once; an op's time is the median over rounds of the difference within the round, clipped at
0 (the raw cumulative t(k) is reported too), and ops are also summed by type. Whether XNNPACK
takes an op is read from the DELEGATE nodes the interpreter appends after delegation. The built-in
reference kernels (no XNNPACK) are timed for the full model, and per op with ``--reference ops``.

Run ``python -m convert.profile [--models-dir models] [--threads 2] [--runs 30] [--markdown]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .op_timing import profile_model
from .profile_report import cpu_summary, header, model_markdown, text_summary

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m convert.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--pattern", default="*_int8.tflite", help="model files to profile (glob)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30, help="rounds (timed invokes of each prefix)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--reference",
        choices=("none", "total", "ops"),
        default="total",
        help="reference kernels (no XNNPACK): skip, full model only (default), or per op too (reliable with "
        "--threads 1: their multi-threaded kernels are erratic on a small machine)",
    )
    parser.add_argument("--markdown", action="store_true", help="full markdown report, not one line per model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    paths = sorted(args.models_dir.glob(args.pattern))
    if not paths:
        log.error("no %s in %s", args.pattern, args.models_dir)
        return 1
    if args.markdown:
        sys.stdout.write(header(args.threads, args.runs, args.warmup) + "\n")
    else:
        sys.stdout.write(cpu_summary() + "\n")
    for path in paths:
        profile = profile_model(path, args.threads, args.runs, args.warmup, args.reference)
        sys.stdout.write(model_markdown(profile) + "\n" if args.markdown else text_summary(profile))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
