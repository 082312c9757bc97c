"""`RowStore`: the rows of a log kept for reports and dashboards, bounded whatever the log's length.

Up to `cap` steps every row is kept. Beyond it the older rows are thinned: in each bucket of four consecutive
rows the two holding the lowest and the highest value of the log's main loss stay, so plots keep the loss
envelope (and spikes) of a 1 GB log in a few megabytes. The newest quarter of the cap is never thinned (the
dashboard's history and the rules' windows look there), and the last value of every metric is kept apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from itertools import filterfalse, islice, repeat
from operator import itemgetter

from fgdiag import events as ev

Row = dict[str, float | None]
CAP = 16384
BUCKET = 4
_STEP = itemgetter(1)  # the step of a (value, step) pair
KEY_METRICS = (ev.head_metric(ev.HEAD_LOSS, "region"), ev.LOSS)  # the loss whose envelope survives thinning


class RowStore:
    """Rows by step in log order; `latest` holds every metric's last non-missing value."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = max(cap, 4 * BUCKET)
        self.rows: dict[int, Row] = {}
        self.latest: dict[str, float] = {}
        self.count = 0  # distinct logging steps seen (thinned ones included)
        self.thinned = 0  # rows dropped by thinning
        self._last: int | None = None

    def add(self, step: int, row: Mapping[str, float | None]) -> Row:
        """Store a row; more metrics of the step just stored (or of a step stored earlier) merge into it.
        Returns the merged row, which the rules judge."""
        known = self.rows.get(step)
        if known is not None:
            known.update(row)
            merged = known
        else:
            merged = row if isinstance(row, dict) else dict(row)  # the reader's fresh dict is kept as it is
            self.rows[step] = merged
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
            rows.update(items[i : i + room])
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

    def _thin(self) -> None:
        """Halve the older three quarters: per bucket of four rows keep the key loss's extremes."""
        rows = self.rows
        steps = list(rows)
        old = steps[: len(steps) - self.cap // 4]
        key = next((k for k in KEY_METRICS if any(k in rows[s] for s in old[:64])), None)
        keep: set[int] = set()
        whole = len(old) - len(old) % BUCKET
        if key is not None and whole:  # whole buckets whose key values are all real floats: in C
            vals = list(map(dict.get, islice(rows.values(), whole), repeat(key)))  # rows of old[:whole]
            if set(map(type, vals)) == {float} and all(map(float.__eq__, vals, vals)):  # type: ignore[arg-type]
                pairs = [list(zip(vals[j::BUCKET], old[j:whole:BUCKET], strict=True)) for j in range(BUCKET)]
                keep.update(map(_STEP, map(min, *pairs)))
                keep.update(map(_STEP, map(max, *pairs)))
                old_rest = old[whole:]
            else:
                old_rest = old
        else:
            old_rest = old
        for b in range(0, len(old_rest), BUCKET):
            bucket = old_rest[b : b + BUCKET]
            if key is None:
                keep.update(bucket[:: BUCKET // 2])
                continue
            scored = [(v, s) for s in bucket if isinstance(v := rows[s].get(key), float) and v == v]
            if not scored:
                keep.add(bucket[0])
                continue
            keep.add(min(scored)[1])
            keep.add(max(scored)[1])
        drop = list(filterfalse(keep.__contains__, old))
        deque(map(rows.__delitem__, drop), maxlen=0)
        self.thinned += len(drop)
