"""`PendingSteps`: the rows of a run of fork steps that `VadSteps` built and has not yet handed to the sink.

Most steps of a run are plain (counts, scale, batch line: the same twelve metrics) and are kept as columns,
one list per metric, so no dict is made per step (the rows go to the store and the rules as a
`ColumnRun`). The others (a step with a [DIAG] block, one read unit by unit, a plain step whose row another
line changed) are dicts at their positions; when they hold every column's metric (a [DIAG] step does) they
travel in the same record as its `extra` rows, otherwise as dicts between two records. Below: how the units'
texts become those columns (`rate_of`, `per_step`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, MutableMapping
from itertools import compress
from operator import itemgetter
from typing import Any

from fgdiag.logs.sink import ColumnRun, Extra

Row = dict[str, float]
MIN_RUN = 32  # plain rows between two dict rows that lack a column's metric, below which they go as dicts


class PendingSteps:
    """Steps in order; plain rows in `cols` (by `names`), the other rows in `dicts` by position (their
    places in `cols` hold placeholders until `take` fills in their values)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.names: tuple[str, ...] = ()
        self.cols: list[list[float]] = []
        self.dicts: dict[int, Row] = {}
        self.index: dict[str, int] = {}  # name -> its column

    def __len__(self) -> int:
        return len(self.steps)

    def add_columns(self, steps: list[int], names: tuple[str, ...], cols: list[list[float]]) -> bool:
        """Plain rows as columns; False (nothing added) when they hold other names than the rows before."""
        if not self.names:
            self._name(names)
        elif names != self.names:
            return False
        self.steps += steps
        for mine, col in zip(self.cols, cols, strict=True):
            mine += col
        return True

    def _name(self, names: tuple[str, ...]) -> None:
        """The plain rows' names (the rows so far hold placeholders in the new columns)."""
        self.names, self.cols = names, [[0.0] * len(self.steps) for _ in names]
        self.index = {name: j for j, name in enumerate(names)}

    def add_row(self, step: int, row: Row, plain: bool = False) -> None:
        """A row as a dict; `plain`: it holds what plain rows hold (its names become the columns' when
        there are none yet)."""
        if plain and not self.names:
            self._name(tuple(row))
        self.dicts[len(self.steps)] = row
        self.steps.append(step)
        for col in self.cols:
            col.append(0.0)

    def set_row(self, pos: int, row: Row) -> None:
        self.dicts[pos] = row

    def row(self, pos: int) -> Row:
        """The row at `pos` as a dict that may be changed (a plain row becomes one of `dicts`)."""
        row = self.dicts.get(pos)
        if row is None:
            row = self.dicts[pos] = dict(zip(self.names, [col[pos] for col in self.cols], strict=True))
        return row

    def cells(self, pos: int) -> MutableMapping[str, float]:
        """The row at `pos` to read and change in place: its dict, or a plain row's cells in the columns
        (it stays plain: no dict is made)."""
        row = self.dicts.get(pos)
        return row if row is not None else Cells(self, pos)

    def cut(self, pos: int) -> None:
        """Drop the rows from `pos` on (the per-line path reads them again)."""
        del self.steps[pos:]
        for col in self.cols:
            del col[pos:]
        for p in [p for p in self.dicts if p >= pos]:
            del self.dicts[p]

    def take(self, k: int) -> tuple[list[tuple[str, Any]], int, Row]:
        """Rows 0..k-1 out of the pending ones: those before the last as sink records, and the last's step
        and row (it stays open). The records: ("columns", ColumnRun) for stretches of MIN_RUN rows or more
        that hold every column's metric, ("row", (step, row)) for the rows between (a dict row without one
        of them, a stretch too short to pay for a batch of its own)."""
        steps, names, cols, dicts = self.steps, self.names, self.cols, self.dicts
        last_step, last = steps[k - 1], self.row(k - 1)
        here = sorted(p for p in dicts if p < k - 1)
        rows = list(map(dicts.__getitem__, here))
        shared = dict.fromkeys(names).keys()
        held = [row.keys() >= shared for row in rows]
        for name, col in zip(names, cols, strict=True):  # the dict rows' values into the columns
            deque(map(col.__setitem__, compress(here, held), map(itemgetter(name), compress(rows, held))), 0)
        out: list[tuple[str, Any]] = []
        a = 0
        for b in [*(p for p, ok in zip(here, held, strict=True) if not ok), k - 1]:
            if b - a >= MIN_RUN and names:
                lo, hi = bisect_left(here, a), bisect_left(here, b)
                at = [p - a for p in here[lo:hi]]
                extra = _extra(names, at, rows[lo:hi])
                out.append(("columns", ColumnRun(steps[a:b], names, [col[a:b] for col in cols], extra)))
            else:
                out += [("row", (steps[i], self.row(i))) for i in range(a, b)]
            if b < k - 1:
                out.append(("row", (steps[b], dicts[b])))
            a = b + 1
        self.steps = steps[k:]
        self.cols = [col[k:] for col in cols]
        self.dicts = {p - k: row for p, row in dicts.items() if p >= k}
        return out, last_step, last


class Cells(MutableMapping[str, float]):
    """A plain pending row's values, read and written in the columns (names as the columns' names only)."""

    __slots__ = ("_at", "_cols", "_pos")

    def __init__(self, pending: PendingSteps, pos: int) -> None:
        self._at, self._cols, self._pos = pending.index, pending.cols, pos

    def __contains__(self, name: object) -> bool:
        return name in self._at

    def __getitem__(self, name: str) -> float:
        return self._cols[self._at[name]][self._pos]

    def __setitem__(self, name: str, value: float) -> None:
        self._cols[self._at[name]][self._pos] = value  # a name the columns lack raises KeyError

    def __delitem__(self, name: str) -> None:
        raise TypeError("a plain row holds every column's name")

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


def _extra(names: tuple[str, ...], here: list[int], rows: list[Row]) -> tuple[Extra, ...]:
    """The dict rows at positions `here` grouped by their names (those that hold just `names` are plain)."""
    layouts = list(map(tuple, rows))
    out = []
    for layout in dict.fromkeys(layouts):
        if layout == names:
            continue
        mask = list(map(layout.__eq__, layouts))
        group = list(compress(rows, mask))
        out.append((list(compress(here, mask)), layout, [list(map(itemgetter(n), group)) for n in layout]))
    return tuple(out)


def rate_of(text: str | None) -> float | None:
    """The batch line's learning rate; None when absent or not a number (the line path skips it)."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def per_step(scales: list[Any], counts: list[Any], n: int) -> tuple[Any, ...] | None:
    """(the scale's two names, then columns: valid regions, candidates, ln K, raw and exp scale, queued) of
    steps whose scales are one head's and whose counts give ln K; None otherwise. Repeated lines (the
    fork's steady scale and counts) give repeated values without a transposition."""
    if counts.count(counts[0]) == n:
        queued, valid, c, lc = counts[0]
        if lc is None:
            return None
        cols = [[valid] * n, [c] * n, [lc] * n]
        queue = [queued] * n
    else:
        queue, *cols = map(list, zip(*counts, strict=True))
        if None in cols[2]:  # no ln K (and so perhaps no K): not every step holds the same names
            return None
    if scales.count(scales[0]) == n:
        raw_name, exp_name, raw, exp = scales[0]
        return (raw_name, exp_name), *cols, [raw] * n, [exp] * n, queue
    raw_names, exp_names, raws, exps = map(list, zip(*scales, strict=True))
    if raw_names.count(raw_names[0]) != n or exp_names.count(exp_names[0]) != n:
        return None
    return (raw_names[0], exp_names[0]), *cols, raws, exps, queue
