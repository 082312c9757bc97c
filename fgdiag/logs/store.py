"""`RowStore`: the rows of a log kept for reports and dashboards, bounded whatever the log's length.

Up to `cap` steps every row is kept. Beyond it the older rows are thinned: in each bucket of four consecutive
rows the two holding the lowest and the highest value of the log's main loss stay, so plots keep the loss
envelope (and spikes) of a 1 GB log in a few megabytes. The newest quarter of the cap is never thinned (the
dashboard's history and the rules' windows look there), and the last value of every metric is kept apart.

Rows are kept packed, not as the reader's dicts: each row's values as one bytes object of doubles (in
the order of its metric names, its layout, kept once per distinct layout), the key losses also in lists
for thinning. Freeing hundreds of thousands of row dicts (a dict, its table and a float object per
value) long after they were made, cold in the cache and scattered by earlier thinning, cost ~0.35 s of a
1,000,000-line Trainer log; a thinned row now frees one flat object (and its step and key loss) and the
reader's dicts die young. Thinning marks the rows it keeps by position and compresses the lists. A row
holding a value that is not a real float (None, NaN, an int) is kept as its dict, as are the rows of layouts
beyond MAX_LAYOUTS, so memory stays bounded and values come back exactly. `rows` builds the dicts on demand
(cached until the next change).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, compress, islice, repeat, starmap
from operator import add, eq, itemgetter, lt, sub
from struct import Struct

from fgdiag import events as ev
from fgdiag.logs.sink import Extra, column_rows

Row = dict[str, float | None]
Layout = tuple[str, ...]  # a row's metric names, in order
CAP = 16384
BUCKET = 4
KEY_METRICS = (ev.head_metric(ev.HEAD_LOSS, "region"), ev.LOSS)  # the loss whose envelope survives thinning
ODD = 0  # layout id of a row kept as its dict
MAX_LAYOUTS = 4096  # distinct metric-name layouts packed; rows of further ones are kept as dicts


def _real(values: list[object]) -> bool:
    """Every value a float (not NaN): it then comes back equal from its packed double."""
    return set(map(type, values)) == {float} and all(map(float.__eq__, values, values))  # type: ignore[arg-type]


def _all_real(groups: Sequence[Iterable[object]]) -> bool:
    """`_real` over many values (the values of each row, or each column), cheaper: a sum of floats is NaN
    when one is (or +inf meets -inf, which only sends the values to the exact row-by-row check)."""
    if set(map(type, chain.from_iterable(groups))) != {float}:
        return False
    total = sum(chain.from_iterable(groups))  # type: ignore[arg-type]
    return total == total


class RowStore:
    """Rows by step in log order; `latest` holds every metric's last non-missing value."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = max(cap, 4 * BUCKET)
        self.latest: dict[str, float] = {}
        self.count = 0  # distinct logging steps seen (thinned ones included)
        self.thinned = 0  # rows dropped by thinning
        self._steps: list[int] = []  # the stored rows' steps, in log order
        self._ids = array("H")  # each stored row's layout id (ODD: the row is in `_odd`)
        self._packed: list[bytes | None] = []  # each stored row's values (None: the row is in `_odd`)
        self._layouts: list[Layout] = [()]  # layout id -> metric names in the row's order
        self._structs: list[Struct] = [Struct("")]
        self._layout_id: dict[Layout, int] = {}
        self._keys: dict[str, list[float]] = {k: [] for k in KEY_METRICS}  # each row's key loss (0.0: absent)
        self._odd: dict[int, Row] = {}  # step -> row, for rows kept as dicts
        self._top: int | None = None  # the highest step ever stored
        self._where: dict[int, int] | None = None  # step -> position, once stored steps stop rising
        self._view: dict[int, Row] | None = None

    # --- reading ----------------------------------------------------------------------------------------
    @property
    def rows(self) -> dict[int, Row]:
        """step -> row (dicts built from the packed values; rows kept as dicts are those dicts)."""
        if self._view is None:
            layouts, structs, odd = self._layouts, self._structs, self._odd
            self._view = {
                step: dict(zip(layouts[lid], structs[lid].unpack(blob), strict=True))  # type: ignore[arg-type]
                if lid
                else odd[step]
                for step, lid, blob in zip(self._steps, self._ids, self._packed, strict=True)
            }
        return self._view

    def __len__(self) -> int:
        return len(self._steps)

    # --- adding -----------------------------------------------------------------------------------------
    def add(self, step: int, row: Mapping[str, float | None]) -> Row:
        """Store a row; more metrics of the step just stored (or of a step stored earlier) merge into it.
        Returns the merged row, which the rules judge."""
        pos = self._position(step)
        if pos is None:
            merged = row if isinstance(row, dict) else dict(row)  # the reader's fresh dict is judged as it is
            self._append([step], [merged])
            self.count += 1
            if len(self._steps) > self.cap:
                self._thin()
            return merged
        merged = self._merge(pos, step, row)
        self._latest([merged])
        return merged

    def add_rows(self, items: list[tuple[int, Row]]) -> tuple[list[tuple[int, Row]], list[Layout] | None]:
        """`add` for each (step, row) in order, in bulk when every step is new (rows judged as they are);
        returns the (step, merged row) pairs and, in bulk, each row's metric names (the rules group rows by
        them: computed once). Thinning happens at the same rows as with one `add` per row."""
        if not items:
            return items, []
        steps, rows = list(map(itemgetter(0), items)), list(map(itemgetter(1), items))
        if set(map(type, rows)) != {dict} or not self._all_new(steps):
            return [(s, self.add(s, r)) for s, r in items], None
        layouts: list[Layout] = []
        self._in_parts(len(items), lambda i, j: layouts.extend(self._append(steps[i:j], rows[i:j])))
        return items, layouts

    def add_columns(
        self, steps: list[int], names: Layout, cols: list[list[float]], extra: tuple[Extra, ...] = ()
    ) -> bool:
        """Rows given as columns (a `ColumnRun`'s fields: a value of each of `names` per row, the `extra`
        rows' own layouts), stored as `add_rows` stores them; False, storing nothing, when a step is stored
        already (the caller adds them as rows, merged)."""
        if not steps:
            return True
        if not self._all_new(steps):
            return False
        lid, lids = self._id(names), [self._id(layout) for _, layout, _ in extra]
        if ODD in (lid, *lids) or not _all_real([*cols, *(c for _, _, ecols in extra for c in ecols)]):
            self.add_rows(list(zip(steps, column_rows(names, cols, extra), strict=True)))  # row by row
            return True
        n, structs = len(steps), self._structs
        packed: list[bytes | None] = list(starmap(structs[lid].pack, zip(*cols, strict=True)))
        ids = array("H", [lid]) * n
        at = {k: j for j, k in enumerate(names)}
        keys = {k: cols[at[k]] if k in at else [0.0] * n for k in self._keys}
        for (idx, layout, ecols), elid in zip(extra, lids, strict=True):
            deque(
                map(packed.__setitem__, idx, starmap(structs[elid].pack, zip(*ecols, strict=True))), maxlen=0
            )
            deque(map(ids.__setitem__, idx, repeat(elid)), maxlen=0)
            for k in self._keys.keys() - at.keys() & set(layout):  # a key loss only extra rows hold
                deque(map(keys[k].__setitem__, idx, ecols[layout.index(k)]), maxlen=0)

        def put(i: int, j: int) -> None:
            self._place(steps[i:j])
            self._packed += packed[i:j]
            self._ids.extend(ids[i:j])
            for k, col in self._keys.items():
                col += keys[k][i:j]

        self._in_parts(n, put)
        for _idx, layout, ecols in sorted(extra, key=lambda e: e[0][-1]):  # older values first
            self.latest.update(zip(layout, [col[-1] for col in ecols], strict=True))
        self.latest.update(zip(names, [col[-1] for col in cols], strict=True))  # every row holds these
        return True

    def _in_parts(self, n: int, put: Callable[[int, int], object]) -> None:
        """`put(i, j)` stores new rows i..j-1 of n, in parts that end where the store holds cap + 1 rows: the
        thinning happens there, at the same rows as with one `add` per row."""
        i = 0
        while i < n:
            j = min(n, i + self.cap + 1 - len(self._steps))
            put(i, j)
            if len(self._steps) > self.cap:
                self._thin()
            i = j
        self.count += n

    def _latest(self, rows: list[Row], layouts: list[Layout] | None = None) -> None:
        """Each metric's newest non-missing value. Rows of real floats (`layouts` given): the last row of
        each layout holds them all."""
        if layouts is not None:
            last = dict(zip(layouts, range(len(rows)), strict=True))
            for i in sorted(last.values()):
                self.latest.update(rows[i])  # type: ignore[arg-type]
            return
        found: dict[str, float] = {}  # read from the newest row back
        have = found.keys()
        for row in reversed(rows):
            if row.keys() <= have:
                continue  # nothing in this row that a newer one did not already give
            for k, v in row.items():
                if v is not None and k not in found:
                    found[k] = v
        self.latest.update(found)

    def _all_new(self, steps: list[int]) -> bool:
        """No step twice and none stored already (cheap while steps rise)."""
        top = self._top
        if (top is None or steps[0] > top) and all(map(lt, steps, islice(steps, 1, None))):
            return True
        return len(set(steps)) == len(steps) and set(self._steps).isdisjoint(steps)

    def _position(self, step: int) -> int | None:
        if self._top is None or step > self._top:
            return None
        if self._where is not None:
            return self._where.get(step)
        i = bisect_left(self._steps, step)
        return i if i < len(self._steps) and self._steps[i] == step else None

    def _place(self, steps: list[int]) -> None:
        """New steps (not stored, in order) at the end; how positions are found follows."""
        self._view = None
        base = len(self._steps)
        rising = self._top is None or steps[0] > self._top
        if self._where is None and not (rising and all(map(lt, steps, islice(steps, 1, None)))):
            self._where = dict(zip(self._steps, range(base), strict=True))  # bisection no longer finds them
        if self._where is not None:
            self._where.update(zip(steps, range(base, base + len(steps)), strict=True))
        self._top = max(steps) if self._top is None else max(self._top, *steps)
        self._steps.extend(steps)

    def _append(self, steps: list[int], rows: list[Row]) -> list[Layout]:
        """New rows (steps not stored, in order): packed, or kept as dicts. Returns their layouts."""
        m = len(rows)
        self._place(steps)
        layouts = list(map(tuple, rows))
        kinds = dict.fromkeys(layouts)
        real = len(kinds) <= 8 and _all_real(list(map(dict.values, rows)))
        lids = {keys: self._id(keys) for keys in kinds} if real else None
        if lids is not None and ODD not in lids.values():
            self._packed += self._pack(layouts, rows, kinds, lids)
            self._ids.extend([lids[layouts[0]]] * m if len(kinds) == 1 else map(lids.__getitem__, layouts))
            self._latest(rows, layouts)
            for k, col in self._keys.items():
                if all(k in keys for keys in kinds):
                    col.extend(map(itemgetter(k), rows))
                elif not any(k in keys for keys in kinds):
                    col += [0.0] * m
                else:
                    col.extend([row.get(k, 0.0) for row in rows])  # type: ignore[misc]
            return layouts
        ids = [
            self._id(keys) if _real(list(row.values())) else ODD
            for keys, row in zip(layouts, rows, strict=True)
        ]
        self._ids.extend(ids)
        structs = self._structs
        self._packed += [
            structs[lid].pack(*row.values()) if lid else None for lid, row in zip(ids, rows, strict=True)
        ]
        for lid, step, row in zip(ids, steps, rows, strict=True):
            if lid == ODD:
                self._odd[step] = row
        self._latest(rows)
        for k, col in self._keys.items():
            col.extend([v if (v := row.get(k)).__class__ is float else 0.0 for row in rows])
        return layouts

    def _pack(
        self, layouts: list[Layout], rows: list[Row], kinds: dict[Layout, None], lids: dict
    ) -> list[bytes | None]:
        """The packed values of rows of real floats, a layout at a time."""
        structs = self._structs
        if len(kinds) == 1:
            return list(starmap(structs[lids[layouts[0]]].pack, map(dict.values, rows)))
        out: list[bytes | None] = [None] * len(rows)
        for keys in kinds:
            at = list(compress(range(len(rows)), map(keys.__eq__, layouts)))
            some = [rows[at[0]]] if len(at) == 1 else itemgetter(*at)(rows)
            deque(
                map(out.__setitem__, at, starmap(structs[lids[keys]].pack, map(dict.values, some))), maxlen=0
            )
        return out

    def _id(self, keys: Layout) -> int:
        """The layout id of metric names `keys`; ODD when the table is full."""
        lid = self._layout_id.get(keys)
        if lid is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                return ODD
            lid = self._layout_id[keys] = len(self._layouts)
            self._layouts.append(keys)
            self._structs.append(Struct(f"{len(keys)}d"))
        return lid

    def _merge(self, pos: int, step: int, row: Mapping[str, float | None]) -> Row:
        """More metrics for the row at `pos`; returns the merged row."""
        self._view = None
        lid = self._ids[pos]
        if lid == ODD:
            merged = self._odd[step]
            merged.update(row)
        else:
            merged = dict(zip(self._layouts[lid], self._structs[lid].unpack(self._packed[pos]), strict=True))  # type: ignore[arg-type]
            merged.update(row)
            lid = self._id(tuple(merged)) if _real(list(merged.values())) else ODD
            self._ids[pos] = lid
            self._packed[pos] = self._structs[lid].pack(*merged.values()) if lid else None
            if lid == ODD:
                self._odd[step] = merged
        for k, col in self._keys.items():
            v = merged.get(k)
            col[pos] = v if v.__class__ is float else 0.0
        return merged

    # --- thinning ---------------------------------------------------------------------------------------
    def _key_values(self, key: str, n: int) -> tuple[Sequence[float | None], bool]:
        """The key loss of the first `n` rows (None where missing) and whether all are real floats."""
        ids, col = self._ids, self._keys[key]
        with_key = {lid for lid, keys in enumerate(self._layouts) if lid != ODD and key in keys}
        if set(islice(ids, n)) <= with_key:
            return col[:n], True
        out: list[float | None] = []
        for i in range(n):
            lid = ids[i]
            if lid == ODD:
                out.append(self._odd[self._steps[i]].get(key))
            else:
                out.append(col[i] if lid in with_key else None)
        return out, False

    def _has_key(self, key: str, n: int) -> bool:
        """`key` among the metrics of the first rows (up to 64 of the first `n`)."""
        for i in range(min(n, 64)):
            lid = self._ids[i]
            if key in (self._odd[self._steps[i]] if lid == ODD else self._layouts[lid]):
                return True
        return False

    def _thin(self) -> None:
        """Halve the older three quarters: per bucket of four rows keep the key loss's extremes."""
        self._view = None
        n = len(self._steps)
        n_old = n - self.cap // 4
        key = next((k for k in KEY_METRICS if self._has_key(k, n_old)), None)
        mask = self._kept(key, n_old) + b"\x01" * (n - n_old)
        if self._odd:
            for i in compress(range(n_old), map(eq, self._ids, repeat(ODD))):
                if not mask[i]:
                    del self._odd[self._steps[i]]
        self._steps = list(compress(self._steps, mask))
        self._ids = array("H", compress(self._ids, mask))
        self._packed = list(compress(self._packed, mask))
        for k, col in self._keys.items():
            self._keys[k] = list(compress(col, mask))
        if self._where is not None:
            self._where = dict(zip(self._steps, range(len(self._steps)), strict=True))
        self.thinned += n - len(self._steps)

    def _kept(self, key: str | None, n_old: int) -> bytearray:
        """Which of the first `n_old` rows stay (1): per bucket the rows of the lowest and the highest key
        loss, ties to the lower step for the lowest and the higher step for the highest (as min and max of
        (value, step) pairs); the first and third row of a bucket when there is no key loss."""
        kept = bytearray(n_old)
        if key is None:
            kept[:: BUCKET // 2] = b"\x01" * len(range(0, n_old, BUCKET // 2))
            return kept
        old = self._steps[:n_old]
        vals, real = self._key_values(key, n_old)
        whole = n_old - n_old % BUCKET
        start = 0
        if whole and (real or _real(vals[:whole])):  # type: ignore[arg-type]
            if all(map(lt, old, islice(old, 1, whole))):  # rising steps: a tie goes to the first/last row
                quads = list(zip(*[vals[j:whole:BUCKET] for j in range(BUCKET)], strict=True))
                backs = list(zip(*[vals[j:whole:BUCKET] for j in reversed(range(BUCKET))], strict=True))
                lows = map(add, range(0, whole, BUCKET), map(tuple.index, quads, map(min, quads)))
                highs = map(sub, range(BUCKET - 1, whole, BUCKET), map(tuple.index, backs, map(max, backs)))
                deque(map(kept.__setitem__, chain(lows, highs), repeat(1)), maxlen=0)
            else:
                at = [
                    list(zip(vals[j:whole:BUCKET], old[j:whole:BUCKET], range(j, whole, BUCKET), strict=True))
                    for j in range(BUCKET)
                ]
                ends = chain(map(min, *at), map(max, *at))
                deque(map(kept.__setitem__, map(itemgetter(2), ends), repeat(1)), maxlen=0)
            start = whole
        for b in range(start, n_old, BUCKET):
            part = zip(
                vals[b : b + BUCKET], old[b : b + BUCKET], range(b, min(b + BUCKET, n_old)), strict=True
            )
            scored = [(v, s, i) for v, s, i in part if isinstance(v, float) and v == v]
            if not scored:
                kept[b] = 1
                continue
            kept[min(scored)[2]] = 1
            kept[max(scored)[2]] = 1
        return kept
