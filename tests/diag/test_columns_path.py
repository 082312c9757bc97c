"""Runs of Trainer and fork steps go from the reader to the row store and the rules as columns (no dict per
row: a `ColumnRun`, whose `extra` rows hold more names, as the fork's [DIAG] steps do): storing and judging
them as columns must keep exactly what the rows would give. The rules find the same findings, in the same
order, whatever the batches; the store keeps the same rows, latest values and counts; a whole session gives
the same summary with the bulk readers on or off."""

from __future__ import annotations

import json
import math
import random
import re
from itertools import groupby

import pytest
from judge_corpus import FAULTS, INFO, stream
from test_judge_batches import judged, one_by_one
from test_logs_bulk import fork_log, trainer_log

from fgdiag import events as ev
from fgdiag.logs import store as store_module
from fgdiag.logs.store import RowStore
from fgdiag.render.summary import summary_dict
from fgdiag.rules.engine import RuleEngine
from fgdiag.session import LogSession
from fgdiag.targets import get_profile


def as_columns(rows: list) -> tuple:
    """A `ColumnRun`'s fields for rows that all hold the names of the shortest row (the others: `extra`)."""
    layouts = [tuple(r) for _, r in rows]
    names = min(layouts, key=len)
    assert all(set(names) <= set(layout) for layout in layouts)
    extra = []
    for layout in dict.fromkeys(layouts):
        if layout != names:
            idx = [i for i, other in enumerate(layouts) if other == layout]
            extra.append((idx, layout, [[rows[i][1][k] for i in idx] for k in layout]))
    return [s for s, _ in rows], names, [[r[k] for _, r in rows] for k in names], tuple(extra)


def shared_runs(rows: list) -> list[list]:
    """Rows cut into runs where one row's names are held by every row (what `as_columns` takes)."""
    runs: list[list] = []
    sets: list[frozenset] = []
    for step, row in rows:
        keys = frozenset(row)
        least = min([*sets, keys], key=len)
        if runs and all(least <= other for other in [*sets, keys]):
            runs[-1].append((step, row))
            sets.append(keys)
        else:
            runs.append([(step, row)])
            sets = [keys]
    return runs


def by_columns(rows: list, sizes: list[int], *, mixed: bool = False) -> tuple:
    """Runs of rows that hold the same names (`mixed`: the names of one of them) judged as columns, in
    batches of `sizes`."""
    engine = RuleEngine(INFO, get_profile("ucf"))
    found: list = []
    runs = (
        shared_runs(rows) if mixed else [list(run) for _, run in groupby(rows, key=lambda sr: tuple(sr[1]))]
    )
    for run in runs:
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
        assert by_columns(rows, sizes, mixed=True) == reference, sizes


def with_diag_rows(rows: list) -> list:
    """As the fork logs them: the logits' and the regions' statistics only on every 4th row, those rows'
    metrics in an order of their own (the [DIAG] steps); the faults that show in them must still show."""
    out = []
    for i, (step, row) in enumerate(rows):
        diag = {k: v for k, v in row.items() if k.startswith(("logits_", "cos_std", "regions/"))}
        row = {k: v for k, v in row.items() if k not in diag}
        if i % 4 == 3:
            row = {**diag, **row, "memory_bank/size": 128.0}
        out.append((step, row))
    return out


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_rules_judge_extra_rows_as_they_judge_rows(fault):
    rows = with_diag_rows(stream(fault))
    reference = one_by_one(rows)
    assert FAULTS[fault][1] <= {code for code, *_ in reference[0]}
    rng = random.Random(fault)
    for sizes in ([len(rows)], [17, 40], [rng.randint(1, 60) for _ in range(20)]):
        assert by_columns(rows, sizes, mixed=True) == reference, sizes


def store_rows(case: str) -> list[tuple[int, dict]]:
    """Rows of four metrics; "extra": every 16th holds two more (one a key loss), "extra nan": one of
    those is NaN."""
    rng = random.Random(case)
    names = (ev.LOSS, ev.GRAD_NORM, "learning_rate", "epoch")
    rows = []
    for s in range(1, 3001):
        row = {k: round(rng.random(), 2) for k in names}
        if case == "nan" and s % 97 == 3:
            row[ev.LOSS] = math.nan  # such rows are kept as dicts (values come back exactly)
        if case == "int" and s % 89 == 5:
            row[ev.GRAD_NORM] = 3
        if case.startswith("extra") and s % 16 == 5:
            more = math.nan if case == "extra nan" and s % 160 == 5 else round(rng.random(), 2)
            row = {"logits_max/region": more, **row, ev.head_metric(ev.HEAD_LOSS, "region"): 1 + rng.random()}
        rows.append((s, row))
    return rows


@pytest.mark.parametrize("case", ["clean", "nan", "int", "full", "extra", "extra nan"])
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
        assert all(cols.add_columns(*as_columns(run)) for run in shared_runs(part))
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

    def spy(engine, steps, names, cols, extra=()):  # type: ignore[no-untyped-def]
        judged_as_columns.append(len(steps))
        return observe_columns(engine, steps, names, cols, extra)

    monkeypatch.setattr(RuleEngine, "observe_columns", spy)
    for chunk in (1 << 20, 5000, 777):
        judged_as_columns.clear()
        assert summary(data, fast=True, chunk=chunk) == slow, chunk
        assert sum(judged_as_columns) > (1000 if chunk > 5000 else 100), chunk


def rare_deviations(text: str) -> str:
    """A step in 300 logs region 0.0 (no valid region in its micro-batches: no region loss), one no LR."""
    at = r"(\[Step \d*(?:150|450|750)\]\[Batch \d+\] AvgLoss: \S+ \| Global: \S+ \| Region: )\S+"
    text, n = re.subn(at, r"\g<1>0.000000", text)
    text, m = re.subn(r"(\[Step 1234\]\[Batch \d+\] .*?)\| LR: \S+ ", r"\1", text)
    assert (n, m) == (9, 1)
    return text


@pytest.mark.parametrize("kind", ["fork", "steady fork", "rare", "odd fork"])
def test_a_fork_log_read_as_columns_gives_the_line_paths_summary(kind, monkeypatch):
    """The fork's steps reach the store and the rules as columns, [DIAG] steps as `extra` rows; "rare": a
    few steps without a region loss or an LR go as dicts between columns; "odd": deviations every few
    steps (region 0.0, a missing line, consecutive [DIAG] blocks, another head's scale line ...) send most
    steps through dict rows and the line path."""
    text = fork_log(3000, odd=kind == "odd fork", steady=kind == "steady fork")
    text = rare_deviations(text) if kind == "rare" else text
    data = text.replace("Region: 4.", "Region: 2.5").encode()  # the region loss near ln 12 for a while
    slow = summary(data, fast=False, chunk=1 << 20)
    judged: list[tuple[int, int]] = []  # (rows, of which extra) per columns batch
    observe_columns = RuleEngine.observe_columns

    def spy(engine, steps, names, cols, extra=()):  # type: ignore[no-untyped-def]
        judged.append((len(steps), sum(len(idx) for idx, _, _ in extra)))
        return observe_columns(engine, steps, names, cols, extra)

    monkeypatch.setattr(RuleEngine, "observe_columns", spy)
    for chunk in (1 << 20, 5000, 777):
        judged.clear()
        assert summary(data, fast=True, chunk=chunk) == slow, chunk
        if chunk == 1 << 20 and kind != "odd fork":
            rows, extra = map(sum, zip(*judged, strict=True))
            assert rows > 2700 and len(judged) >= (7 if kind == "rare" else 2), judged
            assert extra > rows / 20, judged  # the [DIAG] steps (one in 16) go with the others
