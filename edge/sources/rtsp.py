"""A network camera stream (RTSP or HTTP) decoded by OpenCV's FFmpeg backend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge.checks import Finding, Options, finding, unreachable
from edge.config.fields import Check, Ctx, Invalid, required
from edge.plugins import Plugin
from edge.sources.base import SourceConfig, SourceError, SourceUnavailable, redact_url, to_rgb
from edge.sources.opencv import OpenCvSource

log = logging.getLogger(__name__)

STREAM_TIMEOUT_MS = 10_000  # FFmpeg open/read timeout: a dead stream must fail, not hang the thread
_STREAM_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def _stream_url(v: Any, ctx: Ctx) -> str:
    if not isinstance(v, str):
        raise Invalid
    parts = urlsplit(v)
    if parts.scheme.lower() not in ("rtsp", "rtsps", "http", "https") or not parts.hostname:
        raise Invalid
    return v


@dataclass(frozen=True, kw_only=True)
class RtspSourceConfig(SourceConfig):
    """Network camera stream decoded by FFmpeg."""

    type: ClassVar[str] = "rtsp"
    url: str = required(Check("an rtsp://, rtsps://, http:// or https:// URL with a host", _stream_url))


class RtspSource(OpenCvSource):
    """Network stream (RTSP or HTTP) decoded by OpenCV's FFmpeg backend."""

    config_type = RtspSourceConfig

    def __init__(self, config: RtspSourceConfig) -> None:
        super().__init__(config)
        self.config: RtspSourceConfig = config

    def describe(self) -> str:
        return f"stream {redact_url(self.config.url)}"

    def open(self) -> None:
        cap = cv2.VideoCapture(
            self.config.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ],
        )
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"{self.describe()} could not be opened (unreachable, wrong path or credentials)")
        self._cap = cap
        log.info("%s opened", self.describe())

    def read(self) -> np.ndarray:
        image = self._read_bgr()
        if image is None:
            raise SourceError(f"{self.describe()} returned no frame (connection lost?)")
        return to_rgb(image)


def check(cfg: RtspSourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """A TCP probe of the stream's host only: opening the stream is left to ``edge run``, which retries."""
    parts = urlsplit(cfg.url)
    port = parts.port or _STREAM_PORTS[parts.scheme.lower()]
    why = unreachable(parts.hostname or "", port, options.timeout_s)
    if why is not None:
        yield finding(
            "warning",
            f"{key}.url",
            redact_url(cfg.url),
            "a reachable stream host",
            why,
            "`edge run` keeps retrying, so this may be transient",
        )


PLUGIN = Plugin(config=RtspSourceConfig, build=RtspSource, check=check)
