"""The detection plan leaves no face size or position uncovered, and its passes merge into one box per face."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.boxes import nms
from edge.detection_plan import RELIABLE_INPUT_PX, plan_detection
from edge.detector import FaceDetector
from edge.models import Manifest
from edge.synthetic import paste, sprite

FRAMES = [(640, 480), (1280, 720), (1920, 1080), (480, 270)]


def test_without_a_smallest_face_one_full_pass() -> None:
    plan = plan_detection(1280, 720, 512, 512, 0.0)
    assert len(plan.passes) == 1 and plan.passes[0].w == 1280 and plan.passes[0].min_px == 0.0


def test_a_full_pass_alone_when_it_reaches_the_smallest_face() -> None:
    # 480x270 at 512: scale 1.07, so the full pass alone reaches faces of 15 px (16 in the network).
    assert len(plan_detection(480, 270, 512, 512, 20.0).passes) == 1
    assert len(plan_detection(480, 270, 512, 512, 12.0).passes) > 1


@pytest.mark.parametrize(("width", "height"), FRAMES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_face_from_the_smallest_up_is_kept_by_a_pass_that_sees_all_of_it(
    width: int, height: int, data: st.DataObject
) -> None:
    min_face = data.draw(st.sampled_from([16.0, 20.0, 30.0, 40.0]))
    plan = plan_detection(width, height, 512, 512, min_face)
    # A large frame may need more enlargement than one tile level bridges: the plan then says how
    # small it reaches (logged at start-up), and promises that.
    assert plan.min_face_px >= min_face or len(plan.passes) == 1
    size = data.draw(st.floats(max(min_face, plan.min_face_px), min(width, height) * 0.9))
    x = data.draw(st.floats(0, width - size))
    y = data.draw(st.floats(0, height - size))
    lo, hi = RELIABLE_INPUT_PX
    cx, cy = x + size / 2, y + size / 2
    keeping = [
        p
        for p in plan.passes
        if p.min_px <= size < p.max_px and p.core[0] <= cx < p.core[2] and p.core[1] <= cy < p.core[3]
    ]
    assert keeping, (size, x, y, plan.describe())
    covering = [p for p in keeping if p.x <= x and p.y <= y and x + size <= p.x + p.w and y + size <= p.y + p.h]
    assert covering == keeping  # a pass keeps a face only where it sees all of it
    # ...and at least one of them sees it at a size inside the detector's reliable band (or above it,
    # in the full-frame pass, where only huge faces go).
    assert any(lo <= size * p.scale <= hi or p is plan.passes[0] for p in covering)


def test_a_face_cut_by_a_tile_border_merges_into_the_whole_face() -> None:
    whole = np.array([[100, 100, 160, 175]], dtype=np.float32)
    cut = np.array([[100, 104, 122, 170]], dtype=np.float32)  # the left third, seen by another tile
    neighbour = np.array([[165, 100, 225, 175]], dtype=np.float32)  # another face, side by side
    boxes = np.concatenate([whole, cut, neighbour])
    scores = np.array([0.9, 0.7, 0.8], dtype=np.float32)
    assert sorted(nms(boxes, scores, -1.0, 0.4, 10).tolist()) == [0, 1, 2]  # IoU alone keeps the half
    assert sorted(nms(boxes, scores, -1.0, 0.4, 10, contained_threshold=0.7).tolist()) == [0, 2]


@pytest.fixture(scope="module")
def tiled() -> FaceDetector:
    return FaceDetector(Manifest(), score_threshold=0.25, min_face_px=20)


def _frame_with_faces(width: int, height: int, faces: list[tuple[float, float, float]]) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(3)
    frame = np.clip(rng.normal(120, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    boxes = []
    for face_px, cx, cy in faces:
        s = sprite(face_px)
        fx1, fy1, fx2, fy2 = s.face
        box = paste(frame, s, cx - (fx1 + fx2) / 2, cy - (fy1 + fy2) / 2)
        assert box is not None
        boxes.append(box)
    return frame, boxes


def test_small_faces_at_hd_are_found_once_each_even_across_tile_borders(tiled: FaceDetector) -> None:
    plan = tiled.plan(1280, 720)
    assert len(plan.passes) > 1
    tile = plan.passes[1]
    # A face large enough for the full-frame pass (pasted first: its shoulders cover the area below
    # it), then small ones: across a vertical tile border, across a horizontal one, at a crossing of
    # both, and in the middle of a tile.
    border_x = plan.passes[2].x + 4  # inside the overlap of the first two tiles, near the second's edge
    border_y = tile.y + tile.h - 2  # near the bottom edge of the first row of tiles
    faces = [
        (150.0, 1100.0, 200.0),
        (26.0, float(border_x), 120.0),
        (30.0, 700.0, float(border_y)),
        (34.0, float(plan.passes[4].x + 4), float(border_y)),
        (28.0, 450.0, 600.0),
    ]
    frame, truth = _frame_with_faces(1280, 720, faces)
    found = tiled.detect(frame)
    for box in truth:
        hits = [d for d in found if _near(d.box, box)]
        assert len(hits) == 1, (box, [(d.box, d.score) for d in found])
    assert len(found) == len(truth)


def _near(det: tuple[float, float, float, float], truth: tuple[float, float, float, float]) -> bool:
    """The detection's centre lies within the true face's width of the true face's centre (the
    detector's box also takes in hair and chin, more so for tiny faces)."""
    dx = (det[0] + det[2] - truth[0] - truth[2]) / 2
    dy = (det[1] + det[3] - truth[1] - truth[3]) / 2
    return bool(np.hypot(dx, dy) < truth[2] - truth[0])


def test_tiles_take_turns_in_video_and_all_run_for_a_photo() -> None:
    detector = FaceDetector(Manifest(), score_threshold=0.25, min_face_px=20, tile_interval=3)
    plan = detector.plan(1280, 720)
    tiles = plan.passes[1:]
    # Small faces in the cores of tiles 0, 1 and 2: each tile's turn comes every third frame.
    faces = [(22.0, (t.core[0] + t.core[2]) / 2, (t.core[1] + t.core[3]) / 2) for t in tiles[:3]]
    frame, truth = _frame_with_faces(1280, 720, faces)
    assert len(detector.detect(frame)) == 3  # a photo: every tile
    for index in range(6):
        (found,) = detector.detect(frame, frame_index=index)
        assert _near(found.box, truth[index % 3]), (index, found)
