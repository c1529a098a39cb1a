"""TFLite interpreter backends and a model wrapper that speaks float.

Backends are tried in order (LiteRT, tflite-runtime, TensorFlow Lite) unless
one is named; adding one is a new entry in ``BACKENDS``. ``TfliteModel``
hides quantisation: callers pass uint8/float pixels and get float32 outputs
keyed by the model's signature output names.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """No usable TFLite interpreter package is installed."""


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    factory: Callable[[Any, str, int], Any]


def _litert(mod: Any, path: str, threads: int) -> Any:
    return mod.Interpreter(model_path=path, num_threads=threads)


def _tflite_runtime(mod: Any, path: str, threads: int) -> Any:
    return mod.Interpreter(model_path=path, num_threads=threads)


def _tensorflow(mod: Any, path: str, threads: int) -> Any:
    return mod.lite.Interpreter(model_path=path, num_threads=threads)


BACKENDS: dict[str, Backend] = {
    "litert": Backend("litert", "ai_edge_litert.interpreter", _litert),
    "tflite_runtime": Backend("tflite_runtime", "tflite_runtime.interpreter", _tflite_runtime),
    "tensorflow": Backend("tensorflow", "tensorflow", _tensorflow),
}


def resolve_backend(name: str = "auto") -> tuple[Backend, Any]:
    """Return the named backend (or the first importable one) and its module."""
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"interpreter backend {name!r} is unknown; expected one of auto, {', '.join(BACKENDS)}")
    candidates = [BACKENDS[name]] if name != "auto" else list(BACKENDS.values())
    errors = []
    for backend in candidates:
        try:
            return backend, importlib.import_module(backend.module)
        except ImportError as exc:
            errors.append(f"{backend.name}: {exc}")
    raise BackendUnavailable(
        "no TFLite interpreter could be imported (" + "; ".join(errors) + "). "
        "Install ai-edge-litert, or tflite-runtime with numpy<2."
    )


# Lines the native runtime writes to stderr that are news only to someone debugging.
_NATIVE_CHATTER = (b"Created TensorFlow Lite XNNPACK delegate",)
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what native code writes to fd 2 meanwhile into this module's logger.

    TFLite prints an INFO banner straight to file descriptor 2 on the first tensor
    allocation, past Python's logging; an operator should see it only with ``--verbose``.
    Any other native output is passed through to stderr unchanged.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (closed stderr): nothing to tidy
        yield
        return
    with _STDERR_LOCK:
        read_end, write_end = os.pipe()
        chunks: list[bytes] = []

        def drain() -> None:
            while data := os.read(read_end, 65536):
                chunks.append(data)

        reader = threading.Thread(target=drain, name="native-stderr", daemon=True)
        reader.start()
        os.dup2(write_end, 2)
        os.close(write_end)
        try:
            yield
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end held by fd 2: the reader sees EOF
            os.close(saved)
            reader.join()
            os.close(read_end)
    for line in b"".join(chunks).splitlines(keepends=True):
        if any(marker in line for marker in _NATIVE_CHATTER):
            log.debug("%s", line.decode(errors="replace").strip())
        else:
            os.write(2, line)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass(frozen=True)
class TensorSpec:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


def _spec(name: str, detail: dict) -> TensorSpec:
    scale, zero = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        name,
        int(detail["index"]),
        tuple(int(s) for s in detail["shape_signature"]),
        np.dtype(detail["dtype"]),
        float(scale),
        int(zero),
    )


class TfliteModel:
    """One loaded .tflite model with a single input and named outputs."""

    def __init__(self, path: Path, backend: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        self.backend, module = resolve_backend(backend)
        self.threads = threads or default_threads()
        try:
            self._interp = self.backend.factory(module, str(self.path), self.threads)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path}: not a loadable TFLite model ({exc})") from exc
        signatures = self._interp.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"{self.path}: expected one signature, found {sorted(signatures)}")
        key = next(iter(signatures))
        runner = self._interp.get_signature_runner(key)
        ((in_name, in_detail),) = runner.get_input_details().items()
        self.input = _spec(in_name, in_detail)
        self.outputs = {n: _spec(n, d) for n, d in runner.get_output_details().items()}
        del runner  # it holds tensor buffers, which would block resize_tensor_input
        self._shape: tuple[int, ...] = ()
        self._resize(tuple(1 if d == -1 else d for d in self.input.shape))

    def _resize(self, shape: tuple[int, ...]) -> None:
        """Fit the input tensor to ``shape``; only dimensions the model leaves open (-1) may change."""
        if shape == self._shape:
            return
        for have, want in zip(self.input.shape, shape):
            if have != -1 and have != want:
                raise ValueError(f"{self.path.name} takes input {list(self.input.shape)}, got {list(shape)}")
        self._interp.resize_tensor_input(self.input.index, list(shape))
        with _native_stderr_to_log():
            self._interp.allocate_tensors()
        self._shape = shape

    @property
    def batchable(self) -> bool:
        return self.input.shape[0] == -1

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Bring float or uint8 pixels into the model's input dtype."""
        spec = self.input
        if spec.dtype == np.float32:
            return x.astype(np.float32, copy=False)
        if spec.dtype == np.uint8 and x.dtype == np.uint8 and abs(spec.scale - 1.0) < 1e-3 and spec.zero_point == 0:
            # Raw camera bytes already are the quantised input (scale 1, zero point 0).

            return x
        info = np.iinfo(spec.dtype)
        q = np.round(x.astype(np.float32) / spec.scale + spec.zero_point)
        return np.clip(q, info.min, info.max).astype(spec.dtype)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run on a batch [N, H, W, C] of pixels (0..255); returns dequantised float32 outputs."""
        self._resize(tuple(int(d) for d in x.shape))
        self._interp.set_tensor(self.input.index, self.quantize_input(x))
        self._interp.invoke()
        result = {}
        for name, spec in self.outputs.items():
            raw = self._interp.get_tensor(spec.index)
            if spec.dtype == np.float32:
                result[name] = raw.copy()
            else:
                result[name] = (raw.astype(np.float32) - spec.zero_point) * spec.scale
        return result
