"""Runs of Trainer steps go from the reader to the row store and the rules as columns (no dict per row,
`LogSink.put_columns`): storing and judging them as columns must keep exactly what the rows would give. The
rules find the same findings, in the same order, whatever the batches; the store keeps the same rows, latest
values and counts; a whole session gives the same summary with the bulk readers on or off."""

from __future__ import annotations

import json
import math
import random
from itertools import groupby

import pytest
from judge_corpus import FAULTS, INFO, stream
from test_judge_batches import judged, one_by_one
from test_logs_bulk import trainer_log

from fgdiag import events as ev
from fgdiag.logs import store as store_module
from fgdiag.logs.store import RowStore
from fgdiag.render.summary import summary_dict
from fgdiag.rules.engine import RuleEngine
from fgdiag.session import LogSession
from fgdiag.targets import get_profile


def as_columns(rows: list) -> tuple[list[int], tuple[str, ...], list[list]]:
    names = tuple(rows[0][1])
    return [s for s, _ in rows], names, [[r[k] for _, r in rows] for k in names]


def by_columns(rows: list, sizes: list[int]) -> tuple:
    """Runs of rows that hold the same names judged as columns, in batches of `sizes`."""
    engine = RuleEngine(INFO, get_profile("ucf"))
    found: list = []
    for _, run in groupby(rows, key=lambda sr: tuple(sr[1])):
        run = list(run)
        i = 0
        while i < len(run):
            n = sizes[len(found) % len(sizes)]
            found += engine.observe_columns(*as_columns(run[i : i + n]))
            i += n
    return judged(engine, found)


@pytest.mark.parametrize("resumed", [False, True])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_rules_judge_columns_as_they_judge_rows(fault, resumed):
    """resumed: a stretch of steps logged again (a run resumed from a checkpoint): those rows are judged a
    row at a time, from their dicts."""
    rows = stream(fault)
    if resumed:
        cut = len(rows) // 2
        rows = rows[:cut] + [(s, {k: v * 1.5 if v else v for k, v in r.items()}) for s, r in rows[cut - 40 :]]
    reference = one_by_one(rows)
    assert FAULTS[fault][1] <= {code for code, *_ in reference[0]} or resumed
    rng = random.Random(fault)
    for sizes in ([len(rows)], [1, 5], [rng.randint(1, 60) for _ in range(20)]):
        assert by_columns(rows, sizes) == reference, sizes


def store_rows(case: str) -> list[tuple[int, dict]]:
    rng = random.Random(case)
    names = (ev.LOSS, ev.GRAD_NORM, "learning_rate", "epoch")
    rows = []
    for s in range(1, 3001):
        row = {k: round(rng.random(), 2) for k in names}
        if case == "nan" and s % 97 == 3:
            row[ev.LOSS] = math.nan  # such rows are kept as dicts (values come back exactly)
        if case == "int" and s % 89 == 5:
            row[ev.GRAD_NORM] = 3
        rows.append((s, row))
    return rows


@pytest.mark.parametrize("case", ["clean", "nan", "int", "full"])
def test_store_keeps_columns_as_it_keeps_rows(case, monkeypatch):
    if case == "full":
        monkeypatch.setattr(store_module, "MAX_LAYOUTS", 1)  # no layout left: every row kept as a dict
    rows = store_rows(case)
    plain, cols = RowStore(cap=64), RowStore(cap=64)
    rng = random.Random(1)
    i = 0
    while i < len(rows):
        part = rows[i : i + rng.choice([1, 7, 50, 400])]
        plain.add_rows([(s, dict(r)) for s, r in part])
        assert cols.add_columns(*as_columns(part))
        i += len(part)
    assert plain.thinned > 2000
    assert repr((cols.rows, cols.latest, cols.count, cols.thinned)) == repr(
        (plain.rows, plain.latest, plain.count, plain.thinned)
    )


def test_store_refuses_columns_with_a_stored_step():
    store = RowStore(cap=64)
    assert store.add_columns(*as_columns(store_rows("clean")[:10]))
    again = store_rows("clean")[5:20]
    assert not store.add_columns(*as_columns(again))  # step 6 is stored: the caller merges rows
    assert (len(store), store.count) == (10, 10)


def summary(data: bytes, *, fast: bool, chunk: int) -> str:
    session = LogSession("t.log", candidates=12)  # the loss sits near ln 12 for a while: FGD601 fires
    session.reader.fast = fast
    for i in range(0, len(data), chunk):
        session.feed(data[i : i + chunk])
    session.flush(final=True)
    read = session.result()
    return json.dumps([summary_dict(read), sorted(read.rows.items())], sort_keys=True, default=repr)


def test_a_trainer_log_read_as_columns_gives_the_line_paths_summary(monkeypatch):
    """The loss sits near ln 12 = 2.48 for a while (FGD601 fires); a NaN learning rate and a step logged
    again (an eval dict) send a few rows through the row path."""
    text = trainer_log(3000, odd=False).replace("'loss': 2.", "'loss': 2.4")
    lines = text.split("\n")
    lines[4001] = lines[4001].replace("'learning_rate': ", "'learning_rate': nan, 'x': ")
    lines.insert(8003, "{'eval_loss': 2.5, 'eval_runtime': 1.5, 'epoch': 0.67}")
    data = "\n".join(lines).encode()
    slow = summary(data, fast=False, chunk=1 << 20)
    assert '"FGD601"' in slow
    judged_as_columns: list[int] = []
    observe_columns = RuleEngine.observe_columns

    def spy(engine, steps, names, cols):  # type: ignore[no-untyped-def]
        judged_as_columns.append(len(steps))
        return observe_columns(engine, steps, names, cols)

    monkeypatch.setattr(RuleEngine, "observe_columns", spy)
    for chunk in (1 << 20, 5000, 777):
        judged_as_columns.clear()
        assert summary(data, fast=True, chunk=chunk) == slow, chunk
        assert sum(judged_as_columns) > (1000 if chunk > 5000 else 100), chunk
