"""The series the runtime checks look back on: bounded, and seen by each row as of that row.

A batch whose steps rise past every series goes in at once (`keep_batch`); while the batch's rows are
judged, `tail` and `since` show a row only the points up to it, so a check reads the same values whether the
rows came one at a time or a million at once. Other batches go in row by row (a step logged again replaces
its value, as it always did).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import is_not, lt
from typing import Any, TypeGuard

from fgdiag.rules.batch import Batch

SERIES_CAP = 4096  # points kept per series: the longest look-back of any rule (500 steps) with room to spare
Row = Mapping[str, float | None]


class Series:
    """(step, value) points of one metric, the points from a step on replaced when it is observed again (the
    step itself, or the stretch a resumed run logs again: `superseded`); only the newest SERIES_CAP points are
    kept (trimmed in blocks, so appending stays O(1) amortised)."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []

    def put(self, step: int, value: float) -> None:
        cut = superseded(self.steps, step)
        del self.steps[cut:], self.values[cut:]
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) > 2 * SERIES_CAP:
            del self.steps[:SERIES_CAP], self.values[:SERIES_CAP]

    def extend(self, steps: list[int], values: list[float]) -> None:
        """Append points of strictly increasing steps, all after the last one."""
        self.trim(len(steps))
        self.steps += steps
        self.values += values

    def trim(self, coming: int) -> None:
        """Make room for `coming` points: beyond 2 x SERIES_CAP the oldest go (the newest SERIES_CAP stay)."""
        if len(self.steps) + coming > 2 * SERIES_CAP:
            cut = max(0, len(self.steps) - SERIES_CAP)
            del self.steps[:cut], self.values[:cut]


def superseded(steps: list[int], step: int) -> int:
    """Where the points of `steps` (rising) that a new point at `step` replaces begin: the step logged again,
    or every step from it on when a run resumed from an earlier checkpoint logs them again (they are the
    killed run's); len(steps) when `step` comes after them all."""
    return bisect_left(steps, step) if steps and steps[-1] >= step else len(steps)


def median(values: Sequence[float]) -> float:
    """Median without importing `statistics` (it pulls in fractions/decimal: startup time for watch)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def exp_or_inf(x: float) -> float:
    """exp(x), inf where it overflows: logged or configured scales can be absurd (710, 1000) and a finding
    must still be written (math.exp raises OverflowError above 709.78)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def finite(x: Any) -> TypeGuard[float]:
    """A real, finite number (not None, not NaN/inf, not a bool)."""
    try:
        return isinstance(x, (int, float)) and math.isfinite(x)
    except OverflowError:  # an int beyond float range (a progress bar's 400-digit total)
        return False


class SeriesStore:
    """Named series and the view that shows each row of a batch the points up to it."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.view: dict[str, tuple[int, list[int]]] | None = None  # name -> (length before, rows of points)
        self.row = 0  # index in its batch of the row being judged
        self.kept_last: int | None = None  # the latest step any series holds

    def rising(self, batch: Batch) -> bool:
        """The batch's steps rise, past every step the series hold: it can go in whole."""
        steps = batch.steps
        rises = batch.rises or all(map(lt, steps, steps[1:]))
        return rises and (self.kept_last is None or steps[0] > self.kept_last)

    def done(self, steps: list[int]) -> None:
        self.view = None
        top = max(steps)
        self.kept_last = top if self.kept_last is None else max(self.kept_last, top)

    def tail(self, name: str, n: int) -> tuple[list[int], list[float]]:
        """(steps, values) of the last n points of a kept series, as of the row being judged."""
        sr = self.series.get(name)
        if sr is None:
            return [], []
        end = len(sr.steps)
        view = self.view.get(name) if self.view is not None else None
        if view is not None:
            end = view[0] + bisect_right(view[1], self.row)
        a = max(0, end - n)
        return sr.steps[a:end], sr.values[a:end]

    def since(self, name: str, step: float) -> list[tuple[int, float]]:
        """(step, value) points of a kept series from `step` on, as of the row being judged."""
        steps, values = self.tail(name, 2 * SERIES_CAP)
        a = len(steps)
        while a and steps[a - 1] >= step:
            a -= 1
        return list(zip(steps[a:], values[a:], strict=True))

    def keep_batch(
        self, batch: Batch, routes: Mapping[tuple[str, ...], Any]
    ) -> dict[str, tuple[int, list[int]]]:
        """Append every kept column of a batch whose steps rise past every series; returns, per name, the
        series length before and the rows of the appended points (what `tail` needs)."""
        steps, view = batch.steps, {}
        at: dict[int, list[int]] = {}  # the steps of a row list, by its id: columns share their row lists
        for name in {name for names in batch.groups for name in routes[names][1]}:
            col_idx, vals = batch.column(name)
            if None in vals:  # the missing values dropped, C-level
                held = list(map(is_not, vals, repeat(None)))
                col_idx, vals = list(compress(col_idx, held)), list(compress(vals, held))
            if not col_idx:
                continue
            sr = self.series.get(name)
            if sr is None:
                sr = self.series[name] = Series()
            sr.trim(len(col_idx))
            view[name] = (len(sr.steps), col_idx)
            col_steps = at.get(id(col_idx))
            if col_steps is None:
                col_steps = at[id(col_idx)] = list(map(steps.__getitem__, col_idx))
            sr.steps += col_steps
            sr.values += vals  # type: ignore[arg-type]
        return view

    def keep_row(self, step: int, m: Row, kept: list[str]) -> None:
        series = self.series
        for name in kept:
            value = m[name]
            if value is not None:
                sr = series.get(name)
                if sr is None:
                    sr = series[name] = Series()
                sr.put(int(step), value)

    def keep_span(self, batch: Batch, routes: Mapping[tuple[str, ...], Any], a: int, b: int) -> None:
        """Rows a..b-1 into the kept series, a column at a time (a step seen again replaces its value)."""
        steps, series = batch.steps, self.series
        kept = {name for names in batch.groups for name in routes[names][1]}
        for name in sorted(kept):
            col_idx, vals = batch.column(name)
            lo, hi = bisect_left(col_idx, a), bisect_left(col_idx, b)
            sel_steps = list(map(steps.__getitem__, col_idx[lo:hi]))
            sel_vals = vals[lo:hi]
            if None in sel_vals:
                pairs = [(s, v) for s, v in zip(sel_steps, sel_vals, strict=True) if v is not None]
                sel_steps, sel_vals = [s for s, _ in pairs], [v for _, v in pairs]
            if not sel_steps:
                continue
            sr = series.get(name)
            if sr is None:
                sr = series[name] = Series()
            for s, v in zip(sel_steps, sel_vals, strict=True):
                sr.put(s, v)  # type: ignore[arg-type]
