"""Shared ``cv2.VideoCapture`` handling for the OpenCV-backed sources (V4L2, streams, files)."""

from __future__ import annotations

import cv2
import numpy as np

from edge.sources.base import FrameSource, SourceConfig, SourceError


class OpenCvSource(FrameSource):
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
