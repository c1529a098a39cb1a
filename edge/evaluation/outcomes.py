"""What the analyzer made of each labelled image: the labelled face, found or not, and its estimates.

Every measurement starts from these outcomes, so picking "the" face in a frame (the best detection
inside the placed crop) and the progress bar over the images live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from edge.analyzer import Analyzer
from edge.evaluation.labels import Sample
from edge.media import MediaError, read_image
from edge.records import Face

Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class Outcome:
    """The labelled face of one image: whether it was detected and what was estimated for it."""

    sample: Sample
    detected: bool
    age: float | None = None
    gender: str | None = None
    ethnicity: str | None = None
    gender_score: float | None = None
    box_short_side: float | None = None
    detector_score: float | None = None
    expression: str | None = None


def on_canvas(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Region]:
    """Centre the crop on a mid-grey square canvas; returns the canvas and the crop's region."""
    h, w = rgb.shape[:2]
    if size <= 0 or size < max(h, w):
        return rgb, (0, 0, w, h)
    canvas = np.full((size, size, 3), 128, np.uint8)
    y0, x0 = (size - h) // 2, (size - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = rgb
    return canvas, (x0, y0, x0 + w, y0 + h)


def analyse_one(analyzer: Analyzer, folder: Path, s: Sample, canvas: int) -> Outcome:
    frame, region = on_canvas(read_image(folder / s.file), canvas)
    return labelled_face(s, analyzer.analyze(frame), region)


def labelled_face(s: Sample, faces: list[Face], region: Region) -> Outcome:
    """The labelled face is the best-scoring detection whose centre lies inside the placed crop."""
    rx1, ry1, rx2, ry2 = region
    inside = [
        f
        for f in faces
        if rx1 <= (f.detection.box[0] + f.detection.box[2]) / 2 <= rx2
        and ry1 <= (f.detection.box[1] + f.detection.box[3]) / 2 <= ry2
    ]
    if not inside:
        return Outcome(s, False)
    best = max(inside, key=lambda f: f.detection.score)
    a, (x1, y1, x2, y2) = best.attributes, best.detection.box
    return Outcome(
        s,
        True,
        a.age,
        a.gender,
        a.ethnicity,
        a.gender_score,
        min(x2 - x1, y2 - y1),
        best.detection.score,
        a.expression,
    )


def progress(err: TextIO, label: str, total: int) -> Callable[[int], None]:
    """A progress bar on ``err`` (a terminal line redrawn at each new percent)."""
    width, last = 30, [-1]

    def update(done: int) -> None:
        pct = done * 100 // max(total, 1)
        if pct == last[0] and done != total:
            return
        last[0] = pct
        filled = width * done // max(total, 1)
        err.write(f"\r{label:<6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            err.write("\n")
        err.flush()

    return update


def analyse_all(
    analyzer: Analyzer, folder: Path, samples: list[Sample], canvas: int, label: str, err: TextIO
) -> tuple[list[Outcome], list[str]]:
    """Every sample's outcome, and a message for each image that could not be read."""
    outcomes, problems = [], []
    tick = progress(err, label, len(samples))
    for i, s in enumerate(samples, start=1):
        try:
            outcomes.append(analyse_one(analyzer, folder, s, canvas))
        except MediaError as exc:
            problems.append(str(exc))
        tick(i)
    return outcomes, problems
