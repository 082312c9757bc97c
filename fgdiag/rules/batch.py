"""`Batch`: the rows the engine judges together, with each row's clock and columns built on demand.

A check's `quick(batch, rows)` reads whole columns (C-level `min`, `max`, `sum`) to settle the rows where
nothing can happen, and hands back the few rows that need `observe`; so a 1 GB log costs a few list
operations per chunk instead of a Python call per check per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import is_not, itemgetter, methodcaller
from typing import Any, cast

from fgdiag import events as ev

Row = Mapping[str, float | None]
_VALUES = methodcaller("values")
_ABSENT = object()  # a row without the column's name (None is a value: missing)


class Batch:
    """Rows in log order. Per row: its step, whether window statistics are due (`heavy`), the window in
    logging points and the typical interval between points as the engine saw them at that row."""

    __slots__ = (
        "_columns",
        "_shared_done",
        "_transpose",
        "groups",
        "heavy",
        "intervals",
        "rises",
        "rows",
        "start",
        "steps",
        "windows",
    )

    def __init__(self, rows: Sequence[tuple[int, Row]]) -> None:
        self.rows = rows
        self.steps: list[int] = []
        self.heavy: list[bool] = []
        self.windows: list[int] = []
        self.intervals: list[float] = []
        self.start = 0  # the trend start (optimizer step); the run info is fixed within a batch
        self.rises = False  # the steps strictly rise within the batch (False: unknown or not)
        self.groups: dict[tuple[str, ...], list[int]] = {}  # metric names -> rows holding exactly those
        self._columns: dict[str, tuple[list[int], list[float | None]]] = {}
        self._transpose: dict[tuple[str, ...], list[list[float | None]]] = {}
        self._shared_done = False  # the columns of the names every group holds are built (`_shared`)

    def group_rows(self) -> None:
        """Fill `groups`: the rows by their metric names (one tuple per row, compared in C)."""
        rows, groups = self.rows, self.groups
        names = list(map(tuple, map(itemgetter(1), rows)))
        if names and names.count(names[0]) == len(names):  # every row holds the same names: one group
            groups[names[0]] = list(range(len(names)))
            return
        for i, key in enumerate(names):
            group = groups.get(key)
            if group is None:
                groups[key] = [i]
            else:
                group.append(i)

    def column(self, name: str) -> tuple[list[int], list[float | None]]:
        """(row indices, values) of the rows holding `name`, in row order (values may be None)."""
        hit = self._columns.get(name)
        if hit is not None:
            return hit
        if not self._shared_done:
            self._shared()
            hit = self._columns.get(name)
            if hit is not None:
                return hit
        parts: list[tuple[list[int], list[float | None]]] = []
        for names, idx in self.groups.items():
            if name in names:
                parts.append((idx, self._transposed(names, idx)[names.index(name)]))
        if not parts:
            hit = ([], [])
        elif len(parts) == 1:
            hit = parts[0]
        else:  # the groups' rows interleave: place each value at its row, then keep the rows that hold one
            slots: list[Any] = [_ABSENT] * len(self.rows)
            for idx, vals in parts:
                list(map(slots.__setitem__, idx, vals))  # C-level loop
            held = list(map(is_not, slots, repeat(_ABSENT)))
            hit = (list(compress(range(len(slots)), held)), list(compress(slots, held)))
        self._columns[name] = hit
        return hit

    def _shared(self) -> None:
        """The columns of the names every row holds, in row order at once (no merge of the groups)."""
        self._shared_done = True
        shapes = list(self.groups)
        if len(shapes) < 2:  # one group: its own transposition is the same in one pass
            return
        first = set(shapes[0]).intersection(*shapes[1:])
        common = [n for n in shapes[0] if n in first]
        if not common:
            return
        dicts = map(itemgetter(1), self.rows)
        everywhere = list(range(len(self.rows)))
        if len(common) == 1:
            self._columns[common[0]] = (everywhere, list(map(itemgetter(common[0]), dicts)))
            return
        columns = zip(*map(itemgetter(*common), dicts), strict=True)
        for name, col in zip(common, columns, strict=True):
            self._columns[name] = (everywhere, list(col))

    def _transposed(self, names: tuple[str, ...], idx: list[int]) -> list[list[float | None]]:
        """Every column of one group at once: rows of a group hold the same names in the same order."""
        cached = self._transpose.get(names)
        if cached is None:
            rows = self.rows
            picked = rows if len(idx) == len(rows) else map(rows.__getitem__, idx)  # one group: every row
            cached = [list(col) for col in zip(*map(_VALUES, map(itemgetter(1), picked)), strict=True)]
            self._transpose[names] = cached
        return cached

    def any_order(self, name: str) -> list[float | None]:
        """Every value of `name` in the batch, groups one after the other (for min, max, sums: no merge)."""
        hit = self._columns.get(name)
        if hit is None and not self._shared_done:
            self._shared()
            hit = self._columns.get(name)
        if hit is not None:
            return hit[1]
        parts = [
            self._transposed(names, idx)[names.index(name)]
            for names, idx in self.groups.items()
            if name in names
        ]
        if len(parts) == 1:
            return parts[0]
        return [v for part in parts for v in part]

    def finite_points(self, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows where `name` is a finite number, in row order."""
        idx, vals = self.column(name)
        good = finite_values(vals)
        if len(good) == len(vals):
            return list(map(self.steps.__getitem__, idx)), good
        pairs = [
            (self.steps[i], v) for i, v in zip(idx, vals, strict=True) if v is not None and math.isfinite(v)
        ]
        return [s for s, _v in pairs], [v for _s, v in pairs]

    def log_scales(self, heads: Sequence[str]) -> list[float]:
        """Every finite raw logit scale of these heads in the batch, read from exp(scale) where the raw one is
        missing: a superset of what the rows hold, enough to rule a condition out for the whole batch."""
        out: list[float] = []
        for h in heads:
            raw = self.any_order(ev.head_metric(ev.LOGIT_SCALE, h))
            good = finite_values(raw)
            out += good
            exp = self.any_order(ev.head_metric(ev.LOGIT_SCALE_EXP, h))
            if exp and (len(exp) != len(raw) or len(good) < len(raw)):
                out += [math.log(s) for s in finite_values(exp) if s > 0]
        return out

    def values(self, name: str) -> list[float]:
        """The non-missing values of `name`, in row order."""
        vals = self.column(name)[1]
        return [v for v in vals if v is not None] if None in vals else cast("list[float]", vals)

    def names(self) -> set[str]:
        return {n for names in self.groups for n in names}


def finite_values(values: Sequence[float | None]) -> list[float]:
    """The finite numbers among `values` (the list itself, C-level, when they all are: the common case)."""
    if None not in values:
        try:
            if math.isfinite(sum(cast("Sequence[float]", values))) and isinstance(values, list):
                return cast("list[float]", values)
        except OverflowError:
            pass
    return [v for v in values if v is not None and math.isfinite(v)]


def all_finite(values: Sequence[float | None]) -> bool:
    """No None, NaN or inf among `values` (a sum that overflows counts as not finite: the caller rechecks)."""
    return None not in values and math.isfinite(sum(cast("Sequence[float]", values)))
