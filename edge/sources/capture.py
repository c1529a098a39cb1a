"""The capture thread: runs one frame source, keeping only the newest frame.

Inference is slower than a camera. A queue between them would only add latency
(and memory) without bound, so ``Capture`` keeps a single slot holding the
newest frame: the analyser always sees the present, and frames it was too slow
for are dropped and counted. Live sources that fail are reopened with
exponential backoff, because an unattended device must outlive a replugged
camera or a rebooting network camera.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from edge.clock import Clock, SystemClock
from edge.records import Frame
from edge.sources.base import FrameSource, SourceError

log = logging.getLogger(__name__)


def _named(source: FrameSource, exc: BaseException) -> str:
    """``exc`` as a log message that names the source once (SourceError texts already do)."""
    text, name = str(exc), source.describe()
    return text if text.startswith(name) else f"{name} failed: {text or type(exc).__name__}"


class Capture:
    """Runs a ``FrameSource`` on its own thread, keeping only the newest frame.

    ``get()`` returns the newest frame not yet returned; frames replaced before
    being taken are counted in ``dropped``. Live sources that fail are reopened
    with exponential backoff (``config.reopen_backoff_s``). ``ended`` is set
    once no more frames will come: the file ended, the source gave up, or
    ``stop`` was set. Leaving the ``with`` block sets the shared ``stop`` and
    joins the thread.
    """

    _FPS_WINDOW_S = 2.0

    def __init__(
        self,
        source: FrameSource,
        stop: threading.Event,
        *,
        name: str = "capture",
        join_timeout_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.source = source
        self.clock: Clock = clock or SystemClock()  # stamps frames
        self.backoff = source.config.reopen_backoff_s
        self.ended = threading.Event()
        self.error: BaseException | None = None  # why the source gave up, if it did
        self.frames = 0
        self.dropped = 0
        self.reopens = 0
        self._stop = stop
        self._join_timeout_s = join_timeout_s
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._times: deque[float] = deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- consumer side

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet returned; None after ``timeout`` or once ended and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self.ended.is_set(), timeout)
            frame, self._slot = self._slot, None
            return frame

    def wait_until(self, predicate: Callable[[Capture], bool], timeout: float | None) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every frame, reopen and end)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    @property
    def fps(self) -> float:
        """Frames per second captured over the last couple of seconds (0 when stalled)."""
        now = time.monotonic()
        with self._cond:
            recent = [t for t in self._times if now - t <= self._FPS_WINDOW_S]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # -- lifecycle

    def start(self) -> Capture:
        self._thread.start()
        return self

    def close(self) -> None:
        """Set ``stop`` and wait for the thread (bounded: a wedged driver must not hang shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._join_timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "%s: capture thread still busy after %g s; leaving it behind",
                    self.source.describe(),
                    self._join_timeout_s,
                )

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- capture thread

    def _run(self) -> None:
        delay = self.backoff.initial
        try:
            while not self._stop.is_set():
                delivered_before = self.frames
                try:
                    self.source.open()
                    try:
                        self._pump()
                    finally:
                        self._close_source()
                    return  # end of file, or stop
                except Exception as exc:  # any failure of a live source means: reopen it
                    self._close_source()  # idempotent; frees whatever a failed open() left
                    if not self.source.live or (isinstance(exc, SourceError) and not exc.retryable):
                        self.error = exc
                        log.error("%s; giving up", _named(self.source, exc))
                        return
                    if self.frames > delivered_before:
                        delay = self.backoff.initial  # it worked for a while: start the backoff afresh
                    log.warning(
                        "%s; reopening in %.3g s (retry %d)",
                        _named(self.source, exc),
                        delay,
                        self.reopens + 1,
                    )
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2.0, self.backoff.max)
                    with self._cond:
                        self.reopens += 1
                        self._cond.notify_all()
        except BaseException as exc:  # a bug, not a source failure: record it, never die silently
            self.error = exc
            log.exception("%s: capture thread crashed", self.source.describe())
        finally:
            with self._cond:
                self.ended.set()
                self._cond.notify_all()

    def _pump(self) -> None:
        while not self._stop.is_set():
            pixels = self.source.read()
            if pixels is None:
                if self.source.live:
                    raise SourceError(f"{self.source.describe()} returned no frame")
                log.info("%s ended after %d frames", self.source.describe(), self.frames)
                return
            mono, wall = self.clock.monotonic(), self.clock.wall()
            with self._cond:
                if self._slot is not None:
                    self.dropped += 1
                self._slot = Frame(pixels=pixels, index=self.frames, monotonic=mono, wall=wall)
                self.frames += 1
                self._times.append(mono)
                self._cond.notify_all()

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.exception("%s: error while closing", self.source.describe())
