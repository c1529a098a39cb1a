"""Timing a model and its truncated prefixes, interleaved in rounds, and reading which operators
XNNPACK took: the measurements of a per-operator latency profile (``convert.profile``).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils

from .tflite_ops import Op, Tensor, describe_ops, prefixes, tensor_info

log = logging.getLogger(__name__)

SLOW_ROUND = 1.25  # a round this much slower than the fastest tenth is counted as disturbed by other load


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


def slow_rounds(timing: Timing) -> int:
    """Rounds disturbed by other load: when they are many, the medians measure a loaded machine."""
    fast = float(np.percentile(timing.full, 10))
    return sum(t > SLOW_ROUND * fast for t in timing.full)
