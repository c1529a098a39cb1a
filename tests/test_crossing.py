"""The counting line and zone geometry (edge.crossing), on hand-placed points."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.crossing import IN, NONE, OUT, Line, crossing, foot, inside

# A door across the middle of the frame, left to right; "in" is below it on screen (its right side).
DOOR = Line((0.2, 0.5), (0.8, 0.5), in_side="right")


def test_a_step_across_the_line_counts_in_or_out_by_its_direction() -> None:
    assert crossing(DOOR, (0.5, 0.4), (0.5, 0.6)) == IN  # walking down the image, into the room
    assert crossing(DOOR, (0.5, 0.6), (0.5, 0.4)) == OUT
    assert crossing(Line(DOOR.a, DOOR.b, in_side="left"), (0.5, 0.4), (0.5, 0.6)) == OUT


def test_no_crossing_beside_the_segment_along_it_or_touching_it() -> None:
    assert crossing(DOOR, (0.9, 0.4), (0.9, 0.6)) == NONE  # past the end of the door
    assert crossing(DOOR, (0.3, 0.4), (0.7, 0.45)) == NONE  # along it, on one side
    assert crossing(DOOR, (0.5, 0.4), (0.5, 0.5)) == NONE  # onto the line, not over it
    assert crossing(DOOR, (0.5, 0.4), (0.5, 0.4)) == NONE


_off_line = st.tuples(st.floats(-1, 2), st.floats(0, 1).filter(lambda y: y != 0.5))


@given(st.lists(_off_line, min_size=1, max_size=8))
def test_a_round_trip_across_a_full_width_line_nets_zero(path: list[tuple[float, float]]) -> None:
    # With a line across the whole view, every closed path crosses in as often as out: counts
    # cannot drift. (A segment can be walked around, which is why a door is a segment.)
    wall = Line((-5.0, 0.5), (5.0, 0.5), in_side="right")
    loop = [*path, path[0]]
    assert sum(crossing(wall, p, q) for p, q in zip(loop, loop[1:])) == 0


def test_inside_a_zone() -> None:
    till = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]
    assert inside(till, (0.25, 0.25)) and not inside(till, (0.75, 0.25)) and not inside(till, (0.25, 0.75))
    ell = [(0, 0), (1, 0), (1, 0.2), (0.2, 0.2), (0.2, 1), (0, 1)]  # not convex
    assert inside(ell, (0.1, 0.9)) and not inside(ell, (0.6, 0.6))


def test_a_person_stands_at_the_bottom_centre_of_the_box() -> None:
    assert foot((100.0, 50.0, 140.0, 250.0), 640, 480) == (120.0 / 640, 250.0 / 480)
