"""Frame sources (cameras, streams, files) and the capture thread that runs one.

Inference is slower than a camera. A queue between them would only add latency
(and memory) without bound, so ``Capture`` keeps a single slot holding the
newest frame: the analyser always sees the present, and frames it was too slow
for are dropped and counted. Live sources that fail are reopened with
exponential backoff, because an unattended device must outlive a replugged
camera or a rebooting network camera.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edge.clock import Clock, SystemClock
from edge.config import (
    FileSourceConfig,
    Picamera2SourceConfig,
    RtspSourceConfig,
    SourceConfig,
    V4l2SourceConfig,
)
from edge.records import Frame

log = logging.getLogger(__name__)

PICAMERA2_MISSING = (
    "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` "
    "and create the venv with --system-site-packages"
)
STREAM_TIMEOUT_MS = 10_000  # FFmpeg open/read timeout: a dead stream must fail, not hang the thread
_DEFAULT_FILE_FPS = 25.0


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


def _named(source: FrameSource, exc: BaseException) -> str:
    """``exc`` as a log message that names the source once (SourceError texts already do)."""
    text, name = str(exc), source.describe()
    return text if text.startswith(name) else f"{name} failed: {text or type(exc).__name__}"


def _to_rgb(image: np.ndarray) -> np.ndarray:
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


class _OpenCvSource(FrameSource):
    """Shared ``cv2.VideoCapture`` handling."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self._cap: cv2.VideoCapture | None = None

    def _read_bgr(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.describe()} is not open")
        ok, image = self._cap.read()
        return image if ok and image is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Source(FrameSource):
    """Raspberry Pi camera via picamera2 (imported on open, so other hosts need not have it)."""

    config_type = Picamera2SourceConfig

    def __init__(self, config: Picamera2SourceConfig) -> None:
        super().__init__(config)
        self.config: Picamera2SourceConfig = config
        self._camera: Any = None

    def describe(self) -> str:
        return f"Raspberry Pi camera {self.config.camera}"

    def open(self) -> None:
        try:
            module = importlib.import_module("picamera2")
        except ImportError as exc:
            raise SourceUnavailable(f"{PICAMERA2_MISSING} ({exc})", retryable=False) from exc
        cfg = self.config
        try:
            camera = module.Picamera2(camera_num=cfg.camera)
        except Exception as exc:  # picamera2 raises IndexError/RuntimeError for absent or busy cameras
            raise SourceUnavailable(f"{self.describe()} not found or busy ({exc})") from exc
        try:
            # libcamera names formats by little-endian word order: "BGR888" is R, G, B in memory.
            video = camera.create_video_configuration(
                main={"size": (cfg.width, cfg.height), "format": "BGR888"},
                controls={"FrameRate": cfg.fps},
            )
            camera.configure(video)
            camera.start()
        except Exception as exc:
            camera.close()
            raise SourceUnavailable(f"{self.describe()} could not be started ({exc})") from exc
        self._camera = camera
        log.info("%s started at %dx%d, %g fps", self.describe(), cfg.width, cfg.height, cfg.fps)

    def read(self) -> np.ndarray:
        if self._camera is None:
            raise SourceError(f"{self.describe()} is not open")
        try:
            pixels = self._camera.capture_array("main")
        except Exception as exc:
            raise SourceError(f"{self.describe()} capture failed ({exc})") from exc
        return np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()


class V4l2Source(_OpenCvSource):
    """USB/V4L2 camera through OpenCV's V4L2 backend."""

    config_type = V4l2SourceConfig

    def __init__(self, config: V4l2SourceConfig) -> None:
        super().__init__(config)
        self.config: V4l2SourceConfig = config

    @property
    def device_path(self) -> str:
        device = self.config.device
        return f"/dev/video{device}" if isinstance(device, int) else device

    def describe(self) -> str:
        return f"camera {self.device_path}"

    def open(self) -> None:
        path = self.device_path
        if not os.path.exists(path):
            raise SourceUnavailable(
                f"camera {path} not found (is it plugged in? `v4l2-ctl --list-devices` lists cameras)"
            )
        cap = cv2.VideoCapture(self.config.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(
                f"camera {path} could not be opened (in use by another program, or no permission: "
                "is the user in the 'video' group?)"
            )
        cfg = self.config
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # driver-side queue: stale frames are latency
        self._cap = cap
        log.info(
            "%s opened at %dx%d, %g fps (asked %dx%d, %g fps)",
            self.describe(),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            cap.get(cv2.CAP_PROP_FPS),
            cfg.width,
            cfg.height,
            cfg.fps,
        )

    def read(self) -> np.ndarray:
        image = self._read_bgr()
        if image is None:
            raise SourceError(f"{self.describe()} returned no frame (unplugged?)")
        return _to_rgb(image)


class RtspSource(_OpenCvSource):
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
        return _to_rgb(image)


class FileSource(_OpenCvSource):
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
        return _to_rgb(image)

    def _pace(self) -> None:
        """Hold each frame until its time on a monotonic schedule at the file's fps."""
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._due is None or now - self._due > period:
            self._due = now  # first frame, or fell behind: restart the schedule rather than burst
        elif self._due > now:
            time.sleep(self._due - now)
        self._due += period


SOURCES: dict[str, type[FrameSource]] = {
    cls.config_type.type: cls for cls in (Picamera2Source, V4l2Source, RtspSource, FileSource)
}


def make_source(config: SourceConfig) -> FrameSource:
    """The (unopened) source for a validated ``config.source``."""
    try:
        cls = SOURCES[config.type]
    except KeyError:
        raise ValueError(f"no frame source for type {config.type!r}; known: {', '.join(SOURCES)}") from None
    return cls(config)


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

    @classmethod
    def from_config(cls, config: SourceConfig, stop: threading.Event, **kwargs: Any) -> Capture:
        return cls(make_source(config), stop, **kwargs)

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
