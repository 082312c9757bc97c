"""A run killed and resumed from an earlier checkpoint logs its last steps again (killed after step 12,
resumed from 8: steps 10 and 12 appear twice). The chance windows judge the newest values once per step, so
the verdict does not depend on where the kill landed. The short run below is `fgdiag run`'s tiny arm (16
steps, logging every 2, warm-up 10, its losses about twice chance): with steps 10-12 counted twice its
window after the warm-up filled and FGD602 fired, killed at 8 it stayed not judged."""

from __future__ import annotations

import math

import pytest

from fgdiag.rules.engine import RuleEngine

INFO = {
    "planned_steps": 16,
    "logging_steps": 2,
    "warmup_steps": 10,
    "memory_bank_size": 128,
    "memory_bank_warmup_steps": 2,
    "logit_scale_max": math.log(100),
}


def row(step: int, newer: bool) -> dict[str, float]:
    """Losses about twice chance, as the tiny arm logged them (the resumed run's a little different)."""
    k = 1.0 + 0.01 * step + (0.02 if newer else 0.0)
    return {
        "loss": 20.0 * k,
        "head_loss/global": 4.0 * k,
        "candidates/global": 8.0,
        "chance/global": math.log(8),
        "head_loss/region": 10.0 * k,
        "candidates/region": 140.0,
        "chance/region": math.log(140),
        "logit_scale/region": math.log(100),
    }


def judged(rows: list) -> tuple:
    engine = RuleEngine(INFO)
    found: list = []
    for step, metrics in rows:
        found += engine.observe(step, metrics)
    found += engine.finish()
    chance = [(f.code, f.step, f.message) for f in found if f.code in ("FGD601", "FGD602")]
    return chance, [n for n in engine.not_judged() if n["code"] in ("FGD601", "FGD602")]


@pytest.mark.parametrize("killed_at", [10, 12, 14])
def test_steps_logged_again_by_a_resumed_run_are_judged_once(killed_at):
    resumed = [(s, row(s, newer=True)) for s in range(10, 17, 2)]
    once = [(s, row(s, newer=False)) for s in range(2, 9, 2)] + resumed
    twice = [(s, row(s, newer=False)) for s in range(2, killed_at + 1, 2)] + resumed
    assert judged(twice) == judged(once)


def test_a_longer_resumed_run_above_chance_is_still_caught():
    info_steps = range(2, 61, 2)
    rows = [(s, row(s, newer=False)) for s in info_steps if s <= 40]
    rows += [(s, row(s, newer=True)) for s in info_steps if s > 30]  # resumed from 30
    engine = RuleEngine({**INFO, "planned_steps": 60})
    found: list = []
    for step, metrics in rows:
        found += engine.observe(step, metrics)
    assert "FGD602" in {f.code for f in found + engine.finish()}


def test_gradient_scale_counts_each_step_once_in_a_resumed_run():
    """FGD502's "on all N logging steps" counts steps, not lines: the stretch a resumed run logs again
    counts once, whether the rows come one at a time or in a batch."""
    rows = [(s, {**row(s, newer=False), "grad_norm": 400.0}) for s in range(2, 13, 2)]
    rows += [(s, {**row(s, newer=True), "grad_norm": 350.0}) for s in range(10, 17, 2)]
    for feed in ("one", "batch"):
        engine = RuleEngine(INFO)
        found = []
        if feed == "one":
            for step, metrics in rows:
                found += engine.observe(step, metrics)
        else:
            found += engine.observe_rows(rows)
        (scale,) = [f for f in found + engine.finish() if f.code == "FGD502"]
        assert "on all 8 logging steps" in scale.message, feed
