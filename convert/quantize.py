"""TFLite conversion: float32 and full-integer (int8 weights and activations)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

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
    module: tf.Module, input_shape: list[int | None], calibration: np.ndarray, per_channel: bool = True
) -> bytes:
    """Full-integer model: uint8 pixel input, int8 everything else.

    ``calibration`` is float32 [N, H, W, 3] in 0..255, fed one sample at a time.
    """
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete(module, input_shape)], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True  # noqa: SLF001 (diagnostics only)

    def representative() -> object:
        for sample in calibration:
            yield [sample[None].astype(np.float32)]

    converter.representative_dataset = representative
    return converter.convert()


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
