"""`Batch`: the rows the engine judges together, with each row's clock and columns built on demand.

A check's `quick(batch, rows)` reads whole columns (C-level `min`, `max`, `sum`) to settle the rows where
nothing can happen, and hands back the few rows that need `observe`; so a 1 GB log costs a few list
operations per chunk instead of a Python call per check per row. A batch read as columns (`from_columns`: a
run of Trainer steps) builds a row's dict only when a check observes that row (`LazyRows`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import chain, compress, repeat
from operator import eq, itemgetter
from typing import cast

from fgdiag import events as ev

Row = Mapping[str, float | None]
MAX_LENGTHS = 8  # more distinct row lengths in a batch than this: grouped row by row


Extra = tuple[list[int], tuple[str, ...], list[list[float]]]  # row positions, their names, a column each


class LazyRows(Sequence[tuple[int, Row]]):
    """(step, row) pairs of rows given as columns, each row's dict built when first read (the same dict
    when read again: checks may hold a row); `extra` as in `Batch.from_columns`."""

    def __init__(
        self,
        steps: list[int],
        names: tuple[str, ...],
        cols: Sequence[list[float]],
        extra: Sequence[Extra] = (),
    ) -> None:
        self.steps, self.names, self.cols, self.extra = steps, names, cols, extra
        self._built: dict[int, tuple[int, Row]] = {}
        self._where: dict[int, tuple[int, int]] | None = None  # row -> (extra group, its position there)

    def __len__(self) -> int:
        return len(self.steps)

    def _row(self, i: int) -> tuple[int, Row]:
        hit = self._built.get(i)
        if hit is None:
            names, cols, j = self.names, self.cols, i  # the row's names, their columns, its place in them
            if self.extra:
                if self._where is None:
                    self._where = {
                        r: (g, k) for g, (idx, _, _) in enumerate(self.extra) for k, r in enumerate(idx)
                    }
                at = self._where.get(i)
                if at is not None:
                    _, names, cols = self.extra[at[0]]
                    j = at[1]
            hit = self._built[i] = (self.steps[i], dict(zip(names, [c[j] for c in cols], strict=True)))
        return hit

    def __getitem__(self, i):  # an int or a slice, as a list's
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(len(self.steps)))]
        return self._row(range(len(self.steps))[i])


class Batch:
    """Rows in log order. Per row: its step, whether window statistics are due (`heavy`), the window in
    logging points and the typical interval between points as the engine saw them at that row."""

    __slots__ = (
        "_columns",
        "_dicts",
        "_every",
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
        self._dicts: list[Row] = []
        self._every: list[int] | None = None

    @classmethod
    def from_columns(
        cls,
        steps: list[int],
        names: tuple[str, ...],
        cols: Sequence[list[float]],
        extra: Sequence[Extra] = (),
    ) -> Batch:
        """Rows that all hold `names` (no missing value), given as one column of values per name; `extra`:
        per layout, rows that hold more (their positions, their names in order, all their values by name;
        the values of `names` are in `cols` too)."""
        batch = cls(LazyRows(steps, names, cols, extra))
        every = batch.every()
        batch._columns.update(zip(names, ((every, col) for col in cols), strict=True))  # type: ignore[misc]
        if not extra:
            batch.groups[names] = every
            return batch
        plain = bytearray(b"\x01") * len(steps)
        for idx, _, _ in extra:
            deque(map(plain.__setitem__, idx, repeat(0)), maxlen=0)
        found = [(list(compress(every, plain)), names), *((idx, layout) for idx, layout, _ in extra)]
        batch.groups.update((layout, idx) for idx, layout in sorted(found, key=lambda g: g[0][:1]) if idx)
        own: dict[str, list[tuple[list[int], list[float]]]] = {}  # names only extra rows hold
        for idx, layout, ecols in extra:
            for name, col in zip(layout, ecols, strict=True):
                if name not in batch._columns:
                    own.setdefault(name, []).append((idx, col))
        for name, parts in own.items():
            if len(parts) == 1:
                batch._columns[name] = parts[0]  # type: ignore[assignment]
            else:
                pairs = sorted(zip(chain(*(p[0] for p in parts)), chain(*(p[1] for p in parts)), strict=True))
                batch._columns[name] = ([i for i, _ in pairs], [v for _, v in pairs])
        return batch

    def group_rows(self, known: Sequence[tuple[str, ...]] | None = None) -> None:
        """Fill `groups` (in the order of their first row): the rows by their metric names (`known`: each
        row's names, when the caller has them). Rows are split by their number of names first (C-level), then
        each length's names are confirmed in one `count` of tuples: a log's row shapes rarely share a length,
        so no Python loop runs over the rows."""
        dicts = self._dicts = list(map(itemgetter(1), self.rows))
        n = len(dicts)
        if not n:
            return
        lens = list(map(len, dicts))
        if lens.count(lens[0]) == n:
            parts = [list(range(n))]
        else:
            shapes = set(lens)
            if len(shapes) > MAX_LENGTHS:
                parts = [list(range(n))]
            else:
                parts = [list(compress(range(n), map(eq, lens, repeat(k)))) for k in dict.fromkeys(lens)]
        found: list[tuple[tuple[str, ...], list[int]]] = []
        for idx in parts:
            if known is None:
                names = list(map(tuple, map(dicts.__getitem__, idx)))
            else:
                names = list(known) if len(idx) == n else list(map(known.__getitem__, idx))
            if names.count(names[0]) == len(names):
                found.append((names[0], idx))
                continue
            split: dict[tuple[str, ...], list[int]] = {}
            for i, key in zip(idx, names, strict=True):
                group = split.get(key)
                if group is None:
                    split[key] = [i]
                else:
                    group.append(i)
            found += split.items()
        if len(found) > 1:
            found.sort(key=lambda part: part[1][0])
        self.groups.update(found)

    def column(self, name: str) -> tuple[list[int], list[float | None]]:
        """(row indices, values) of the rows holding `name`, in row order (values may be None). One C-level
        pass of `itemgetter(name)` over the rows that hold it, a name at a time: cheaper than transposing
        whole groups or every shared name at once (tuples of a row's values, then a transposition)."""
        hit = self._columns.get(name)
        if hit is not None:
            return hit
        holders = [idx for names, idx in self.groups.items() if name in names]
        dicts = self._dicts
        if not holders:
            hit = ([], [])
        elif len(holders) == 1 == len(self.groups):  # one shape: its rows are the batch
            hit = (holders[0], list(map(itemgetter(name), dicts)))
        elif len(holders) == len(self.groups):  # every shape holds it: every row
            hit = (self.every(), list(map(itemgetter(name), dicts)))
        else:
            idx = holders[0] if len(holders) == 1 else sorted(i for part in holders for i in part)
            hit = (idx, list(map(itemgetter(name), map(dicts.__getitem__, idx))))
        self._columns[name] = hit
        return hit

    def values_at(self, name: str, rows: list[int]) -> list[float | None]:
        """`name`'s value on each of `rows` (rising row indices; None where a row lacks it), read from its
        column: the column itself when it covers exactly those rows."""
        idx, vals = self.column(name)
        if idx is rows or idx == rows:
            return vals
        if idx is self._every:  # every row holds it
            return list(map(vals.__getitem__, rows))
        return list(map(dict(zip(idx, vals, strict=True)).get, rows))

    def every(self) -> list[int]:
        """The indices of all the batch's rows (one list, shared: callers do not change it)."""
        if self._every is None:
            self._every = list(range(len(self.rows)))
        return self._every

    def any_order(self, name: str) -> list[float | None]:
        """Every value of `name` in the batch (for min, max, counts: the order is not promised)."""
        return self.column(name)[1]

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
