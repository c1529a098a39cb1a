"""A USB/V4L2 camera through OpenCV's V4L2 backend: an index (0 = /dev/video0) or a device path."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from edge.checks import Finding, Options, finding, user
from edge.config.fields import Check, Ctx, Invalid, leaf
from edge.plugins import Plugin
from edge.sources.base import CameraSourceConfig, SourceError, SourceUnavailable, to_rgb
from edge.sources.opencv import OpenCvSource

log = logging.getLogger(__name__)

_V4L2_MAJOR = 81  # Linux: every /dev/video* node (Documentation/admin-guide/devices.txt)


def _v4l2_device(v: Any, ctx: Ctx) -> int | str:
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    if isinstance(v, str) and v.startswith("/dev/") and len(v) > 5:
        return v
    raise Invalid


@dataclass(frozen=True, kw_only=True)
class V4l2SourceConfig(CameraSourceConfig):
    """USB/V4L2 camera: an index (0 = /dev/video0) or a device path such as /dev/v4l/by-id/..."""

    type: ClassVar[str] = "v4l2"
    device: int | str = leaf(0, Check("a device index >= 0 or a path such as /dev/video0", _v4l2_device))


class V4l2Source(OpenCvSource):
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
        return to_rgb(image)


def check(cfg: V4l2SourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """The device node must exist; it is not opened (a running daemon may hold it)."""
    key, path = f"{key}.device", V4l2Source(cfg).device_path
    expected = "an existing V4L2 camera device"
    hint = "is the camera plugged in? `v4l2-ctl --list-devices` lists cameras"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        yield finding("error", key, path, expected, "no such device", hint)
        return
    except OSError as exc:
        yield finding("error", key, path, expected, exc.strerror or str(exc), hint)
        return
    if not stat.S_ISCHR(st.st_mode):
        yield finding("error", key, path, expected, "not a character device", hint)
    elif os.major(st.st_rdev) != _V4L2_MAJOR:
        yield finding("error", key, path, expected, f"device major {os.major(st.st_rdev)} is not video4linux", hint)
    elif not os.access(path, os.R_OK | os.W_OK):
        yield finding(
            "warning",
            key,
            path,
            "a camera the service may open",
            f"user {user()} may not open it",
            "add the service user to the 'video' group",
        )


PLUGIN = Plugin(config=V4l2SourceConfig, build=V4l2Source, check=check)
