"""Face detection on a frame: letterbox, integer inference, box decoding and NMS."""

from __future__ import annotations

import numpy as np

from edge.boxes import frame_detections
from edge.models import Manifest
from edge.preprocess import Letterbox, letterbox
from edge.records import Detection


class FaceDetector:
    """The SSD MobileNetV1 detector from the manifest, returning boxes in frame pixels."""

    def __init__(self, manifest: Manifest, variant: str = "int8", score_threshold: float = 0.5,
                 min_face_px: int = 0, backend: str = "auto", threads: int | None = None,
                 key: str = "detector") -> None:
        self.info, self.model = manifest.load(key, variant, backend, threads)
        self.anchors = manifest.anchors(key)
        self.size = int(self.info.input["shape"][1])
        self.score_threshold = score_threshold
        self.min_face_px = min_face_px

    def prepare(self, frame_rgb: np.ndarray) -> Letterbox:
        """Scale the frame into the network input (the preprocess stage)."""
        return letterbox(frame_rgb, self.size)

    def infer(self, lb: Letterbox, frame_wh: tuple[int, int]) -> list[Detection]:
        """Run the network on a prepared input and decode boxes back to frame pixels."""
        out = self.model.run(lb.pixels[None])
        boxes, scores = frame_detections(out["box_encodings"][0], out["scores"][0], self.anchors, self.size,
                                         lb.scale, frame_wh, self.score_threshold)
        faces = []
        for box, score in zip(boxes, scores):
            x1, y1, x2, y2 = (float(v) for v in box)
            if min(x2 - x1, y2 - y1) >= self.min_face_px:
                faces.append(Detection((x1, y1, x2, y2), float(score)))
        return faces

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        return self.infer(self.prepare(frame_rgb), (frame_rgb.shape[1], frame_rgb.shape[0]))
