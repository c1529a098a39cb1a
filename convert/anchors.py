"""Regenerate SSD anchors for another input size from the stored 512x512 set.

face-api ships its 5118 anchors as a constant. In the TF Object Detection API
layout each feature map cell carries the same k anchor shapes, centred on the
cell ((i + 0.5) / n); so the shapes can be read off the stored set and laid
out again on the grids a smaller input produces. The convolutions see pixels,
not fractions of the image, so an anchor keeps its size in *pixels*: at 320 it
covers 512/320 times more of the (normalised) input than at 512.
"""

from __future__ import annotations

import math

import numpy as np

ANCHORS_PER_CELL = (3, 6, 6, 6, 6, 6)


def feature_grids(input_size: int) -> list[int]:
    """Feature map sizes of the six box predictors (conv11 at stride 16, then stride-2 SAME convs)."""
    n = math.ceil(input_size / 16)
    grids = [n]
    for _ in range(5):
        n = math.ceil(n / 2)
        grids.append(n)
    return grids


def anchor_shapes(anchors: np.ndarray, input_size: int = 512) -> list[np.ndarray]:
    """Per predictor, the (height, width) of its k anchors, read from the first cell."""
    shapes, start = [], 0
    for n, k in zip(feature_grids(input_size), ANCHORS_PER_CELL):
        first = anchors[start : start + k]
        shapes.append(np.stack([first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]], axis=1))
        start += n * n * k
    if start != len(anchors):
        raise ValueError(f"expected {start} anchors for a {input_size} input, got {len(anchors)}")
    return shapes


def generate(shapes: list[np.ndarray], input_size: int, shapes_size: int = 512) -> np.ndarray:
    """Anchors (ymin, xmin, ymax, xmax) in the predictors' output order: row, column, anchor.

    ``shapes`` are normalised to a ``shapes_size`` input; they are rescaled to keep their pixel size.
    """
    out = []
    for n, hw in zip(feature_grids(input_size), shapes):
        hw = hw * (shapes_size / input_size)
        centres = (np.arange(n, dtype=np.float64) + 0.5) / n
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cy = np.repeat(cy.reshape(-1), len(hw))
        cx = np.repeat(cx.reshape(-1), len(hw))
        h = np.tile(hw[:, 0], n * n)
        w = np.tile(hw[:, 1], n * n)
        out.append(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1))
    return np.concatenate(out).astype(np.float32)
