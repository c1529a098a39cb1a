"""The person detector's decoding (``edge.person_detector.decode_people``) on hand-made heads:
box geometry from the centre cell, its offset and its size; plateaus and neighbours merged; the
threshold and the cap of 6 people."""

from __future__ import annotations

import numpy as np
import pytest

from edge.person_detector import MAX_PEOPLE as MOVENET_MAX_PEOPLE
from edge.person_detector import decode_people as decode_movenet
from edge.person_detector import drop_heads

GRID, SIZE = 64, 256  # 4 px cells


def heads(peaks: list[tuple[int, int, float, float, float]]) -> dict[str, np.ndarray]:
    """Centre heatmap, box size and offset with a peak (y, x, score, height, width in cells) each."""
    center = np.full((1, GRID, GRID, 1), 0.01, np.float32)
    scale = np.zeros((1, GRID, GRID, 2), np.float32)
    offset = np.zeros((1, GRID, GRID, 2), np.float32)
    for y, x, score, h, w in peaks:
        center[0, y, x, 0] = score
        scale[0, y, x] = (h, w)
        offset[0, y, x] = (0.5, 0.25)
    return {"center": center, "box_scale": scale, "box_offset": offset}


def test_a_peak_gives_its_box_in_input_pixels() -> None:
    (box,) = decode_movenet(heads([(20, 30, 0.8, 16.0, 6.0)]), SIZE, 0.3)
    cy, cx = (20 + 0.5) * 4, (30 + 0.25) * 4
    np.testing.assert_allclose(box[:4], [cx - 12, cy - 32, cx + 12, cy + 32], atol=1e-4)
    assert box[4] == pytest.approx(0.8)


def test_plateaus_and_weak_peaks() -> None:
    out = heads([(20, 30, 0.8, 16.0, 6.0), (20, 31, 0.8, 16.0, 6.0), (50, 10, 0.2, 8.0, 4.0)])
    assert len(decode_movenet(out, SIZE, 0.3)) == 1  # two tied cells of one person: one box
    assert len(decode_movenet(out, SIZE, 0.1)) == 2


def test_at_most_six_people_strongest_first() -> None:
    peaks = [(8 + 6 * i, 8 + 6 * i, 0.3 + 0.05 * i, 4.0, 2.0) for i in range(8)]
    found = decode_movenet(heads(peaks), SIZE, 0.1)
    assert len(found) == MOVENET_MAX_PEOPLE
    assert np.all(np.diff(found[:, 4]) <= 0) and found[0, 4] == pytest.approx(0.65)


def test_a_head_alone_inside_a_whole_person_is_dropped_but_a_person_in_front_is_kept() -> None:
    body = [100.0, 50.0, 180.0, 250.0, 0.9]
    head = [125.0, 55.0, 150.0, 85.0, 0.35]  # small, inside, at the top
    child = [120.0, 150.0, 160.0, 250.0, 0.6]  # small, inside, but low: someone in front
    found = drop_heads(np.array([body, child, head]))
    assert found.tolist() == [body, child]
    assert drop_heads(np.array([head])).tolist() == [head]  # alone it stays
