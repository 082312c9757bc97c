"""Runs of Trainer steps read in bulk (`HfRuns`) give exactly what the per-line path gives: the same rows,
events, counters and findings, whatever the chunking, also when the log deviates from the canonical unit
(a resumed bar, unsorted redraws, an eval dict, lines that carry state between the steps)."""

from __future__ import annotations

import json
import random

import pytest

from fgdiag.logs.reader import LogReader
from fgdiag.render.summary import summary_dict
from fgdiag.session import LogSession

WARNING = "/site-packages/torch/utils/checkpoint.py:464: UserWarning: please pass use_reentrant explicitly."


def bar(n: int, total: int) -> str:
    pct = 100 * n // total
    return f"{pct:3d}%|{'█' * (pct // 10):<10}| {n}/{total} [01:00<01:24,  1.66it/s]"


def trainer_log(steps: int, *, odd: bool, seed: int = 0) -> str:
    """Trainer stdout captured to a file (a dict line every 4th line); `odd` mixes in deviations."""
    rng, total, out = random.Random(seed), steps + 5, ["***** Running training *****"]
    step = 0
    for i in range(steps):
        step += 1
        if odd and i == steps // 2:
            step -= 30  # resumed from an earlier checkpoint: the bar goes back
        ns = [max(0, step - k) for k in (2, 1, 0)]
        if odd and i % 37 == 5:
            ns = [ns[2], ns[0], ns[1]]  # redraws out of order
        out.append("\r" + "\r".join(bar(n, total) for n in ns))
        loss = 2.5 - i / steps + rng.gauss(0, 0.05)
        out.append(
            f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.5, 3):.4f}, 'learning_rate': "
            f"{5e-5 * (1 - i / steps):.4e}, 'epoch': {i / steps:.2f}}}"
        )
        out += [WARNING, ""]
        if odd and i % 41 == 7:
            out.append(f"{{'eval_loss': {loss + 0.1:.4f}, 'eval_runtime': 1.5, 'epoch': {i / steps:.2f}}}")
        if odd and i % 53 == 11:
            out.append("=" * 40)
        if odd and i % 59 == 13:
            out.append(f"grad_norm: {rng.uniform(0.5, 3):.3f}")  # a generic metric line between units
        if odd and i % 67 == 17:
            out.append(f"[fgdiag] step {step + 1} loss={loss:.4f}")
        if odd and i % 71 == 19:
            out.append(f"{{'loss': {loss:.4f}, 'learning_rate': nan, 'epoch': {i / steps:.2f}}}")
    out.append("{'train_runtime': 40.2, 'train_samples_per_second': 1.9, 'train_loss': 2.1, 'epoch': 1.0}")
    return "\n".join(out) + "\n"


def read(data: bytes, *, fast: bool, chunks: list[int]) -> tuple:
    reader = LogReader(fast=fast)
    out: list = []
    i = 0
    while i < len(data):
        n = chunks[i % len(chunks)]
        reader.feed(data[i : i + n])
        out += reader.drain_ordered()
        i += n
    reader.flush(final=True)
    out += reader.drain_ordered()
    return (
        repr(out),  # NaN values compare by their text
        reader.lines,
        reader.blank,
        reader.unparsed,
        reader.malformed,
        sorted(reader.formats),
        reader.notes,
        reader.run_info,
    )


@pytest.mark.parametrize("odd", [False, True])
def test_hf_runs_same_rows_events_and_counts_as_the_line_path(odd):
    data = trainer_log(3000, odd=odd).encode()
    slow = read(data, fast=False, chunks=[1 << 22])
    assert slow[0].count("('row', ") > 2900
    rng = random.Random(odd)
    for chunks in ([1 << 22], [1 << 14], [rng.randint(1, 9000) for _ in range(30)]):
        assert read(data, fast=True, chunks=chunks) == slow


def test_hf_runs_take_the_bulk_of_a_canonical_log():
    """The bulk path is what reads a canonical log (not the per-line path with the same result)."""
    reader = LogReader()
    calls = []
    apply = reader.runs.apply
    reader.runs.apply = lambda units, first, gap: calls.append(r := apply(units, first, gap)) or r  # type: ignore[method-assign]
    reader.feed(trainer_log(3000, odd=False).encode())
    assert sum(k for k, *_ in calls) > 2500


def test_hf_runs_same_summary_and_findings(tmp_path):
    data = trainer_log(2000, odd=True).encode()

    def summary(fast: bool) -> str:
        session = LogSession(str(tmp_path / "t.log"))
        session.reader.fast = fast
        for i in range(0, len(data), 5000):
            session.feed(data[i : i + 5000])
        session.flush(final=True)
        return json.dumps(summary_dict(session.result()), sort_keys=True)

    assert summary(True) == summary(False)


def test_row_store_add_rows_thins_like_one_add_per_row():
    """Rows stored in bulk (`add_rows`) keep the same rows, counts and latest values as one `add` each, past
    the cap where thinning starts, with missing values and a step seen again."""
    from fgdiag.logs.store import RowStore

    rng = random.Random(3)
    items = [
        (s, {"loss": rng.random(), "grad_norm": None if s % 7 == 0 else rng.random()}) for s in range(300)
    ]
    items.insert(150, (149, {"learning_rate": 1e-4}))  # a step logged again merges into its row
    one, bulk = RowStore(cap=40), RowStore(cap=40)
    for step, row in items:
        one.add(step, dict(row))
    for i in range(0, len(items), 37):
        bulk.add_rows([(s, dict(r)) for s, r in items[i : i + 37]])
    assert one.thinned > 100
    assert (bulk.rows, bulk.latest, bulk.count, bulk.thinned) == (
        one.rows,
        one.latest,
        one.count,
        one.thinned,
    )
