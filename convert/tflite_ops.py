"""The parts of a .tflite file that a latency profile names: its operators in execution order, their
tensors, their multiply-accumulates, and copies of the model truncated after each operator.

The profiler (``convert.profile``) times those truncated copies; these helpers only read and rewrite
the flatbuffer, they never run it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "BFLOAT16", "FLOAT64")
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SHORT_DTYPE = {"FLOAT32": "f32", "FLOAT16": "f16", "INT8": "i8", "UINT8": "u8", "INT16": "i16", "INT32": "i32"}

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
