"""Calibration inputs built from the pinned photos (convert/datasets.py): close-ups."""

from __future__ import annotations

import numpy as np
from edge_convert import datasets as ds


def photo(name: str, faces: np.ndarray | None) -> ds.Photo:
    rng = np.random.default_rng(1)
    return ds.Photo(name, rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8), faces)


def test_close_ups_set_each_face_large_on_a_plain_canvas_reproducibly() -> None:
    faces = np.array([[100.0, 80.0, 160.0, 150.0], [250.0, 60.0, 300.0, 120.0]])
    photos = [photo("a.jpg", faces), photo("no-faces.jpg", None), photo("empty.jpg", faces[:0])]
    first, again = ds.close_ups(photos, per_photo=5, seed=3), ds.close_ups(photos, per_photo=5, seed=3)
    assert [p.name for p in first] == [f"a.jpg#close{k}" for k in range(5)]  # photos without faces give none
    for p, q in zip(first, again):
        assert np.array_equal(p.rgb, q.rgb)
        h, w, _ = p.rgb.shape
        assert h == w
        # a face box is 50-70 px; loosened 1.15-1.6x, on a canvas 2-3.5x that: the face is small in it
        assert 2.0 * 50 * 1.15 <= w <= 3.5 * 70 * 1.6 + 1
    assert not np.array_equal(first[0].rgb, ds.close_ups(photos, per_photo=5, seed=4)[0].rgb)
