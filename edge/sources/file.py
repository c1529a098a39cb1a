"""A video file: replays, demos and tests; ``realtime`` paces frames at the file's own rate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from edge.checks import Finding, Options, existing_file, finding
from edge.config.fields import boolean, file_path, leaf, required
from edge.plugins import Plugin
from edge.sources.base import SourceConfig, SourceUnavailable, to_rgb
from edge.sources.opencv import OpenCvSource

log = logging.getLogger(__name__)

_DEFAULT_FILE_FPS = 25.0


@dataclass(frozen=True, kw_only=True)
class FileSourceConfig(SourceConfig):
    """A video file: replays and tests. ``realtime`` paces frames at the file's fps."""

    type: ClassVar[str] = "file"
    path: Path = required(file_path("a path to a video file"))
    loop: bool = leaf(False, boolean())
    realtime: bool = leaf(True, boolean())


class FileSource(OpenCvSource):
    """A video file, optionally looping and optionally paced at its own frame rate."""

    config_type = FileSourceConfig
    live = False

    def __init__(self, config: FileSourceConfig) -> None:
        super().__init__(config)
        self.config: FileSourceConfig = config
        self.fps = _DEFAULT_FILE_FPS
        self._due: float | None = None

    def describe(self) -> str:
        return f"video file {self.config.path}"

    def _capture(self) -> cv2.VideoCapture:
        path: Path = self.config.path
        if not path.exists():
            raise SourceUnavailable(f"video file {path} not found")
        if not path.is_file():
            raise SourceUnavailable(f"video file {path} is not a file")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"video file {path} could not be opened (not a video OpenCV can decode?)")
        return cap

    def open(self) -> None:
        self.close()
        self._cap = self._capture()
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        if not 0 < fps <= 1000:  # also rejects NaN
            if self.config.realtime:
                log.warning(
                    "%s reports no usable frame rate (%r); pacing at %g fps", self.describe(), fps, _DEFAULT_FILE_FPS
                )
            fps = _DEFAULT_FILE_FPS
        self.fps = fps
        self._due = None

    def _rewind(self) -> np.ndarray | None:
        assert self._cap is not None
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            image = self._read_bgr()
            if image is not None:
                return image
        # Some containers cannot seek: reopen instead.
        self._cap.release()
        self._cap = self._capture()
        return self._read_bgr()

    def read(self) -> np.ndarray | None:
        image = self._read_bgr()
        if image is None and self.config.loop:
            image = self._rewind()  # None again means an empty file: end rather than spin
        if image is None:
            if not self.config.loop:
                log.info("%s ended; the daemon stops (source.loop: true replays it)", self.describe())
            return None
        if self.config.realtime:
            self._pace()
        return to_rgb(image)

    def _pace(self) -> None:
        """Hold each frame until its time on a monotonic schedule at the file's fps."""
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._due is None or now - self._due > period:
            self._due = now  # first frame, or fell behind: restart the schedule rather than burst
        elif self._due > now:
            time.sleep(self._due - now)
        self._due += period


def check(cfg: FileSourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """Decode one frame the way ``FileSource`` opens the file."""
    key, expected = f"{key}.path", "a video (or image) file OpenCV can decode"
    problem = existing_file(key, cfg.path, expected)
    if problem is not None:
        yield problem
        return
    cap = cv2.VideoCapture(str(cfg.path))
    try:
        if not cap.isOpened():
            yield finding("error", key, cfg.path, expected, "OpenCV cannot open it: not a video, or damaged")
        elif not cap.read()[0]:
            yield finding("error", key, cfg.path, expected, "it opens but no frame decodes: empty or damaged")
    finally:
        cap.release()


PLUGIN = Plugin(config=FileSourceConfig, build=FileSource, check=check)
