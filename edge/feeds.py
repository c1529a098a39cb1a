"""Where the daemon's frames come from: a live capture thread, or a file replayed in media time.

Live sources (cameras, streams, a file played in real time) go through
``Capture``: newest frame only, drops counted. A file with ``realtime: false``
is replayed frame by frame with timestamps taken from its frame rate, so a
recording is analysed completely and deterministically (tests, re-counting a
recorded day) however fast or slow the machine is.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from edge.clock import Clock
from edge.records import Frame
from edge.sources import Capture, SourceConfig, make_source
from edge.sources.file import FileSource, FileSourceConfig


class Feed(Protocol):
    @property
    def dropped(self) -> int:
        """Frames the capture thread overwrote before they were taken."""

    @property
    def progress(self) -> int:
        """Grows while the source is alive: frames captured plus reopen attempts."""

    @property
    def error(self) -> BaseException | None:
        """Why the source gave up, if it did."""

    def get(self, timeout: float) -> Frame | None: ...

    def ended(self) -> bool: ...

    def fps(self) -> float: ...

    def close(self) -> None: ...


class LiveFeed:
    def __init__(self, config: SourceConfig, stop: threading.Event, clock: Clock | None = None) -> None:
        self._capture = Capture(make_source(config), stop, clock=clock)
        self._capture.start()

    @property
    def dropped(self) -> int:
        return self._capture.dropped

    @property
    def progress(self) -> int:
        return self._capture.frames + self._capture.reopens

    @property
    def error(self) -> BaseException | None:
        return self._capture.error

    def get(self, timeout: float) -> Frame | None:
        return self._capture.get(timeout)

    def ended(self) -> bool:
        return self._capture.ended.is_set() and not self._capture.running

    def fps(self) -> float:
        return self._capture.fps

    def close(self) -> None:
        self._capture.close()


class ReplayFeed:
    """Every frame of a file, stamped with media time from ``start_wall`` / ``start_monotonic``."""

    dropped = 0
    error: BaseException | None = None

    def __init__(
        self, config: FileSourceConfig, start_wall: float | None = None, start_monotonic: float | None = None
    ) -> None:
        source = make_source(config)
        assert isinstance(source, FileSource)
        self._source = source
        self._source.open()
        self._wall0 = time.time() if start_wall is None else start_wall
        self._mono0 = time.monotonic() if start_monotonic is None else start_monotonic
        self._index = 0
        self._ended = False

    def get(self, timeout: float) -> Frame | None:
        if self._ended:
            return None
        pixels = self._source.read()
        if pixels is None:
            self._ended = True
            return None
        t = self._index / self._source.fps
        frame = Frame(pixels, self._index, self._mono0 + t, self._wall0 + t)
        self._index += 1
        return frame

    def ended(self) -> bool:
        return self._ended

    def fps(self) -> float:
        return self._source.fps

    @property
    def progress(self) -> int:
        return self._index

    def close(self) -> None:
        self._source.close()


def open_feed(
    config: SourceConfig, stop: threading.Event, window_s: float | None = None, clock: Clock | None = None
) -> Feed:
    """A replay starts its media clock on the next window boundary, so media second t of the
    file falls in window t // window_s: replayed counts line up with the recording's timeline."""
    if isinstance(config, FileSourceConfig) and not config.realtime:
        start = time.time()
        if window_s:
            start = (int(start // window_s) + 1) * window_s
        return ReplayFeed(config, start_wall=start)
    return LiveFeed(config, stop, clock)
