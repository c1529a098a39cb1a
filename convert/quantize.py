"""TFLite conversion: float32 and full-integer (int8 weights and activations), and a model's two files."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from .datasets import pin_input_range

if TYPE_CHECKING:
    from .catalogue import ModelDef

log = logging.getLogger(__name__)


def concrete(module: Callable, input_shape: list[int | None]) -> tf.types.experimental.ConcreteFunction:
    fn = tf.function(
        lambda pixels: module(pixels), input_signature=[tf.TensorSpec(input_shape, tf.float32, name="pixels")]
    )
    return fn.get_concrete_function()


def to_float_tflite(module: tf.Module, input_shape: list[int | None]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete(module, input_shape)], module)
    return converter.convert()


def to_int8_tflite(
    module: tf.Module,
    input_shape: list[int | None],
    calibration: np.ndarray,
    per_channel: bool = True,
    float_scope: str | None = None,
) -> bytes:
    """Integer model: uint8 pixel input, int8 everything else (full-integer unless ``float_scope``).

    ``calibration`` is float32 [N, H, W, 3] in 0..255, fed one sample at a time. With
    ``float_scope``, the ops whose tensors carry that name scope stay float32 (selective
    quantisation); the input stays uint8 and the outputs computed there are float32.
    """

    def converter() -> tf.lite.TFLiteConverter:
        c = tf.lite.TFLiteConverter.from_concrete_functions([concrete(module, input_shape)], module)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.uint8
        c.inference_output_type = tf.int8
        if not per_channel:
            c._experimental_disable_per_channel = True  # noqa: SLF001 (diagnostics only)
        c.representative_dataset = representative
        return c

    def representative() -> object:
        for sample in calibration:
            yield [sample[None].astype(np.float32)]

    full = converter().convert()
    if float_scope is None:
        return full
    names = [t["name"] for t in tf.lite.Interpreter(model_content=full).get_tensor_details()]
    # The scope as TF names it, also uniquified when it recurs (prelu/, prelu_1/, ...).
    scoped = re.compile(rf"(^|[/;]){re.escape(float_scope)}(_\d+)?/")
    keep_float = [n for n in names if scoped.search(n)]
    if not keep_float:
        raise ValueError(f"no tensor of the model lies in the name scope {float_scope!r}")
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter(),
        debug_dataset=lambda: ([s[None].astype(np.float32)] for s in calibration[:2]),
        debug_options=options,
    )
    return _uint8_pixels_in(bytes(debugger.get_nondebug_quantized_model()))


def _uint8_pixels_in(model: bytes) -> bytes:
    """Give a selectively quantised model the uint8 pixel input of the full-integer ones.

    The debugger leaves a float32 input feeding a QUANTIZE op; QUANTIZE also requantises uint8,
    so the input becomes uint8 with scale 1 and zero point 0 (raw pixels, as everywhere else).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = m.subgraphs[0]
    (index,) = graph.inputs
    consumers = [op for op in graph.operators if index in list(op.inputs)]
    codes = [m.operatorCodes[op.opcodeIndex] for op in consumers]
    quantize = schema.BuiltinOperator.QUANTIZE
    if len(consumers) != 1 or max(codes[0].builtinCode, codes[0].deprecatedBuiltinCode) != quantize:
        raise ValueError("expected the float input to feed exactly one QUANTIZE op")
    tensor = graph.tensors[index]
    tensor.type = schema.TensorType.UINT8
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint = [1.0], [0]
    tensor.quantization = q
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def write_atomic(path: Path, data: bytes) -> None:
    """Never leave a half-written model where the runtime would load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def convert_model(
    mdef: ModelDef, module: tf.Module, calibration: np.ndarray, out_dir: Path, int8_module: tf.Module | None = None
) -> tuple[Path, Path]:
    """Write the float model from ``module`` and the int8 one from ``int8_module`` (the same
    network, re-balanced for integer arithmetic) or ``module``."""
    float_path = out_dir / f"{mdef.float_stem or mdef.stem}_float32.tflite"
    int8_path = out_dir / f"{mdef.stem}_int8.tflite"
    t0 = time.monotonic()
    if mdef.float_stem is None:
        write_atomic(float_path, to_float_tflite(module, mdef.float_input_shape or mdef.input_shape))
    int8 = to_int8_tflite(
        int8_module or module, mdef.input_shape, pin_input_range(calibration), float_scope=mdef.float_scope
    )
    write_atomic(int8_path, int8)
    log.info("%s: converted in %.1f s (%d calibration samples)", mdef.key, time.monotonic() - t0, len(calibration))
    return float_path, int8_path
