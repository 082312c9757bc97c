"""`RowStore` keeps the key loss's values in a column as rows are added; thinning reads that column instead of
the rows. The rows it keeps must be exactly those the documented thinning keeps when it reads the rows (the
per-bucket extremes of the key loss, ties by step), one `add` per row or in bulk, whatever the chunking: with
steps merged again (the key value changed in an old row), rows whose key is missing, NaN, None or an int, a
key metric that appears only later, and steps that are not in order."""

from __future__ import annotations

import math
import random

import pytest

from fgdiag import events as ev
from fgdiag.logs.store import BUCKET, KEY_METRICS, RowStore

REGION = ev.head_metric(ev.HEAD_LOSS, "region")
CAP = 64


class PlainStore:
    """The thinning as documented, reading every value from the rows themselves (the reference)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.rows, self.thinned = cap, {}, 0

    def add(self, step: int, row: dict) -> None:
        if step in self.rows:
            self.rows[step].update(row)
            return
        self.rows[step] = dict(row)
        if len(self.rows) > self.cap:
            self.thin()

    def thin(self) -> None:
        steps = list(self.rows)
        old = steps[: len(steps) - self.cap // 4]
        key = next((k for k in KEY_METRICS if any(k in self.rows[s] for s in old[:64])), None)
        keep = set()
        for b in range(0, len(old), BUCKET):
            bucket = old[b : b + BUCKET]
            if key is None:
                keep.update(bucket[:: BUCKET // 2])
                continue
            scored = []
            for s in bucket:
                v = self.rows[s].get(key)
                if isinstance(v, float) and not math.isnan(v):
                    scored.append((v, s))
            if not scored:
                keep.add(bucket[0])
            else:
                keep.add(min(scored)[1])
                keep.add(max(scored)[1])
        for s in old:
            if s not in keep:
                del self.rows[s]
                self.thinned += 1


def log_rows(case: str, seed: int) -> list[tuple[int, dict]]:
    """(step, row) pairs as a reader yields them for one kind of log."""
    rng = random.Random(seed)
    steps = list(range(0, 3000, 2))
    if case == "unordered":
        steps[700:700] = list(range(1, 600, 2))  # steps below those already stored, logged late
    items: list[tuple[int, dict]] = []
    for i, step in enumerate(steps):
        loss = round(rng.random(), 2)  # ties are common
        row: dict = {ev.LOSS: loss, "grad_norm": rng.random()}
        if case == "odd" and i % 11 == 3:
            row[ev.LOSS] = rng.choice([float("nan"), None, 3, "missing"])
            if row[ev.LOSS] == "missing":
                del row[ev.LOSS]
        if case == "no_key":  # no loss logged: the first and third row of each bucket stay
            del row[ev.LOSS]
        if case == "late_key" and i >= 900:
            row[REGION] = round(rng.random(), 2)  # the region head's loss is logged from here on
        if case == "layouts":  # metric names vary from row to row (a generic log): many layouts a chunk
            names = rng.sample([f"m{j}" for j in range(6)], rng.randint(0, 3))
            row.update({name: rng.random() for name in names})
        if case == "region":
            row[REGION] = round(rng.random(), 2)
            if i > 1000 and i % 97 == 5:  # from here on thinning reads the rows
                row[REGION] = float("nan")
        items.append((step, row))
        if case in ("merged", "region", "unordered") and i % 7 == 6:
            back = steps[max(0, i - rng.choice([0, 1, 5, 20, 40, 200]))]  # a step logged again
            key = REGION if case == "region" else ev.LOSS
            items.append((back, {key: round(rng.random(), 2), "learning_rate": 1e-4}))
    return items


CASES = ["clean", "odd", "merged", "late_key", "region", "unordered", "layouts", "no_key"]


@pytest.mark.parametrize("case", CASES)
def test_thinning_keeps_the_rows_the_plain_thinning_keeps(case):
    """One `add` per row and `add_rows` in chunks of every size keep exactly the reference's rows."""
    items = log_rows(case, seed=CASES.index(case))
    plain, one = PlainStore(CAP), RowStore(cap=CAP)
    for step, row in items:
        plain.add(step, dict(row))
        one.add(step, dict(row))
    assert one.thinned > 1000
    assert (one.rows, one.thinned) == (plain.rows, plain.thinned)
    assert list(map(list, one.rows.values())) == list(map(list, plain.rows.values()))  # metric order too
    rng = random.Random(7)
    for _ in range(3):
        bulk, i = RowStore(cap=CAP), 0
        while i < len(items):
            n = rng.choice([1, 3, 16, 37, 90, 400])
            bulk.add_rows([(s, dict(r)) for s, r in items[i : i + n]])
            i += n
        assert (bulk.rows, bulk.latest, bulk.count, bulk.thinned) == (
            one.rows,
            one.latest,
            one.count,
            one.thinned,
        )


def test_thinning_follows_a_key_value_merged_into_an_old_row():
    """A step logged again with a new key value (here a spike into an already stored row) is judged by
    that value when its bucket is thinned: the spike survives."""
    store = RowStore(cap=CAP)
    store.add_rows([(s, {ev.LOSS: 1.0 + s / 1000}) for s in range(40)])
    store.add(5, {ev.LOSS: 50.0})
    store.add_rows([(s, {ev.LOSS: 1.0 + s / 1000}) for s in range(40, 400)])
    assert store.rows[5][ev.LOSS] == 50.0
    assert store.thinned > 300


def test_rows_beyond_the_layout_table_are_kept_as_dicts(monkeypatch):
    """With the layout table full, rows of new metric-name layouts are kept as dicts: the store keeps the
    same rows as the reference and its table stays bounded."""
    from fgdiag.logs import store as store_module

    monkeypatch.setattr(store_module, "MAX_LAYOUTS", 3)
    items = log_rows("layouts", seed=11)
    plain, bulk = PlainStore(CAP), RowStore(cap=CAP)
    for step, row in items:
        plain.add(step, dict(row))
    for i in range(0, len(items), 50):
        bulk.add_rows([(s, dict(r)) for s, r in items[i : i + 50]])
    assert bulk.thinned > 1000
    assert (bulk.rows, bulk.thinned) == (plain.rows, plain.thinned)
    assert len(bulk._layouts) == 3


def test_stored_values_do_not_depend_on_the_reader_keeping_its_dicts():
    """Rows of real floats are stored as values, not as the reader's dicts: the reader may reuse or drop its
    dicts (they are freed young); rows with other values are kept as given."""
    store = RowStore(cap=CAP)
    rows = [(s, {ev.LOSS: 1.0 + s, "grad_norm": 0.5}) for s in range(10)]
    odd = (10, {ev.LOSS: None, "grad_norm": 0.5})
    store.add_rows([*rows, odd])
    for _, row in rows:
        row[ev.LOSS] = -1.0
    assert [store.rows[s][ev.LOSS] for s in range(10)] == [1.0 + s for s in range(10)]
    assert store.rows[10] is odd[1]
    assert store.latest == {ev.LOSS: 10.0, "grad_norm": 0.5}
