"""What every frame source is: its config section's common keys, its interface and its errors.

A source is a plugin: one module of this package holds its config section, its ``FrameSource``
class and its ``edge check`` probe, ending with ``PLUGIN`` (``edge.plugins``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edge.config.fields import integer, leaf, number, section

_BACKOFF_S = "a positive number of seconds, at most 86400 (a day)"


@dataclass(frozen=True, kw_only=True)
class BackoffConfig:
    """Reconnect delays: start at ``initial``, double per failure, cap at ``max``."""

    initial: float = leaf(1.0, number(_BACKOFF_S, lo=0, hi=86400, lo_open=True))
    max: float = leaf(30.0, number(_BACKOFF_S, lo=0, hi=86400, lo_open=True))

    def _problems(self) -> Iterator[tuple[str, Any, str]]:
        if self.max < self.initial:
            yield "max", self.max, f"a number of seconds >= initial ({self.initial:g})"


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """Base of the source sections; ``type`` (the YAML ``type:``) names the plugin."""

    type: ClassVar[str]
    reopen_backoff_s: BackoffConfig = section(BackoffConfig)


@dataclass(frozen=True, kw_only=True)
class CameraSourceConfig(SourceConfig):
    """Capture mode shared by local cameras."""

    width: int = leaf(640, integer("a width in pixels >= 16", lo=16))
    height: int = leaf(480, integer("a height in pixels >= 16", lo=16))
    fps: float = leaf(15.0, number("a positive frame rate", lo=0, lo_open=True))


class SourceError(RuntimeError):
    """A source failed to open or to read.

    ``retryable`` is False where reopening cannot help (a package is missing),
    so ``Capture`` gives up instead of retrying forever.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class SourceUnavailable(SourceError):
    """The source could not be opened (missing device, file, package or stream)."""


def to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or gray/BGRA) to contiguous uint8 RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class FrameSource(ABC):
    """Something that yields RGB frames: ``open()``, ``read()`` until None, ``close()``.

    ``read()`` returns uint8 RGB [H, W, 3]; None only at the end of a
    non-looping file. Failures raise ``SourceError``. ``live`` sources (cameras,
    streams) are reopened by ``Capture`` when they fail; a file is not.
    """

    config_type: ClassVar[type[SourceConfig]]
    live: ClassVar[bool] = True

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}, got {type(config).__name__}")
        self.config = config

    def describe(self) -> str:
        """What this source is, in words for a log line (never with secrets)."""
        return f"{self.config.type} source"

    @abstractmethod
    def open(self) -> None:
        """Acquire the device/stream/file; raise ``SourceUnavailable`` naming it if that fails."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame as uint8 RGB, or None at the end of a non-looping file."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice or without ``open()``."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
