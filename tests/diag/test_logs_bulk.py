"""Units read in bulk give exactly what the per-line path gives: runs of Trainer steps (`HfRuns`) and of the
fork's optimizer steps (`VadSteps`) yield the same rows, events, counters and findings whatever the chunking,
also when the log deviates from the canonical unit (a resumed bar, unsorted redraws, an eval dict, lines that
carry state between the steps, a missing or unparsable line); rows stored in bulk (`RowStore.add_rows`) are
thinned as one `add` per row would."""

from __future__ import annotations

import json
import math
import random
from functools import partial
from itertools import pairwise

import pytest
from logs_fixtures import vad_log

from fgdiag.logs.reader import LogReader
from fgdiag.logs.unit_runs import unit_runs
from fgdiag.logs.vad_steps import UNIT_RE
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
        lr = "nan" if odd and i % 71 == 19 else f"{5e-5 * (1 - i / steps):.4e}"  # a NaN in a unit
        out.append(
            f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.5, 3):.4f}, 'learning_rate': {lr}, "
            f"'epoch': {i / steps:.2f}}}"
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
        if odd and i == steps - 40:  # a second dict without a bar move: a step of its own, the bar lags after
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


def same_both_ways(data: bytes, seed: object, small: tuple[int, ...], spread: int = 9000) -> tuple:
    """The line path's reading of `data`, which the bulk path gives too: in one chunk, in chunks of each
    `small` size and in 30 random ones (up to `spread` bytes)."""
    slow = read(data, fast=False, chunks=[1 << 22])
    rng = random.Random(seed)
    for chunks in ([1 << 22], *([c] for c in small), [rng.randint(1, spread) for _ in range(30)]):
        assert read(data, fast=True, chunks=chunks) == slow, chunks
    return slow


def test_hf_runs_take_the_bulk_of_a_canonical_log():
    """The bulk path is what reads a canonical log (not the per-line path with the same result), and the
    stretches between the deviations of an odd one (so the odd logs' comparisons test it too)."""
    assert bulk_rows(trainer_log(3000, odd=False).encode()) > 2500
    assert bulk_rows(trainer_log(3000, odd=True).encode()) > 1000


def bulk_rows(data: bytes) -> int:
    """How many rows `HfRuns` puts in bulk when `data` is read in 64 kB chunks."""
    reader = LogReader()
    puts: list[int] = []
    put = reader.runs._put
    reader.runs._put = lambda lasts, cols: puts.append(len(lasts)) or put(lasts, cols)  # type: ignore[method-assign]
    for i in range(0, len(data), 1 << 16):
        reader.feed(data[i : i + (1 << 16)])
    return sum(puts)


def trainer_variants_log(steps: int) -> str:
    """Trainer units the column-wise check must take or hand back exactly: blocks of 1 to 5 redraws per line,
    a dict layout that loses a key, a bar going back within a line, nan/inf and quoted values, a bar whose
    total changes half-way."""
    rng, out, total = random.Random(7), [], steps + 9
    for i in range(steps):
        step = i + 1
        if i == steps // 2:
            total += 100  # a changed bar total: the learned unit no longer matches
        ns = [max(0, step - k) for k in range(i // 40 % 5, -1, -1)]  # 1 to 5 redraws, in blocks of 40
        if i % 43 == 9:
            ns = [step, step - 1, step]  # the bar goes back within the line
        out.append("\r" + "\r".join(bar(n, total) for n in ns))
        loss = f"{2.5 - i / steps + rng.gauss(0, 0.05):.4f}"
        loss = {5: "nan", 6: "inf", 7: "-inf", 8: f"'{loss}'"}.get(i % 31, loss)
        norm = f"'grad_norm': {rng.uniform(0.5, 3):.3f}, " if i < steps // 4 else ""  # then a 3-key layout
        out.append(f"{{'loss': {loss}, {norm}'learning_rate': 1e-05, 'epoch': 1}}")
        out += [WARNING, ""] if i % 29 else [WARNING, "", "=" * 30]
    return "\n".join(out) + "\n"


def test_hf_runs_column_checks_same_as_the_line_path():
    data = trainer_variants_log(2000).encode()
    slow = same_both_ways(data, 5, (1 << 13,))
    assert slow[0].count("('row', ") > 1900 and "nan" in slow[0] and "inf" in slow[0]
    assert bulk_rows(data) > 500  # the canonical stretches are still read in bulk


def test_hf_runs_loose_byte_values_read_as_the_layout_reads_them():
    """Undecoded buffers take dict values loosely and check them a column at a time: values float() takes but
    the layout's regex does not (`1_000`, `NAN`, `infinity`, a second space, fullwidth digits), ones neither
    takes (`1.5e`, `0x1`, empty) and odd numbers both take (`+.5`, `5.`, `1E-3`, `Infinity`) read as the line
    path reads them; `s/it` rates and a rate before a postfix are bars as well."""
    lines = trainer_log(1200, odd=False).split("\n")
    odd = ["1_000", "NAN", " 2.5", "\uff11.5", "1.5e", "0x1", "", "+.5", "5.", "1E-3", "Infinity", "infinity"]
    dicts = [i for i, line in enumerate(lines) if line.startswith("{'loss': ")]
    for k, i in enumerate(dicts[3::37]):
        lines[i] = lines[i].replace(lines[i].split(", ")[1].split(": ")[1], odd[k % len(odd)], 1)
    for i in dicts[400:500]:
        lines[i - 1] = lines[i - 1].replace("1.66it/s", "6.02s/it")
    for i in dicts[500:600]:
        lines[i - 1] = lines[i - 1].replace("it/s]", "it/s, loss=2.5]")
    data = "\n".join(lines).encode()
    slow = same_both_ways(data, 11, (1 << 12,))
    assert slow[0].count("('row', ") > 1100 and slow[3] > 0  # some odd values are not numbers to the layout
    assert bulk_rows(data) > 900


def test_hf_runs_redraws_drawn_again_checked_as_the_line_path_checks_them():
    """Each bar line draws the unit before's last redraws again (what `_uniform` reads once): a middle redraw
    that dips (the first one of the next line, drawn again, is then above it) and two lines whose first redraw
    is above the second read as the line path reads them."""
    total, out, middle = 3005, ["***** Running training *****"], 0
    for i in range(1, 3000):
        first, middle = middle, i - 5 if i % 50 == 0 else i - 1
        if i % 140 in (70, 71):
            first = i + 3
        out.append("\r" + "\r".join(bar(n, total) for n in (max(first, 0), max(middle, 0), i)))
        out += [
            f"{{'loss': {2.5 - i / 3000:.4f}, 'grad_norm': 1.5, 'learning_rate': 1e-05, 'epoch': 0.5}}",
            "",
        ]
    data = ("\n".join(out) + "\n").encode()
    slow = same_both_ways(data, 13, (1 << 13,))
    assert slow[0].count("('row', ") > 2900
    assert bulk_rows(data) > 2500


def test_hf_runs_read_undecoded_bytes_as_the_line_path_reads_text():
    """Buffers of units are split as bytes: invalid UTF-8 in a bar or a warning, digits outside ASCII in a
    bar, a multi-byte character cut by a chunk boundary all read as the decoded text does."""
    lines = trainer_log(1500, odd=False).encode().split(b"\n")
    for i in range(5, len(lines), 97):
        lines[i] = lines[i].replace(b"UserWarning", b"User\xffWarning").replace(b"\xe2\x96\x88", b"\xe2\x96")
    for i in range(9, len(lines), 89):
        lines[i] = lines[i].replace(b"0/", "\u0660/".encode(), 1)  # an Arabic-Indic zero in a bar
    data = b"\n".join(lines)
    slow = same_both_ways(data, 9, (1 << 12,))
    assert slow[0].count("('row', ") > 1400
    assert bulk_rows(data) > 1000


def test_hf_runs_common_gap_and_fork_text_between_units_read_as_the_line_path():
    """Undecoded buffers learn the gap text all units share and match it as a literal: gaps that differ,
    extend it or stop short of it, a stretch with another common gap; fork text between units (a [DIAG]
    block, [MB-FORWARD] lines, the marker after a decoration) sends the buffer to the text path. All read as
    the line path reads them."""
    total, out = 2505, ["***** Running training *****"]
    block = diag_block(7)
    for i in range(1, 2500):
        out.append("\r" + "\r".join(bar(n, total) for n in (max(i - 2, 0), i - 1, i)))
        out.append(f"{{'loss': {2.5 - i / 3000:.4f}, 'grad_norm': 1.5, 'learning_rate': 1e-05, 'epoch': 1}}")
        gap = [WARNING + " (again)", ""] if 600 <= i < 800 else [WARNING, ""]
        if i % 97 == 3:
            gap = [WARNING]  # stops short of the common gap
        elif i % 89 == 5:
            gap += ["=" * 30]  # extends it
        elif i == 300:
            gap += ["=" * 12 + " [MB-FORWARD] 使用128个历史负样本 | Batch内: 4 | 总负样本: 132"]
        elif i == 1100:
            gap += block
        elif i == 1700 or (1000 <= i < 1400 and i % 60 == 0):  # in chunks one after the other
            gap += ["[MB-FORWARD] 使用128个历史负样本 | Batch内: 4 | 总负样本: 132"]
        elif i == 2200:
            gap += ["=" * 12 + block[0], block[1]]
        out += gap
    data = ("\n".join(out) + "\n").encode()
    slow = same_both_ways(data, 17, (1 << 17, 1 << 14), spread=20000)
    assert slow[0].count("('row', ") > 2400
    assert bulk_rows(data) > 1200
    reader = LogReader()
    for i in range(0, len(data), 1 << 16):
        reader.feed(data[i : i + (1 << 16)])
    assert reader.runs._common == f"{WARNING}\n\n".encode()  # the literal gap learned (then again)


def bulk_summary(path, data: bytes, *, fast: bool) -> str:
    """The summary JSON of `data` fed in 5,000-byte chunks, with the bulk readers on or off."""
    session = LogSession(str(path))
    session.reader.fast = fast
    for i in range(0, len(data), 5000):
        session.feed(data[i : i + 5000])
    session.flush(final=True)
    return json.dumps(summary_dict(session.result()), sort_keys=True)


def test_hf_runs_same_summary_and_findings(tmp_path):
    data = trainer_log(2000, odd=True).encode()

    assert bulk_summary(tmp_path / "t.log", data, fast=True) == bulk_summary(
        tmp_path / "t.log", data, fast=False
    )


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


def diag_block(step: int, *, odd: bool = False) -> list[str]:
    bad = odd and step % 5 == 2  # a non-finite norm, a batch with one region (std=nan)
    std = "nan" if bad else "12.5000"
    return [
        "[DIAG] Region batch diagnostics:",
        f"  - valid_count={1 if bad else 4} | bbox_batch_size=4",
        "  - img_norms: min=1.0000, max=1.0000, mean=1.0000, std=0.0000, has_nan=False",
        f"  - txt_norms: min=1.0000, max=1.0000, mean=1.0000, std=0.0000, has_nan={bad}",
        f"  - logits_i2t: min=-3.0000, max={40 + step % 9}.0000, mean=20.0000, std={std}, has_nan=False",
        "  - logit_scale (finegrained): 4.605200 (exp=100.0000)",
        f"  - memory_bank: ptr={(16 * step) % 128}, full=True, size=128",
        "  - any_nan=False, any_inf=False",
    ]


def fork_log(steps: int, *, odd: bool, seed: int = 0, steady: bool = False) -> str:
    """The fork's trainer output: four lines per optimizer step, a [DIAG] block every 16 steps; `odd` mixes
    in deviations (a missing or unparsable line, region 0.0, no LR, a bank switched on late, a stray bar, a
    unit after other text on its line, a `\r` after the batch line); `steady`: the scale pinned at the clamp
    and the counts repeat (steps share their scale and counts lines, [DIAG] blocks all but their logits)."""
    rng, out = random.Random(seed), ["[Memory Bank] 队列大小: 128, 当前指针: 0"]
    total = steps + 3
    for s in range(steps):
        region = 0.0 if odd and s % 29 == 3 else max(0.05, 4.8 - 4 * s / steps + rng.gauss(0, 0.1))
        loss = 1.4 + 0.5 * region
        queued = 0 if odd and s < 40 else 128
        if s % 16 == 0 or (odd and 100 <= s < 104):  # odd: [DIAG] blocks on consecutive steps too
            out += diag_block(s, odd=odd)
        head = "finegraind" if odd and s % 31 == 4 else "finegrained"
        if not (odd and s % 43 == 9):
            value = 4.60517 if steady else 4.6 - s / 1e4
            out.append(f"logit_scale ({head}): {value:.6f} (exp={math.exp(value):.4f})")
        out.append(
            f"[ACCUMULATED] Total: {loss:.4f} | Global: 1.4000 | Region: {region:.4f} | HardNeg: 0.0000"
        )
        lr = "" if odd and s % 37 == 6 else f" | LR: {4e-7 * (1 - s / steps):.2e}"
        step = s + 1 if odd and s % 47 == 12 else s
        bar_total = total + 1 if odd and s % 53 == 14 else total
        out.append(
            f"\r{bar(s + 1, bar_total)}[ACCUMULATED][Epoch 0][Step {step}][Batch {8 * (s + 1)}] AvgLoss: "
            f"{loss:.6f} | Global: 1.400000 | Region: {region:.6f} | Hard: 0.000000 | MB: {queued}/128 ✓"
            f"{lr} | Time: 0.77s" + ("\r" if odd and s % 67 == 30 else "")
        )
        if odd and s == 40:
            out.append("[Memory Bank] ✅ 已启用 @ training_step 320")
        if odd and s % 59 == 20:
            out.append("[MB-FORWARD] broken line")
        elif odd and s % 61 == 25:  # a unit that starts after other text on its line
            out.append(
                f"12:00:01 [MB-FORWARD] 使用{queued}个历史负样本 | Batch内: 4 | 总负样本: {queued + 4}"
            )
        else:
            valid = 0 if odd and s % 23 == 7 else 4 if steady else 4 + s % 3  # odd: a batch without regions
            out.append(
                f"[MB-FORWARD] 使用{queued}个历史负样本 | Batch内: {valid} | 总负样本: {queued + valid}"
            )
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("log", ["trainer", "fork", "steady fork"])
def test_bulk_runs_same_rows_events_and_counts_as_the_line_path(log, odd):
    """HfRuns (Trainer log) and VadSteps (fork log) give what the per-line path gives."""
    make = {"trainer": trainer_log, "fork": fork_log, "steady fork": partial(fork_log, steady=True)}[log]
    data = make(3000, odd=odd).encode()
    slow = same_both_ways(data, odd, (1 << 14,))
    assert slow[0].count("('row', ") > 2900


def test_vad_steps_take_the_bulk_of_a_fork_log(tmp_path):
    reader = LogReader()
    calls = []
    apply = reader.steps.apply
    reader.steps.apply = lambda *args: calls.append(r := apply(*args)) or r  # type: ignore[method-assign]
    reader.feed(fork_log(3000, odd=False).encode())
    assert sum(k for k, *_ in calls) > 2500
    assert len(calls) == 1  # one run: the [DIAG] blocks every 16 steps are read in it
    assert sum(lines for _, lines, *_ in calls) > 4 * 2500 + 8 * 150  # 4 lines a step, 8 more a block
    steady = LogReader()
    steady.feed(fork_log(3000, odd=False, steady=True).encode())
    assert steady.lines > 4 * 2900
    assert 0 < len(steady.steps._templates) < 3  # the [DIAG] steps' rows share a template (all but logits)
    data = fork_log(2000, odd=True).encode()

    assert bulk_summary(tmp_path / "f.log", data, fast=True) == bulk_summary(
        tmp_path / "f.log", data, fast=False
    )


@pytest.mark.parametrize("odd", [False, True])
def test_row_store_thinning_keeps_the_loss_envelope(odd):
    """Thinned many times over (floats in C, or NaN, None and ints on the row-by-row path), the store keeps
    the extremes of the loss, the newest quarter of its cap, and counts every row it dropped."""
    from fgdiag.logs.store import RowStore

    rng = random.Random(odd)
    store = RowStore(cap=64)
    losses = {}
    for s in range(2000):
        v = round(rng.random(), 2)  # ties are common
        if odd and s % 13 == 0:
            v = rng.choice([float("nan"), None, 3])
        losses[s] = v
        store.add(s, {"loss": v})
    finite = {s: v for s, v in losses.items() if isinstance(v, float) and v == v}
    assert min(finite.values()) == min(v for s, v in finite.items() if s in store.rows)
    assert max(finite.values()) == max(v for s, v in finite.items() if s in store.rows)
    assert all(s in store.rows for s in range(2000 - 16, 2000))
    assert len(store.rows) + store.thinned == store.count == 2000
    assert len(store.rows) <= 64


def test_unit_runs_are_the_maximal_runs_of_units_that_start_a_line():
    text = fork_log(3000, odd=True)
    runs = list(unit_runs(UNIT_RE, text))
    matches = list(UNIT_RE.finditer(text))
    mid_line = [m for m in matches if m.start() and text[m.start() - 1] != "\n"]
    assert len(runs) > 50 and len(mid_line) > 20
    assert [m.span() for _, run in runs for m in run] == [m.span() for m in matches if m not in mid_line]
    for start, run in runs:
        assert start == run[0].start() and (start == 0 or text[start - 1] == "\n")
        assert all(a.end() == b.start() for a, b in pairwise(run))
    assert all(a[-1].end() != b[0].start() for (_, a), (_, b) in pairwise(runs))  # maximal


def test_vad_groups_found_by_their_marker_as_the_regex_search_finds_them():
    """`VadGroups.finditer` looks for each group's marker with `str.find`: the same matches as
    `GROUP_RE.finditer` on the corpus' fork logs ([LOSS] groups) and on ours (no group, [DIAG] blocks)."""
    from pathlib import Path

    from fgdiag.logs.vad_groups import GROUP_RE, MARKER, _matches

    texts = [p.read_text(errors="replace") for p in sorted(Path("tests/corpus").glob("vad_*.log"))]
    texts += [vad_log(60), vad_log(40, variant="legacy", zero_every=3), fork_log(500, odd=True)]
    texts.append(texts[-2][: len(texts[-2]) // 2] + MARKER)  # a group cut short
    found = 0
    for text in texts:
        spans = [m.span() for m in _matches(text)]
        assert spans == [m.span() for m in GROUP_RE.finditer(text)]
        found += len(spans)
    assert found > 100
