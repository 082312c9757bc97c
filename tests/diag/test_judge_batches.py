"""Verdicts do not depend on batch or chunk boundaries: the same rows judged one at a time, in random batches
and in one batch give the same findings, in the same order, the same not-judged list and target results;
the same log bytes fed whole, in random chunks and one byte at a time give the same summary."""

from __future__ import annotations

import json
import math
import random

import pytest
from judge_corpus import FAULTS, INFO, REGION, stream
from logs_fixtures import hf_trainer_log, mojibake, openclip_log, our_log, vad_log

from fgdiag import events as ev
from fgdiag.render.summary import summary_dict
from fgdiag.rules.engine import RuleEngine
from fgdiag.session import LogSession, read_log
from fgdiag.targets import get_profile


def judged(engine: RuleEngine, found: list) -> tuple:
    found = found + engine.finish()
    return (
        [(f.code, f.step, f.severity.value, f.message) for f in found],
        engine.not_judged(),
        engine.target_results,
    )


def one_by_one(rows: list, **kw) -> tuple:
    engine = RuleEngine(INFO, get_profile("ucf"), **kw)
    found: list = []
    for step, row in rows:
        found += engine.observe(step, dict(row))
    return judged(engine, found)


def batched(rows: list, sizes: list[int]) -> tuple:
    engine = RuleEngine(INFO, get_profile("ucf"))
    found: list = []
    i = 0
    while i < len(rows):
        n = sizes[len(found) % len(sizes)] if sizes else len(rows)
        found += engine.observe_rows([(s, dict(r)) for s, r in rows[i : i + n]])
        i += n
    return judged(engine, found)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_judge_batches_same_findings_whatever_the_batches(fault):
    rows = stream(fault)
    reference = one_by_one(rows)
    codes = {code for code, *_ in reference[0]}
    assert FAULTS[fault][1] <= codes  # caught (it may trip others: a constant scale is also frozen)
    assert codes or not FAULTS[fault][1]
    rng = random.Random(fault)
    for sizes in ([len(rows)], [1, 2, 3], [7], [rng.randint(1, 40) for _ in range(20)]):
        assert batched(rows, sizes) == reference, sizes


def test_judge_batches_repeated_steps_and_a_resume():
    rows = stream("FGD501 spike")
    rows = [*rows[:30], (rows[29][0], {"grad_norm": 99.0}), *rows[10:40]]  # same step again, then a resume
    reference = one_by_one(rows)
    assert batched(rows, [len(rows)]) == reference
    assert batched(rows, [3, 5, 1]) == reference


def long_stream() -> list:
    """Past the series' cap (2 x 4096 points): 9,000 steps, each logged twice (a second row of the same
    step, as a dict line merged into a fork row), ln K on a third of them, the region at chance in the
    middle, the loss rising at the end."""
    rng = random.Random(0)
    rows = []
    for s in range(1, 9001):
        row = {
            ev.LOSS: 2.0 if s < 8000 else 2.0 + (s - 8000) / 200,
            REGION: math.log(130) * (1.0 if 3000 < s < 5000 else 0.5) + rng.gauss(0, 0.01),
            ev.GRAD_NORM: 1.0 + rng.random(),
        }
        if s % 3 == 0:
            row[ev.head_metric(ev.CHANCE, "region")] = math.log(130)
        rows += [(s, row), (s, {**row, ev.LOSS: row[ev.LOSS] + 0.01})]
    return rows


def test_judge_batches_past_the_series_cap_with_steps_logged_twice():
    rows = long_stream()
    reference = one_by_one(rows)
    assert {"FGD601", "FGD605"} <= {code for code, *_ in reference[0]}
    for sizes in ([len(rows)], [4097], [7, 300, 5000]):
        assert batched(rows, sizes) == reference, sizes


LOGS = {
    "hf": hf_trainer_log(steps=400, logging_steps=5, loss=lambda s: 2.0 if s < 200 else float("nan")),
    "vad": vad_log(steps=60, ga=4, bank_at=5, zero_every=7),
    "vad-head-mojibake": mojibake(vad_log(steps=30, ga=2, variant="head", bank_at=3, crash_at=25)),
    "ours": our_log(steps=200, every=5, scale=2.6592),
    "openclip": openclip_log(steps=60),
}


def summary_of(path, chunks: list[int] | None) -> str:
    if chunks is None:
        read = read_log(path, targets="ucf")
    else:
        session = LogSession(str(path), targets=get_profile("ucf"))
        data, i = path.read_bytes(), 0
        while i < len(data):
            n = chunks[i % len(chunks)]
            session.feed(data[i : i + n])
            i += n
        session.flush(final=True)
        read = session.result()
    return json.dumps(summary_dict(read), sort_keys=True)


@pytest.mark.parametrize("name", sorted(LOGS))
def test_judge_batches_same_summary_whatever_the_chunks(tmp_path, name):
    path = tmp_path / f"{name}.log"
    path.write_text(LOGS[name], encoding="utf-8")
    whole = summary_of(path, None)
    assert json.loads(whole)["steps"] > 10
    rng = random.Random(name)
    assert summary_of(path, [rng.randint(1, 4000) for _ in range(50)]) == whole
    assert summary_of(path, [97]) == whole
    if len(LOGS[name]) < 200_000:
        assert summary_of(path, [1]) == whole


def at_clamp_stream(head_loss: bool) -> list:
    """3,000 steps logged each at the clamp with a flat loss (FGD102 opens); the scale below the clamp for 40
    steps (the episode clears only as the share of points at the clamp falls under 95 % after it), a drop of
    the loss that clears it, flat again (it reopens), below the clamp for 100 steps (it clears), then back:
    long batches whose saturation episodes stay open or clear (`ScaleAtClamp._replayed`) and some that open
    one (row by row)."""
    rows = []
    for step in range(1, 3001):
        loss = 2.8 if step < 1500 else 2.3 if step > 1700 else 2.8 - 0.5 * (step - 1500) / 200
        loss += 0.01 * math.sin(step)
        raw = 4.0 if 2300 <= step < 2400 or 900 <= step < 940 else math.log(100)
        row = {ev.LOSS: loss + 1.0, ev.head_metric(ev.LOGIT_SCALE, "region"): raw}
        if head_loss:
            row[REGION] = loss
        rows.append((step, row))
    return rows


@pytest.mark.parametrize("head_loss", [True, False])
def test_saturation_episodes_replayed_from_columns_as_row_by_row(head_loss, monkeypatch):
    from fgdiag.rules.scales.clamp import ScaleAtClamp

    info = {"planned_steps": 3000, "logit_scale_max": math.log(100)}
    rows = at_clamp_stream(head_loss)

    def judge(sizes: list[int] | None) -> tuple:
        engine = RuleEngine(info, get_profile("ucf"))
        found: list = []
        i = 0
        while i < len(rows):
            n = sizes[len(found) % len(sizes)] if sizes else 1
            found += (
                engine.observe_rows([(s, dict(r)) for s, r in rows[i : i + n]])
                if sizes
                else engine.observe(*rows[i])
            )
            i += n
        return judged(engine, found)

    reference = judge(None)
    assert [code for code, *_ in reference[0]].count("FGD102") >= 4  # opened, reopened three times
    replayed: list[bool] = []
    replay = ScaleAtClamp._replayed
    monkeypatch.setattr(
        ScaleAtClamp, "_replayed", lambda self, b, d: replayed.append(r := replay(self, b, d)) or r
    )
    rng = random.Random(3)
    for sizes in ([len(rows)], [250], [1, 2, 3], [rng.randint(1, 400) for _ in range(20)]):
        replayed.clear()
        assert judge(sizes) == reference, sizes
        assert not 4 <= sizes[0] < len(rows) or replayed.count(True) >= 2, sizes  # not the first batch
