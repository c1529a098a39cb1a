"""The Raspberry Pi camera through libcamera/picamera2 (imported when opened, so other hosts
need not have it; picamera2 comes from apt: a Pi venv needs --system-site-packages)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edge.checks import Finding, Options, finding
from edge.config.fields import integer, leaf
from edge.plugins import Plugin
from edge.sources.base import CameraSourceConfig, FrameSource, SourceError, SourceUnavailable

log = logging.getLogger(__name__)

PICAMERA2_MISSING = (
    "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` "
    "and create the venv with --system-site-packages"
)
PICAMERA2_INSTALL = (
    "on Raspberry Pi OS `sudo apt install python3-picamera2`, and create the venv with "
    "`python3 -m venv --system-site-packages` so it can see that package"
)


@dataclass(frozen=True, kw_only=True)
class Picamera2SourceConfig(CameraSourceConfig):
    """Raspberry Pi camera through libcamera/picamera2."""

    type: ClassVar[str] = "picamera2"
    camera: int = leaf(0, integer("a camera number >= 0", lo=0))


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


def check(cfg: Picamera2SourceConfig, key: str, options: Options) -> Iterator[Finding]:
    """Import only: the module must load; the camera itself is not opened (it may be in use)."""
    try:
        importlib.import_module("picamera2")
    except Exception as exc:  # ImportError, or picamera2 present but its libcamera bindings fail to load
        yield finding(
            "error",
            f"{key}.type",
            cfg.type,
            "the picamera2 Python module to be importable",
            f"{type(exc).__name__}: {exc}",
            PICAMERA2_INSTALL,
        )


PLUGIN = Plugin(config=Picamera2SourceConfig, build=Picamera2Source, check=check)
