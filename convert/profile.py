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
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils

log = logging.getLogger(__name__)

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avxvnni", "avx512_bf16", "amx_int8")
FLOAT_TYPES = ("FLOAT32", "FLOAT16", "BFLOAT16", "FLOAT64")
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SHORT_DTYPE = {"FLOAT32": "f32", "FLOAT16": "f16", "INT8": "i8", "UINT8": "u8", "INT16": "i16", "INT32": "i32"}
TOP_OPS = 10
SLOW_ROUND = 1.25  # a round this much slower than the fastest tenth is counted as disturbed by other load

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    dtype: str
    constant: bool

    def __str__(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{dims} {SHORT_DTYPE.get(self.dtype, self.dtype.lower())}"


@dataclass(frozen=True)
class Op:
    index: int
    kind: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    macs: int

    @property
    def activations(self) -> tuple[Tensor, ...]:
        return tuple(t for t in self.inputs if not t.constant)

    @property
    def weights(self) -> Tensor | None:
        return self.inputs[1] if self.kind in MAC_OPS and len(self.inputs) > 1 else None

    @property
    def is_float(self) -> bool:
        """Float activations in or out (QUANTIZE and DEQUANTIZE included)."""
        return any(t.dtype in FLOAT_TYPES for t in self.activations + self.outputs)


@dataclass
class Timing:
    """Invoke times (ms) of one sweep: each round runs the full model, then every prefix once."""

    full: list[float]
    rounds: np.ndarray  # (rounds, prefixes): column k ran ops[:k]; no columns when prefixes were not timed

    @property
    def total_ms(self) -> float:
        return statistics.median(self.full)

    @property
    def has_ops(self) -> bool:
        return self.rounds.shape[1] > 1

    @property
    def cumulative(self) -> list[float]:
        """t(k): the median over rounds of the prefix with k ops."""
        return [float(x) for x in np.median(self.rounds, axis=0)]

    @property
    def per_op(self) -> list[float]:
        """t(k) - t(k-1) taken within each round (milliseconds apart, so slow changes of the machine's load
        cancel), median over rounds, clipped at 0."""
        return [max(0.0, float(x)) for x in np.median(np.diff(self.rounds, axis=1), axis=0)]


@dataclass
class Profile:
    name: str
    input: Tensor
    ops: list[Op]
    xnnpack: Timing
    delegated: set[int]
    partitions: int
    reference: Timing | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return self.xnnpack.total_ms

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)


# --- the model ------------------------------------------------------------------------------------


def op_kind(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode}"
    return _OP_NAMES.get(builtin, str(builtin))


def tensor_info(model: schema.ModelT, index: int) -> Tensor:
    tensor = model.subgraphs[0].tensors[index]
    buffer = model.buffers[tensor.buffer] if tensor.buffer else None
    constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
    return Tensor(shape, _TYPE_NAMES.get(tensor.type, str(tensor.type)), constant)


def count_macs(kind: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> int:
    """Multiply-accumulates of the ops that do nearly all of the arithmetic, from their shapes."""
    if kind not in MAC_OPS or len(inputs) < 2 or not outputs:
        return 0
    out, weights = outputs[0].shape, inputs[1].shape
    if kind == "CONV_2D":  # weights (Cout, kh, kw, Cin)
        return int(np.prod(out)) * int(np.prod(weights[1:]))
    if kind == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, Cout)
        return int(np.prod(out)) * weights[1] * weights[2]
    return int(np.prod(out)) * weights[-1]  # FULLY_CONNECTED: weights (units, K)


def describe_ops(model: schema.ModelT) -> list[Op]:
    ops = []
    for index, op in enumerate(model.subgraphs[0].operators):
        kind = op_kind(model, op)
        inputs = tuple(tensor_info(model, int(t)) for t in op.inputs if t >= 0)
        outputs = tuple(tensor_info(model, int(t)) for t in op.outputs if t >= 0)
        ops.append(Op(index, kind, inputs, outputs, count_macs(kind, inputs, outputs)))
    return ops


def prefix_outputs(operators: Sequence[schema.OperatorT], k: int) -> list[int]:
    """Tensors produced by operators[:k] that none of them consumes: the output of op k-1 and any
    branch that only later ops would read (kept as outputs so that no kept op is dead code)."""
    consumed = {int(t) for op in operators[:k] for t in op.inputs}
    produced = [int(t) for op in operators[:k] for t in op.outputs if t >= 0]
    return [t for t in produced if t not in consumed]


def prefixes(model_bytes: bytes) -> Iterator[bytes]:
    """The model truncated after 0, 1, ..., N operators (0: no op, its input as output)."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    operators = list(graph.operators)
    model.signatureDefs = []  # they name the original outputs
    for k in range(len(operators) + 1):
        graph.operators = operators[:k]
        graph.outputs = prefix_outputs(operators, k) if k else list(graph.inputs)
        yield bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# --- timing ---------------------------------------------------------------------------------------


def make_interpreter(model_bytes: bytes, threads: int, xnnpack: bool = True) -> Interpreter:
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_content=model_bytes, num_threads=threads, experimental_op_resolver_type=resolver)
    for detail in interp.get_input_details():
        shape = [1 if d < 0 else int(d) for d in detail["shape_signature"]]
        if list(detail["shape"]) != shape:
            interp.resize_tensor_input(detail["index"], shape)
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], random_input(rng, tuple(detail["shape"]), detail["dtype"]))
    return interp


def random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    return rng.uniform(0.0, 255.0, shape).astype(dtype)


def invoke_ms(interp: Interpreter) -> float:
    start = time.perf_counter_ns()
    interp.invoke()
    return (time.perf_counter_ns() - start) / 1e6


def settled_invoke_ms(interp: Interpreter) -> float:
    """Time the second of two back-to-back invokes: the first brings this model's weights back into the caches
    and lets the thread pool of the previously run interpreter go idle (the reference kernels' pool otherwise
    competes for the cores), as consecutive invokes of one model would."""
    interp.invoke()
    return invoke_ms(interp)


def sweep(model_bytes: bytes, threads: int, runs: int, warmup: int, xnnpack: bool = True, ops: bool = True) -> Timing:
    """Time the full model and (with ops) all its prefixes, interleaved: the load of a shared machine changes
    over seconds, so every round times each of them once, one after the other."""
    models = [model_bytes, *(prefixes(model_bytes) if ops else [])]
    interpreters = [make_interpreter(m, threads, xnnpack) for m in models]
    for _ in range(warmup):
        for interp in interpreters:
            interp.invoke()
    times = np.array([[settled_invoke_ms(interp) for interp in interpreters] for _ in range(runs)])
    return Timing([float(x) for x in times[:, 0]], times[:, 1:])


def delegated_ops(model_bytes: bytes, threads: int, n_ops: int) -> tuple[set[int], int]:
    """Original ops inside an XNNPACK partition, and the number of partitions.

    After delegation the interpreter keeps the original nodes and appends one DELEGATE node per
    partition, whose inputs and outputs are the partition's boundary tensors; walking back from
    its outputs to its inputs collects the ops it replaced.
    """
    details = make_interpreter(model_bytes, threads)._get_ops_details()
    producer = {int(t): d["index"] for d in details[:n_ops] for t in d["outputs"]}
    inputs_of = {d["index"]: [int(t) for t in d["inputs"] if t >= 0] for d in details[:n_ops]}
    partitions = [d for d in details[n_ops:] if d["op_name"] == "DELEGATE"]
    taken: set[int] = set()
    for node in partitions:
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or op in taken:
                continue
            taken.add(op)
            stack.extend(inputs_of[op])
    return taken, len(partitions)


def profile_model(path: Path, threads: int, runs: int, warmup: int, reference: str) -> Profile:
    model_bytes = path.read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    notes = [f"{len(model.subgraphs)} subgraphs: only the main one is profiled"] if len(model.subgraphs) > 1 else []
    ops = describe_ops(model)
    graph_input = tensor_info(model, int(model.subgraphs[0].inputs[0]))
    graph_input = Tensor((1, *graph_input.shape[1:]), graph_input.dtype, False)
    delegated, partitions = delegated_ops(model_bytes, threads, len(ops))
    log.info("%s: %d ops; XNNPACK: full model and %d prefixes, %d rounds", path.name, len(ops), len(ops) + 1, runs)
    xnnpack = sweep(model_bytes, threads, runs, warmup)
    profile = Profile(path.stem, graph_input, ops, xnnpack, delegated, partitions, notes=notes)
    if slow_rounds(xnnpack) > runs // 3:
        log.warning("%s: %d of %d rounds disturbed by other load: rerun", path.name, slow_rounds(xnnpack), runs)
    if reference != "none":
        ref_runs = max(5, runs // 3)
        log.info("%s: reference kernels (%s), %d rounds", path.name, reference, ref_runs)
        profile.reference = sweep(model_bytes, threads, ref_runs, 1, xnnpack=False, ops=reference == "ops")
    return profile


# --- report ---------------------------------------------------------------------------------------


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


def slow_rounds(timing: Timing) -> int:
    """Rounds disturbed by other load: when they are many, the medians measure a loaded machine."""
    fast = float(np.percentile(timing.full, 10))
    return sum(t > SLOW_ROUND * fast for t in timing.full)


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
        row: list[object] = op_cells(op) + ["yes" if op.index in p.delegated else "**no**"]
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


# --- command line ---------------------------------------------------------------------------------


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
