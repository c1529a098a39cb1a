"""Scene generator: people walking across a background, with ground truth.

Used by tests, benchmarks and the demo video. Each visitor is a real face
(the public-domain astronaut portrait, varied in scale, mirroring and colour)
that enters at a known time, walks across the frame and leaves; the generator
knows every visitor's entry, exit and dwell, hence the true visitors per window.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge.synthetic import background, paste, sprite


@dataclass(frozen=True)
class Visitor:
    enter_s: float  # first frame in which the face is fully visible
    exit_s: float  # last such frame
    y: float  # vertical position of the face centre (fraction of height)
    face_px: float
    direction: int  # +1 left to right, -1 right to left
    mirror: bool
    tint: tuple[float, float, float]

    @property
    def dwell_s(self) -> float:
        return self.exit_s - self.enter_s


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    duration_s: float
    visitors: tuple[Visitor, ...]
    seed: int = 0

    def visitors_per_window(self, window_s: float, start_wall: float = 0.0) -> dict[int, int]:
        """True count of visitors whose first appearance falls in each window (keyed by window index)."""
        counts: dict[int, int] = {}
        for v in self.visitors:
            idx = int((start_wall + v.enter_s) // window_s)
            counts[idx] = counts.get(idx, 0) + 1
        return counts


def random_scene(
    n_visitors: int,
    duration_s: float,
    fps: float = 10.0,
    width: int = 640,
    height: int = 480,
    dwell_s: tuple[float, float] = (3.0, 8.0),
    face_px: tuple[float, float] = (55.0, 65.0),
    max_concurrent: int | None = None,
    seed: int = 0,
) -> Scene:
    """Visitors at random times and lanes; lanes keep faces from overlapping.

    ``face_px`` defaults to the sizes the shipped detector finds reliably in 640x480.
    """
    rng = np.random.default_rng(seed)
    lanes = max(1, int(height // (face_px[1] * 3.6)))
    if max_concurrent is not None:
        lanes = min(lanes, max_concurrent)
    lane_free = [0.5] * lanes
    visitors = []
    for wanted in np.sort(rng.uniform(0.5, duration_s, n_visitors)):
        dwell = float(rng.uniform(*dwell_s))
        lane = int(np.argmin(lane_free))
        enter = max(float(wanted), lane_free[lane])
        if enter + dwell > duration_s - 0.5:
            continue  # no room left: the scene simply has fewer visitors (its ground truth says so)
        lane_free[lane] = enter + dwell + 1.0
        visitors.append(
            Visitor(
                enter,
                enter + dwell,
                (lane + 0.5) / lanes,
                float(rng.uniform(*face_px)),
                int(rng.choice([-1, 1])),
                bool(rng.integers(0, 2)),
                _triple(rng.uniform(0.85, 1.15, 3)),
            )
        )
    visitors.sort(key=lambda v: v.enter_s)
    return Scene(width, height, fps, duration_s, tuple(visitors), seed)


def crossing_scene(
    n_pairs: int,
    fps: float = 8.0,
    width: int = 1280,
    height: int = 720,
    face_px: tuple[float, float] = (50.0, 60.0),
    seed: int = 0,
) -> Scene:
    """Pairs of visitors walking towards each other in one of three lanes, so one face passes in
    front of the other (a later visitor is drawn over an earlier one): the moment a tracker loses a
    face behind a passer-by and may count it twice. A lane's next pair comes after this one has
    left, so nobody enters at an edge just as someone leaves there."""
    rng = np.random.default_rng(seed)
    lanes = (0.25, 0.5, 0.75)
    visitors = []
    for k in range(n_pairs):
        start = 1.0 + 3.5 * k
        lane = lanes[k % len(lanes)] + float(rng.uniform(-0.03, 0.03))
        first = start + float(rng.uniform(0.0, 1.0))
        for enter, direction in ((first, 1), (max(0.5, first + float(rng.uniform(-1.0, 1.0))), -1)):
            visitors.append(
                Visitor(
                    enter,
                    enter + float(rng.uniform(4.0, 8.0)),
                    lane + float(rng.uniform(-0.02, 0.02)),
                    float(rng.uniform(*face_px)),
                    direction,
                    bool(rng.integers(0, 2)),
                    (1.0, 1.0, 1.0),
                )
            )
    visitors.sort(key=lambda v: v.enter_s)
    return Scene(width, height, fps, max(v.exit_s for v in visitors) + 1.0, tuple(visitors), seed)


@lru_cache(maxsize=4)
def _backdrop(width: int, height: int, seed: int) -> np.ndarray:
    """``background`` (full-frame noise, most of a frame's render time) is the same for every frame of a scene."""
    frame = background(width, height, seed)
    frame.setflags(write=False)
    return frame


# A visitor's sprite is the same in every frame: scale and tint it once, not once per frame.
_sprite = lru_cache(maxsize=256)(sprite)


def render(scene: Scene, t: float) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """The frame at time ``t`` and the face boxes in it."""
    frame = _backdrop(scene.width, scene.height, scene.seed).copy()
    boxes = []
    for v in scene.visitors:
        if not v.enter_s <= t <= v.exit_s:
            continue
        s = _sprite(v.face_px, v.mirror, v.tint)
        fx1, fy1, fx2, fy2 = s.face
        fw = fx2 - fx1
        # Face centre moves linearly from one edge (face just inside) to the other.
        progress = (t - v.enter_s) / max(v.dwell_s, 1e-6)
        if v.direction < 0:
            progress = 1.0 - progress
        cx = fw / 2 + progress * (scene.width - fw)
        cy = v.y * scene.height
        box = paste(frame, s, cx - (fx1 + fx2) / 2, cy - (fy1 + fy2) / 2)
        if box is not None:
            boxes.append(box)
    return frame, boxes


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def write_video(scene: Scene, path: Path) -> Path:
    """Render the scene to an MJPG AVI (decodable by every OpenCV build) and its ground truth JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), scene.fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write MJPG video here")
    try:
        for i in range(int(round(scene.duration_s * scene.fps))):
            frame, _ = render(scene, i / scene.fps)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    truth = {
        "width": scene.width,
        "height": scene.height,
        "fps": scene.fps,
        "duration_s": scene.duration_s,
        "visitors": [asdict(v) | {"dwell_s": v.dwell_s} for v in scene.visitors],
    }
    path.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
    return path
