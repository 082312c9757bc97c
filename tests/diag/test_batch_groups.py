"""`Batch` groups rows by their metric names (by row length first) and reads columns a name at a time: the
groups, their order and every column are those of a plain row-by-row grouping, and the findings those of one
row at a time, for rows whose shapes share a length, differ only in key order, or have many lengths."""

from __future__ import annotations

import random

import pytest
from judge_corpus import FAULTS, stream
from test_judge_batches import batched, one_by_one

from fgdiag.rules.batch import MAX_LENGTHS, Batch


def reshaped(rows: list, seed: int) -> list:
    """The rows with some keys dropped and some rows' keys reordered (same step, same values)."""
    rng = random.Random(seed)
    out = []
    for step, row in rows:
        items = list(row.items())
        kind = rng.randrange(4)
        if kind == 1 and len(items) > 2:  # a shorter shape
            items = items[:-1]
        elif kind == 2:  # the same names in another order: same length, another group
            items = items[::-1]
        elif kind == 3 and len(items) > 3:  # another name dropped: same length as kind 1, other names
            items = items[1:]
        out.append((step, dict(items)))
    return out


def many_lengths(n: int) -> list:
    """Rows of more distinct lengths than MAX_LENGTHS (grouped row by row)."""
    return [(s, {f"m{k}": float(s + k) for k in range(s % (MAX_LENGTHS + 4) + 1)}) for s in range(1, n)]


def plain_groups(rows: list) -> dict:
    groups: dict = {}
    for i, (_s, m) in enumerate(rows):
        groups.setdefault(tuple(m), []).append(i)
    return groups


@pytest.mark.parametrize(
    "rows", [reshaped(stream("FGD501 spike"), 0), many_lengths(200)], ids=["shapes", "lengths"]
)
def test_batch_groups_and_columns_as_row_by_row(rows):
    batch = Batch(rows)
    batch.group_rows()
    want = plain_groups(rows)
    assert len(want) > 2
    assert len({len(k) for k in want}) < len(want) or len(want) > MAX_LENGTHS  # shared lengths, or many
    assert list(batch.groups.items()) == list(want.items())
    for name in {n for _s, m in rows for n in m}:
        held = [(i, m[name]) for i, (_s, m) in enumerate(rows) if name in m]
        assert batch.column(name) == ([i for i, _v in held], [v for _i, v in held])
        assert sorted(batch.any_order(name), key=repr) == sorted((v for _i, v in held), key=repr)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_batch_reshaped_rows_same_findings_whatever_the_batches(fault):
    rows = reshaped(stream(fault), sum(map(ord, fault)))
    reference = one_by_one(rows)
    rng = random.Random(fault)
    for sizes in ([len(rows)], [1, 2, 3], [rng.randint(1, 40) for _ in range(20)]):
        assert batched(rows, sizes) == reference, sizes
