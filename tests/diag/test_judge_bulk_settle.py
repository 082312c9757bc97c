"""Bulk paths of the judge give what one `observe` per row gives: rows of two shapes interleaved (a wide
diagnostics row every 16 steps among narrow ones, as in the fork's log: `Batch` columns of the names every
row holds are read in row order), head losses of 0.0 or missing dropped as row by row, logits of a wide
range (FGD603 settles in bulk), and a scale pinned at the clamp while the loss learns (FGD102 settles whole
batches from the loss columns) and then sits on a plateau (FGD102 fires row by row)."""

from __future__ import annotations

import math
import random
from itertools import repeat

from fgdiag import events as ev
from fgdiag.facts import LN_100
from fgdiag.rules import clock
from fgdiag.rules.batch import Batch
from fgdiag.rules.convergence.candidates import MAIN
from fgdiag.rules.convergence.chance import LossVsChance
from fgdiag.rules.convergence.collapse import CollapseFromLogits
from fgdiag.rules.convergence.track import below_counts, settled, verdict
from fgdiag.rules.engine import RuleEngine
from fgdiag.rules.scales.clamp import ScaleAtClamp
from fgdiag.rules.scales.frozen import ScaleFrozenOrDecaying

INFO = {"planned_steps": 3000, "warmup_steps": 30, "logit_scale_max": LN_100}
REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, "region")


def pinned_stream(steps: int = 3000) -> list:
    """The region scale at ln 100 on every row; its loss falls from 5 to 1 by step 1200, then jumps back to a
    plateau near its start at step 1800 (flat at the clamp: FGD102); every 16th row carries more metrics,
    every 48th has no learning rate (three shapes, one name not in all of them)."""
    rng = random.Random(7)
    rows = []
    for s in range(1, steps + 1):
        if s < 1200:
            loss = 5.0 - 4.0 * s / 1200
        elif s < 1800:
            loss = 1.0
        else:
            loss = 4.8
        row: dict[str, float | None] = {
            ev.LOSS: 1.0 + loss / 2 + rng.gauss(0, 0.01),
            REGION_LOSS: loss + rng.gauss(0, 0.01),
            ev.head_metric(ev.LOGIT_SCALE, "region"): LN_100,
            ev.LEARNING_RATE: 1e-5,
        }
        if s % 16 == 0:
            row[ev.GRAD_NORM] = 1.0 + rng.random()
            row[ev.head_metric(ev.LOGIT_SCALE_EXP, "region")] = 100.0
            row[ev.REGIONS_VALID] = None if s % 64 == 0 else 4.0
        if s % 48 == 0:
            del row[ev.LEARNING_RATE]
        rows.append((s, row))
    return rows


def counted(engine: RuleEngine, kind: type) -> list[int]:
    """The steps the engine's check of this kind will be asked to `observe` (bulk settling asks fewer)."""
    check = next(c for c in engine.checks if isinstance(c, kind))
    observed: list[int] = []
    plain = check.observe

    def observe(step: int, m) -> None:
        observed.append(step)
        plain(step, m)

    check.observe = observe  # type: ignore[method-assign]
    return observed


def judge(rows: list, sizes: list[int] | None, watched: type = ScaleAtClamp) -> tuple:
    """Findings, not-judged list and the rows the `watched` check observed; sizes None: one row at a time, no
    quick path."""
    engine = RuleEngine(INFO)
    if sizes is None:
        for check in engine.checks:
            check.quick = lambda batch, idx: None  # type: ignore[method-assign]
    observed = counted(engine, watched)
    found: list = []
    i, n = 0, 0
    while i < len(rows):
        size = 1 if sizes is None else sizes[n % len(sizes)]
        found += engine.observe_rows([(s, dict(r)) for s, r in rows[i : i + size]])
        i, n = i + size, n + 1
    found += engine.finish()
    return [(f.code, f.step, f.severity.value, f.message) for f in found], engine.not_judged(), observed


def test_scale_pinned_at_the_clamp_settles_learning_batches_in_bulk():
    rows = pinned_stream()
    reference = judge(rows, None)
    fgd102 = [f for f in reference[0] if f[0] == "FGD102"]
    assert len(fgd102) == 1 and "sits at the clamp" in fgd102[0][3] and fgd102[0][1] > 1800
    assert "FGD302" in {n["code"] for n in reference[1]}  # region counts without a candidate count
    rng = random.Random(3)
    for sizes in ([len(rows)], [100], [300], [7, 300, 1000], [rng.randint(1, 900) for _ in range(20)]):
        found, not_judged, observed = judge(rows, sizes)
        assert (found, not_judged) == reference[:2], sizes
        if sizes in ([100], [300]):  # batches of the learning phase settle without a row observed
            assert observed and not [s for s in observed if 1300 < s <= 1500], sizes


def test_batch_columns_of_interleaved_shapes_in_row_order():
    rows = pinned_stream(200)
    batch = Batch(rows)
    batch.group_rows()
    assert len(batch.groups) == 3  # narrow rows, wide rows, wide rows without a learning rate
    for name in sorted(batch.names()):
        idx, values = batch.column(name)
        expected = [(i, m[name]) for i, (_s, m) in enumerate(rows) if name in m]
        assert list(zip(idx, values, strict=True)) == expected, name
        assert sorted(batch.any_order(name), key=str) == sorted((v for _i, v in expected), key=str)
    assert batch.values(ev.REGIONS_VALID) == [4.0] * (200 // 16 - 200 // 64)
    assert len(batch.column(ev.LEARNING_RATE)[0]) == 200 - 200 // 48
    wide = [m for _s, m in rows if ev.GRAD_NORM in m]
    assert batch.column(ev.GRAD_NORM)[1] == [m[ev.GRAD_NORM] for m in wide]
    assert math.isclose(sum(batch.any_order(ev.LOSS)), sum(m[ev.LOSS] for _s, m in rows))


def decaying_stream() -> list:
    """A region scale below the clamp that moves a little (not frozen), falls steadily from step 1500 to 2100
    (weight decay on it: FGD103), then stays level; logged every 2 steps."""
    rng = random.Random(11)
    rows = []
    for s in range(2, 3001, 2):
        scale = 3.0 + (0.01 if s % 200 < 100 else 0.0)
        if 1500 <= s < 2100:
            scale = 3.0 - (s - 1500) * 0.001
        elif s >= 2100:
            scale = 2.4
        rows.append((s, {ev.LOSS: 2.0 + rng.gauss(0, 0.05), ev.head_metric(ev.LOGIT_SCALE, "region"): scale}))
    return rows


def test_level_scale_settles_the_decay_check_in_bulk():
    rows = decaying_stream()
    found: dict = {}
    for sizes in (None, [len(rows)], [50], [9, 130, 400]):
        findings, not_judged, observed = judge(rows, sizes, ScaleFrozenOrDecaying)
        found[str(sizes)] = (findings, not_judged)
        if sizes == [50]:  # level stretches settle without a row observed, the fall is observed
            assert not [s for s in observed if 1000 < s <= 1400 or 2700 < s <= 3000]
            assert [s for s in observed if 1500 < s <= 2100]
    reference = found.pop("None")
    assert [f for f in reference[0] if f[0] == "FGD103" and "falls steadily" in f[3]]
    for sizes, got in found.items():
        assert got == reference, sizes


def clock_of(rows: list, sizes: list[int] | None) -> list:
    """Each row's clock (step, heavy, window, interval, trend start) and the engine's clock at the end; new
    run info half-way; sizes None: the row-by-row path on every batch."""
    engine = RuleEngine(INFO)
    out = []
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        if half[0] is not rows[0]:
            engine.update_info({"planned_steps": 9000})  # the trend start and window move
        i, n = 0, 0
        while i < len(half):
            part = half[i : i + (1 if sizes is None else sizes[n % len(sizes)])]
            if sizes is None:
                batch = Batch(part)
                clock._row_by_row(engine, batch, [s for s, _m in part])
            else:
                batch = Batch(part)
                batch.group_rows()
                clock.clock_batch(engine, batch, [s for s, _m in part])
            out += zip(batch.steps, batch.heavy, batch.windows, batch.intervals, repeat(batch.start))
            i, n = i + len(part), n + 1
    return [*out, (engine.npoints, engine._interval, engine._clock, engine._w, list(engine._loss_steps))]


def test_clock_of_rising_batches_is_the_clock_row_by_row():
    rng = random.Random(5)
    rows, step = [], 0
    for k in range(4000):
        step += 1 if k < 800 else 5 if k < 1600 else rng.choice((1, 2, 3, 10))
        row: dict[str, float | None] = {ev.GRAD_NORM: 1.0}
        if k % 3 or k < 1200:  # evenly spaced loss steps first (an interval read off the gaps at once)
            row[ev.LOSS] = 2.0
        rows.append((step, row))
    reference = clock_of(rows, None)
    assert len({w for _s, _h, w, _i, _t in reference[:-1]}) > 2  # the window follows the interval
    for sizes in ([len(rows)], [1], [7], [500, 3, 1200], [rng.randint(1, 700) for _ in range(30)]):
        assert clock_of(rows, sizes) == reference, sizes


def chance_stream() -> list:
    """The region loss below chance (ln 64), at chance from step 1500 to 2200 (FGD601), below again; ln K
    printed on most rows, a few rows with a range of K (lower bound only)."""
    rng = random.Random(13)
    rows = []
    for s in range(1, 3001):
        at = 1500 <= s < 2200
        row: dict[str, float | None] = {
            ev.LOSS: 2.0 + rng.gauss(0, 0.05),
            REGION_LOSS: math.log(64) * (1.0 if at else 0.6) + rng.gauss(0, 0.02),
            ev.head_metric(ev.CHANCE, "region"): math.log(64) if s % 7 else None,
            ev.head_metric(ev.CANDIDATES, "region"): 64.0,  # on every row: FGD302 judged on all of them
            ev.REGIONS_VALID: 4.0,
        }
        rows.append((s, row))
    return rows


def test_windows_half_below_chance_settle_without_their_sums():
    rows = chance_stream()
    reference = judge(rows, None)[:2]
    assert [f for f in reference[0] if f[0] == "FGD601"]
    assert "FGD302" not in {n["code"] for n in reference[1]}
    for sizes in ([len(rows)], [60], [5, 333, 1000]):
        assert judge(rows, sizes)[:2] == reference, sizes
    engine = RuleEngine(INFO)
    engine.observe_rows(rows)
    track = next(c for c in engine.checks if isinstance(c, LossVsChance)).tracks["region"]
    below, n, settles = below_counts(track), len(track.k_steps), 0
    rng = random.Random(1)
    for _ in range(400):  # wherever `settled` answers, it answers what `verdict` does
        a = rng.randrange(n - 5)
        idx = list(range(a, min(n, a + rng.randint(5, 400))))
        quick, full = settled(track, idx, below), verdict(track, idx)
        assert (
            settled(track, idx, below_counts(track, rng.randint(0, a))) == quick
        )  # counts from a later point
        if quick is not None:
            settles += 1
            assert (quick["at"], quick["above"], quick["exact"]) == (full["at"], full["above"], full["exact"])
        else:
            assert full["n_at"] + full["n_above"] > 0.5 * len(idx)
    assert 50 < settles < 400


def test_head_losses_zero_missing_or_not_finite_are_dropped_alike_in_bulk():
    """A hard-negative loss logged 0.0 while the bank is off (the fork's), missing on some rows, NaN once,
    then real and at chance: the batch's columns drop exactly the points row-by-row judging drops."""
    rows = chance_stream()
    hardneg = ev.head_metric(ev.HEAD_LOSS, "hardneg")
    for s, row in rows:
        if s % 11 == 0:
            continue  # no hard-negative loss on this row
        row[hardneg] = 0.0 if s < 1000 else math.nan if s == 1500 else math.log(64) + 0.01
        row[ev.head_metric(ev.CHANCE, "hardneg")] = math.log(64)
    reference = judge(rows, None)[:2]
    assert {f[0] for f in reference[0]} >= {"FGD601"}
    assert any("hardneg" in f[3] for f in reference[0])
    for sizes in ([len(rows)], [60], [5, 333, 1000], [999, 2]):
        assert judge(rows, sizes)[:2] == reference, sizes


def logits_stream() -> list:
    """Every 4th row holds the region head's logits: a wide range at scale 100, from step 1200 to 2400 all
    above half the scale (FGD603), zero-norm features on some rows, only the raw scale on others."""
    rng = random.Random(5)
    rows = []
    for s in range(1, 3001):
        row: dict[str, float | None] = {ev.LOSS: 2.0 + rng.gauss(0, 0.05), REGION_LOSS: 3.0 + rng.random()}
        if s % 4 == 0:
            lo = 60.0 if 1200 <= s < 2400 else -20.0 + rng.random()
            row[ev.head_metric(ev.LOGITS_MIN, "region")] = lo
            row[ev.head_metric(ev.LOGITS_MAX, "region")] = lo + 30.0 + rng.random()
            row[ev.head_metric(ev.LOGIT_SCALE, "region")] = LN_100
            row[ev.head_metric(ev.LOGIT_SCALE_EXP, "region")] = None if s % 700 == 0 else 100.0
            row[ev.REGIONS_ZERO_NORM] = 1.0 if s % 40 == 0 else 0.0
        rows.append((s, row))
    return rows


def test_wide_logits_settle_the_collapse_check_in_bulk():
    rows = logits_stream()
    reference = judge(rows, None, CollapseFromLogits)
    fgd603 = [f for f in reference[0] if f[0] == "FGD603"]
    assert len(fgd603) == 1 and 1200 < fgd603[0][1] < 2400
    rng = random.Random(4)
    for sizes in ([len(rows)], [100], [7, 301, 1000], [rng.randint(1, 500) for _ in range(20)]):
        found, not_judged, observed = judge(rows, sizes, CollapseFromLogits)
        assert (found, not_judged) == reference[:2], sizes
        if sizes == [100]:  # batches of healthy logits settle without a row observed
            assert observed and not [s for s in observed if 300 < s <= 600], sizes


def test_loss_without_k_judges_each_window_size_as_row_by_row():
    """A loss without a known K (a Trainer log's) whose logging interval changes (every step, then every 7):
    the windows its rows would judge change size mid-batch; the state as of the last row (the reason FGD601
    is not judged yet, the last window judged) is that of one row at a time, whatever the batches."""
    rng = random.Random(2)
    steps = [*range(1, 400), *range(400, 3001, 7)]
    rows = [(s, {ev.LOSS: 2.0 + rng.gauss(0, 0.05)}) for s in steps]

    def state(sizes: list[int]) -> tuple:
        engine = RuleEngine({"planned_steps": 3000, "warmup_steps": 30})
        i, n = 0, 0
        while i < len(rows):
            size = sizes[n % len(sizes)]
            engine.observe_rows([(s, dict(r)) for s, r in rows[i : i + size]])
            i, n = i + size, n + 1
        check = next(c for c in engine.checks if isinstance(c, LossVsChance))
        return dict(engine.why_not), check.tracks[MAIN].evaluated

    reference = state([1])
    assert "fewer than 29 logging points" in reference[0]["FGD601"]
    for sizes in ([len(rows)], [50], [3, 390, 17], [400, 1000]):
        assert state(sizes) == reference, sizes
