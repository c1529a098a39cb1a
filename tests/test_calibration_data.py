"""Calibration and verification inputs built from the pinned photos (convert/datasets.py)."""

from __future__ import annotations

import numpy as np
from edge_convert import datasets as ds

from edge.preprocess import CropSpec, crop_face, face_views


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


def test_face_variants_come_as_the_device_views_of_each_jittered_box() -> None:
    """With views, every variant is the runtime's views of one box (the box first), flipped and
    re-lit alike; its first view is exactly the single-crop variant, so calibration is unchanged."""
    frame = photo("a.jpg", None).rgb
    faces = [(frame, np.array([100.0, 80.0, 160.0, 150.0])), (frame, np.array([250.0, 60.0, 300.0, 120.0]))]
    spec = CropSpec(32)
    single = ds.face_variants(faces, spec, per_face=4, seed=3, harsh=True)
    seven = ds.face_variants(faces, spec, per_face=4, seed=3, harsh=True, views=7)
    assert seven.shape == (8 * 7, 32, 32, 3) and single.shape == (8, 32, 32, 3)
    assert np.array_equal(seven[::7], single)
    # the plain variant of the first face: its views are the crops of face_views' boxes
    plain = [crop_face(frame, b, spec) for b in face_views(faces[0][1], 7)]
    assert np.array_equal(seven[:7], np.stack(plain))
    assert not np.array_equal(seven[0], seven[1])
