"""Box classification and the box policy: every box is usable, clipped, repaired, or dropped with a reason.

Boxes are xyxy. In normalised files coordinates lie in [0, 1] (a tolerance of 1e-3 is clipped silently but
counted); pixel boxes are checked against the image size. A box "smaller than one patch cell" fits inside one
cell of the feature grid in both directions: roi_align then reads a single cell (shared with whatever else
touches it), so the region has no features of its own. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fgclip.data.errors import BoxValidationError, Location

BOX_REASONS = ("malformed", "non_finite", "wrong_space", "inverted", "zero_area", "out_of_range", "sub_cell")
RECORD_REASONS = ("count_mismatch", "no_keyframe", "keyframe_beyond_video", "duplicate_keyframe")
ALL_REASONS = BOX_REASONS + RECORD_REASONS
POLICIES = ("error", "drop", "clip")
TOLERANCE = 1e-3
WRONG_SPACE_LIMIT = 2.0  # a coordinate beyond twice the normalised range can only be a pixel value

Box = tuple[float, float, float, float]
GridSize = int | tuple[int, int] | None


def grid_shape(grid_size: GridSize) -> tuple[int, int] | None:
    """(rows, cols) of the feature grid, or None when no grid check is wanted."""
    if grid_size is None:
        return None
    rows, cols = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if rows < 1 or cols < 1:
        raise ValueError(f"grid_size={grid_size!r}: must be positive")
    return int(rows), int(cols)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"box_policy={policy!r}: must be one of {POLICIES}")
    return policy


def _coordinates(values: Any) -> tuple[str | None, list[float]]:
    """('malformed'|'non_finite'|None, the 4 coordinates); a 5th value (upstream's score) is dropped."""
    if not isinstance(values, (list, tuple)) or len(values) not in (4, 5):
        return "malformed", []
    coords = list(values[:4])
    if any(isinstance(v, bool) or not (v is None or isinstance(v, (int, float))) for v in coords):
        return "malformed", []
    if any(v is None or not _finite(v) for v in coords):
        return "non_finite", []
    return None, [float(v) for v in coords]


def _finite(value: float) -> bool:
    """math.isfinite, with an integer beyond float range (a 400-digit coordinate) as not finite."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def classify_box(
    values: Any,
    *,
    grid_size: GridSize = None,
    space: str = "normalized",
    image_size: tuple[int, int] | None = None,
    tolerance: float = TOLERANCE,
) -> str | None:
    """The first reason in `BOX_REASONS` order that makes the box unusable, or None.

    space="normalized": coordinates in [0, 1]. space="pixel": needs image_size=(width, height).
    """
    reason, coords = _coordinates(values)
    if reason:
        return reason
    x1, y1, x2, y2 = coords
    if space == "normalized":
        width, height = 1.0, 1.0
        if max(abs(v) for v in coords) > WRONG_SPACE_LIMIT:
            return "wrong_space"
    elif space == "pixel":
        if image_size is None:
            raise ValueError("space='pixel' needs image_size=(width, height)")
        width, height = float(image_size[0]), float(image_size[1])
    else:
        raise ValueError(f"space={space!r}: must be 'normalized' or 'pixel'")
    if x2 < x1 or y2 < y1:
        return "inverted"
    if x2 == x1 or y2 == y1:
        return "zero_area"
    tol_x, tol_y = tolerance * width, tolerance * height
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        return "out_of_range"
    cx1, cy1, cx2, cy2 = _clamp((x1 / width, y1 / height, x2 / width, y2 / height))
    if cx2 <= cx1 or cy2 <= cy1:  # the tolerated overhang was all there was
        return "zero_area"
    grid = grid_shape(grid_size)
    if grid is not None and (cx2 - cx1) * grid[1] < 1.0 and (cy2 - cy1) * grid[0] < 1.0:
        return "sub_cell"
    return None


def _clamp(box: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x1, y1, x2, y2)


@dataclass(frozen=True)
class BoxDecision:
    """What the policy did with one box. `box` is the normalised box to train on, None when dropped."""

    reason: str | None
    box: Box | None
    clipped: bool = False  # outside [0, 1] by less than the tolerance: clipped silently, counted
    repaired: bool = False  # out_of_range clipped by policy "clip"

    @property
    def dropped(self) -> bool:
        return self.box is None


def _describe(values: Any) -> str:
    text = repr(list(values)) if isinstance(values, (list, tuple)) else repr(values)
    return text if len(text) <= 80 else text[:77] + "..."


def decide_box(
    values: Any,
    policy: str,
    *,
    grid_size: GridSize = None,
    location: Location | None = None,
    tolerance: float = TOLERANCE,
) -> BoxDecision:
    """Apply `policy` ("error" | "drop" | "clip") to one normalised box; "error" raises BoxValidationError."""
    reason = classify_box(values, grid_size=grid_size, tolerance=tolerance)
    if reason is None:
        raw = tuple(float(v) for v in values[:4])
        box = _clamp(raw)
        return BoxDecision(None, box, clipped=box != raw)
    if policy == "error":
        raise BoxValidationError(location or Location("<box>"), reason, _describe(values))
    if policy == "clip" and reason == "out_of_range":
        box = _clamp(values[:4])
        if classify_box(box, grid_size=grid_size, tolerance=tolerance) is None:
            return BoxDecision(reason, box, repaired=True)
    return BoxDecision(reason, None)


def region_failure(reason: str, policy: str, location: Location, detail: str = "") -> None:
    """A record-level reason (see RECORD_REASONS) or a malformed keyframe frame: raise under "error"."""
    if policy == "error":
        raise BoxValidationError(location, reason, detail)


__all__ = [
    "ALL_REASONS",
    "BOX_REASONS",
    "POLICIES",
    "RECORD_REASONS",
    "TOLERANCE",
    "WRONG_SPACE_LIMIT",
    "Box",
    "BoxDecision",
    "check_policy",
    "classify_box",
    "decide_box",
    "grid_shape",
    "region_failure",
]
