"""Box voting (edge/boxes.py): a kept box is the score-weighted mean of the anchors that found it."""

from __future__ import annotations

import numpy as np

from edge.boxes import VOTE_MIN_SCORE, nms, vote


def test_the_voted_box_does_not_depend_on_which_anchor_wins_nms() -> None:
    # Two anchors on one face, a third on another face, a weak one near the first face.
    boxes = np.array(
        [[0.10, 0.10, 0.30, 0.30], [0.12, 0.11, 0.32, 0.31], [0.60, 0.60, 0.80, 0.80], [0.11, 0.10, 0.31, 0.30]]
    )
    a = np.array([0.90, 0.89, 0.80, VOTE_MIN_SCORE / 2])
    b = np.array([0.89, 0.90, 0.80, VOTE_MIN_SCORE / 2])  # the other anchor wins this time
    keep_a, keep_b = nms(boxes, a, 0.5), nms(boxes, b, 0.5)
    assert list(keep_a) == [0, 2] and list(keep_b) == [1, 2]
    voted_a, voted_b = vote(boxes, a, keep_a), vote(boxes, b, keep_b)
    assert np.allclose(voted_a[0], voted_b[0], atol=2e-4)  # raw winners differ by 0.02
    expected = (0.90 * boxes[0] + 0.89 * boxes[1]) / 1.79  # the weak anchor does not vote
    assert np.allclose(voted_a[0], expected)
    assert np.allclose(voted_a[1], boxes[2])  # a face alone keeps its box


def test_a_kept_box_below_the_voting_floor_stays_as_it_is() -> None:
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7]])
    scores = np.array([0.9, VOTE_MIN_SCORE / 2])
    keep = nms(boxes, scores, 0.05)
    assert np.allclose(vote(boxes, scores, keep), boxes[keep])
    assert vote(boxes, scores, keep[:0]).shape == (0, 4)
