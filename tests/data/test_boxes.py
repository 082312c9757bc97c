"""Box classification and the error / drop / clip policy, example by example and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgclip.data.boxes import BOX_REASONS, TOLERANCE, classify_box, decide_box
from fgclip.data.errors import BoxValidationError, Location

CASES = {
    "malformed": [[0.1, 0.2, 0.3], "0 0 1 1", [0.1, "a", 0.3, 0.4], [True, 0.1, 0.5, 0.5]],
    "non_finite": [[None, 0.1, 0.5, 0.5], [math.nan, 0.1, 0.5, 0.5], [0.1, 0.1, math.inf, 0.5]],
    "wrong_space": [[10, 20, 200, 180], [0.1, 0.1, 2.5, 0.5]],
    "inverted": [[0.6, 0.1, 0.2, 0.5], [0.1, 0.6, 0.5, 0.2]],
    "zero_area": [[0.3, 0.1, 0.3, 0.5], [0.1, 0.4, 0.5, 0.4]],
    "out_of_range": [[-0.2, 0.1, 0.5, 0.5], [0.1, 0.1, 1.25, 0.5], [0.1, -0.01, 0.5, 0.5]],
    "sub_cell": [[0.1, 0.1, 0.15, 0.15], [0.5, 0.5, 0.6, 0.62]],
}


@pytest.mark.parametrize("reason,box", [(r, b) for r, boxes in CASES.items() for b in boxes])
def test_each_reason_is_classified(reason, box):
    assert classify_box(box, grid_size=8) == reason


def test_valid_boxes_and_the_fifth_value():
    assert classify_box([0.1, 0.2, 0.6, 0.7], grid_size=8) is None
    assert classify_box([0.1, 0.2, 0.6, 0.7, 0.93], grid_size=8) is None  # upstream's score, dropped
    assert classify_box([0.0, 0.0, 1.0, 1.0], grid_size=14) is None
    # one side thinner than a cell, the other long: the box still spans cells of its own
    assert classify_box([0.5, 0.1, 0.52, 0.9], grid_size=8) is None
    assert classify_box([0.1, 0.1, 0.15, 0.15]) is None  # no grid given: no sub-cell check


def test_grid_size_as_rows_and_columns():
    box = [0.1, 0.1, 0.2, 0.4]  # 0.1 wide, 0.3 high
    assert classify_box(box, grid_size=(4, 8)) is None  # 4 rows: taller than a cell
    assert classify_box(box, grid_size=(2, 8)) == "sub_cell"  # fits a 0.5 x 0.125 cell
    assert classify_box(box, grid_size=(2, 16)) is None


def test_pixel_space():
    assert classify_box([10, 10, 50, 60], space="pixel", image_size=(64, 64)) is None
    assert classify_box([10, 10, 80, 60], space="pixel", image_size=(64, 64)) == "out_of_range"
    assert classify_box([10, 10, 12, 12], space="pixel", image_size=(64, 64), grid_size=8) == "sub_cell"


def test_within_tolerance_is_clipped_and_counted_under_every_policy():
    for policy in ("error", "drop", "clip"):
        decision = decide_box([-0.0005, 0.1, 1.0008, 0.5], policy, grid_size=8)
        assert decision.reason is None and decision.clipped and not decision.repaired
        assert decision.box == (0.0, 0.1, 1.0, 0.5)
    assert not decide_box([0.1, 0.1, 0.5, 0.5], "drop").clipped


def test_policies_on_out_of_range():
    box = [0.5, 0.1, 1.25, 0.5]
    dropped = decide_box(box, "drop", grid_size=8)
    assert dropped.dropped and dropped.reason == "out_of_range"
    repaired = decide_box(box, "clip", grid_size=8)
    assert repaired.repaired and repaired.box == (0.5, 0.1, 1.0, 0.5)
    # clipping would leave nothing usable: dropped and counted even under "clip"
    gone = decide_box([1.2, 0.1, 1.5, 0.5], "clip", grid_size=8)
    assert gone.dropped and gone.reason == "out_of_range"
    sliver = decide_box([0.99, 0.5, 1.3, 0.55], "clip", grid_size=8)  # 0.01 x 0.05 after clipping: sub-cell
    assert sliver.dropped
    with pytest.raises(BoxValidationError) as info:
        decide_box(box, "error", location=Location("a.json", index=3, line=40, field="bbox_info[2].bbox"))
    message = str(info.value)
    assert "a.json:40" in message and "record 3" in message and "bbox_info[2].bbox" in message
    assert "out_of_range" in message and info.value.reason == "out_of_range"


@pytest.mark.parametrize("reason", [r for r in BOX_REASONS if r != "out_of_range"])
def test_clip_policy_only_repairs_out_of_range(reason):
    decision = decide_box(CASES[reason][0], "clip", grid_size=8)
    assert decision.dropped and decision.reason == reason


coordinate = st.one_of(
    st.floats(min_value=-0.5, max_value=1.5, allow_nan=False),
    st.sampled_from([0.0, 1.0, -0.0005, 1.0005, 0.125]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(coordinate, min_size=4, max_size=4), st.integers(min_value=1, max_value=32))
def test_every_box_gets_exactly_one_outcome(box, grid):
    reason = classify_box(box, grid_size=grid)
    assert reason is None or reason in BOX_REASONS
    for policy in ("drop", "clip"):
        decision = decide_box(box, policy, grid_size=grid)
        if decision.box is None:
            assert decision.reason is not None  # nothing dropped without a reason
        else:
            x1, y1, x2, y2 = decision.box
            assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0
            assert classify_box(decision.box, grid_size=grid) is None
            assert decision.reason is None or (policy == "clip" and decision.repaired)
    if reason is None:
        assert all(-TOLERANCE <= v <= 1 + TOLERANCE for v in box)
    elif reason != "out_of_range":
        assert decide_box(box, "clip", grid_size=grid).dropped


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 0.9), st.floats(0.0, 0.9), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 32))
def test_sub_cell_means_fits_inside_one_cell(x, y, w, h, grid):
    box = [x, y, min(1.0, x + w), min(1.0, y + h)]
    width, height = box[2] - box[0], box[3] - box[1]
    reason = classify_box(box, grid_size=grid)
    if width > 0 and height > 0:
        assert (reason == "sub_cell") == (width * grid < 1 and height * grid < 1)
    else:
        assert reason == "zero_area"
