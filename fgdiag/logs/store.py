"""`RowStore`: the rows of a log kept for reports and dashboards, bounded whatever the log's length.

Up to `cap` steps every row is kept. Beyond it the older rows are thinned: in each bucket of four consecutive
rows the two holding the lowest and the highest value of the log's main loss stay, so plots keep the loss
envelope (and spikes) of a 1 GB log in a few megabytes. The newest quarter of the cap is never thinned (the
dashboard's history and the rules' windows look there), and the last value of every metric is kept apart.
The key loss's value per row is also kept in a column filled as rows are added, so thinning reads no old row
but to delete it (old rows are cold in the cache: fetching and checking their values cost ~40 % of thinning).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from itertools import compress, filterfalse, islice, repeat
from operator import itemgetter, methodcaller

from fgdiag import events as ev

Row = dict[str, float | None]
CAP = 16384
BUCKET = 4
_STEP = itemgetter(1)  # the step of a (value, step) pair
KEY_METRICS = (ev.head_metric(ev.HEAD_LOSS, "region"), ev.LOSS)  # the loss whose envelope survives thinning


def _real(values: list[object]) -> bool:
    """Every value a float (not NaN): the buckets' extremes can then be taken in C."""
    return set(map(type, values)) == {float} and all(map(float.__eq__, values, values))  # type: ignore[arg-type]


class _Column:
    """One key loss's value of every stored row, in the rows' order, while all are real floats (`values`
    becomes None at the first missing, NaN or non-float one: thinning then reads the rows as before). A value
    merged later into an older row waits in `late` by step until thinning finds its position."""

    __slots__ = ("get", "key", "late", "values")

    def __init__(self, key: str) -> None:
        self.key = key
        self.get = methodcaller("get", key)
        self.values: list[float] | None = []
        self.late: dict[int, float] = {}

    def extend(self, items: list[tuple[int, Row]]) -> None:
        """Append the values of new (step, row) pairs."""
        if self.values is not None:
            key = self.key
            new = [r.get(key) for _, r in items]
            if _real(new):  # type: ignore[arg-type]
                self.values += new  # type: ignore[arg-type]
            elif new:  # NaN somewhere, a missing value: no column
                self.values = None

    def usable(self) -> bool:
        return bool(self.values)

    def merged(self, step: int, row: Row) -> None:
        value = self.get(row)
        if self.values is None:
            return
        if _real([value]):
            self.late[step] = value
        else:
            self.values, self.late = None, {}

    def head(self, old: list[int]) -> list[float]:
        """The values of the first rows (steps `old`), merged values included."""
        values, late = self.values, self.late
        assert values is not None
        if late:
            for i in compress(range(len(old)), map(late.__contains__, old)):
                values[i] = late.pop(old[i])
        return values[: len(old)]

    def keep(self, old: list[int], mask: list[bool]) -> None:
        """Drop the values of the first rows whose `mask` is false."""
        if self.values is not None:
            self.head(old)
            self.values[: len(old)] = compress(self.values, mask)


class RowStore:
    """Rows by step in log order; `latest` holds every metric's last non-missing value."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = max(cap, 4 * BUCKET)
        self.rows: dict[int, Row] = {}
        self.latest: dict[str, float] = {}
        self.count = 0  # distinct logging steps seen (thinned ones included)
        self.thinned = 0  # rows dropped by thinning
        self._last: int | None = None
        self._cols = {k: _Column(k) for k in KEY_METRICS}

    def add(self, step: int, row: Mapping[str, float | None]) -> Row:
        """Store a row; more metrics of the step just stored (or of a step stored earlier) merge into it.
        Returns the merged row, which the rules judge."""
        known = self.rows.get(step)
        if known is not None:
            known.update(row)
            merged = known
            for k, col in self._cols.items():
                if k in row:
                    col.merged(step, merged)
        else:
            merged = row if isinstance(row, dict) else dict(row)  # the reader's fresh dict is kept as it is
            self.rows[step] = merged
            self._extend([(step, merged)])
            self.count += 1
            if len(self.rows) > self.cap:
                self._thin()
        self._last = step
        if None in merged.values():
            self.latest.update({k: v for k, v in merged.items() if v is not None})
        else:
            self.latest.update(merged)  # type: ignore[arg-type]
        return merged

    def add_rows(self, items: list[tuple[int, Row]]) -> list[tuple[int, Row]]:
        """`add` for each (step, row) in order, in bulk when every step is new (rows kept as they are);
        returns (step, merged row) pairs. Thinning happens at the same rows as with one `add` per row."""
        rows = self.rows
        steps = [s for s, _ in items]
        if (
            not items
            or len(set(steps)) != len(steps)
            or not rows.keys().isdisjoint(steps)
            or any(r.__class__ is not dict for _, r in items)
        ):
            return [(s, self.add(s, r)) for s, r in items]
        i = 0
        while i < len(items):
            room = self.cap + 1 - len(rows)  # the row that makes it cap + 1 thins (see `add`)
            part = items[i : i + room]
            rows.update(part)
            self._extend(part)
            if len(rows) > self.cap:
                self._thin()
            i += room
        self.count += len(items)
        self._last = steps[-1]
        found: dict[str, float] = {}  # each metric's newest non-missing value: read from the newest row back
        have = found.keys()
        for _, row in reversed(items):
            if row.keys() <= have:
                continue  # nothing in this row that a newer one did not already give
            for k, v in row.items():
                if v is not None and k not in found:
                    found[k] = v
        self.latest.update(found)
        return items

    def _extend(self, items: list[tuple[int, Row]]) -> None:
        """Fill the key columns: once one holds values, those after it are dropped (thinning then takes its
        key, or reads the rows when that column is gone too)."""
        found = False
        for col in self._cols.values():
            if found:
                col.values, col.late = None, {}
            else:
                col.extend(items)
                found = col.usable()

    def _thin(self) -> None:
        """Halve the older three quarters: per bucket of four rows keep the key loss's extremes."""
        rows = self.rows
        steps = list(rows)
        old = steps[: len(steps) - self.cap // 4]
        key = next((k for k in KEY_METRICS if any(k in rows[s] for s in old[:64])), None)
        keep: set[int] = set()
        whole = len(old) - len(old) % BUCKET
        col = self._cols[key] if key is not None else None
        vals: Sequence[object] = []  # rows[s].get(key) for s in old
        if col is not None and col.values is not None:
            vals = col.head(old)  # real floats
        elif key is not None:
            vals = list(map(dict.get, islice(rows.values(), len(old)), repeat(key)))  # rows of old
        start = 0
        if col is not None and whole and (col.values is not None or _real(vals[:whole])):  # type: ignore[arg-type]
            pairs = [list(zip(vals[j:whole:BUCKET], old[j:whole:BUCKET], strict=True)) for j in range(BUCKET)]
            keep.update(map(_STEP, map(min, *pairs)))
            keep.update(map(_STEP, map(max, *pairs)))
            start = whole
        for b in range(start, len(old), BUCKET):
            bucket = old[b : b + BUCKET]
            if key is None:
                keep.update(bucket[:: BUCKET // 2])
                continue
            part = zip(vals[b : b + BUCKET], bucket, strict=True)
            scored = [(v, s) for v, s in part if isinstance(v, float) and v == v]
            if not scored:
                keep.add(bucket[0])
                continue
            keep.add(min(scored)[1])
            keep.add(max(scored)[1])
        mask = list(map(keep.__contains__, old))
        for c in self._cols.values():
            c.keep(old, mask)
        drop = list(filterfalse(keep.__contains__, old))
        deque(map(rows.__delitem__, drop), maxlen=0)
        self.thinned += len(drop)
