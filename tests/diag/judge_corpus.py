"""Metric streams that make every runtime rule fire (and healthy ones that make none), for the tests that
judge the same rows in different batchings: a 300-step fine-tune logging every 5 steps, the shape of the
embedded runs, with one fault injected per stream."""

from __future__ import annotations

import math
from collections.abc import Callable

from fgdiag import events as ev

H = ev.head_metric
REGION = H(ev.HEAD_LOSS, "region")
INFO = {
    "planned_steps": 300,
    "warmup_steps": 30,
    "memory_bank_size": 128,
    "memory_bank_warmup_steps": 5,
    "logit_scale_max": math.log(100),
}
Row = dict[str, float | None]


def healthy(step: int) -> Row:
    """A run that learns: bank on at 7 (4 -> 132 candidates), region loss well below ln K, scales ln 100."""
    bank = step >= 7
    k = 132.0 if bank else 4.0
    region = 0.3 + 1.0 * math.exp(-step / 60)
    return {
        ev.LOSS: 1.0 + 0.5 * region + math.exp(-step / 80),
        REGION: region,
        H(ev.HEAD_LOSS, "global"): 0.5 + math.exp(-step / 80),
        H(ev.CANDIDATES, "region"): k,
        H(ev.CHANCE, "region"): math.log(k),
        **{H(ev.LOGIT_SCALE, h): math.log(100) for h in ev.HEADS},
        H(ev.LOGITS_MIN, "region"): -30.0,
        H(ev.LOGITS_MAX, "region"): 80.0,
        H(ev.LOGITS_STD, "region"): 9.0,
        H(ev.COS_STD, "region"): 0.09,
        H(ev.LOSS_AT_MAX_SCALE, "region"): region,  # at the clamp: the loss the clamp scale gives
        H(ev.HARDEST_GAP, "region"): 0.3,
        ev.MB_ACTIVE: 1.0 if bank else 0.0,
        ev.MB_FILL: 128.0 if bank else 0.0,
        ev.MB_SIZE: 128.0,
        ev.REGIONS_ZERO_NORM: 0.0,
        ev.REGIONS_NONFINITE: 0.0,
        ev.GRAD_NORM: 2.0 + 0.1 * math.sin(step),
        H(ev.GRAD_NORM_GROUP, "towers_decay"): 1.5,
        H(ev.GRAD_NORM_GROUP, "heads_decay"): 3.0,
        ev.LEARNING_RATE: 5e-6 * min(1.0, step / 30) + 1e-9,
    }


def _set(name: str, value: float, when: Callable[[int], bool] = lambda s: True) -> Callable[[int, Row], None]:
    def change(step: int, row: Row) -> None:
        if when(step):
            row[name] = value

    return change


def _drop(*names: str) -> Callable[[int, Row], None]:
    def change(step: int, row: Row) -> None:
        for name in names:
            row.pop(name, None)

    return change


def _follow_chance(factor: float, offset: float = 0.0) -> Callable[[int, Row], None]:
    def change(step: int, row: Row) -> None:
        chance = row[H(ev.CHANCE, "region")]
        assert chance is not None
        row[REGION] = chance * factor + offset

    return change


def _decay(step: int, row: Row) -> None:
    row[H(ev.LOGIT_SCALE, "global")] = math.log(100) - 0.002 * step


def _cos_std_tiny(step: int, row: Row) -> None:
    """A log with the cosine spread but not the logits' range (judged on cos_std)."""
    row.pop(H(ev.LOGITS_MIN, "region"), None)
    row.pop(H(ev.LOGITS_MAX, "region"), None)
    if 100 <= step < 200:
        row[H(ev.COS_STD, "region")] = 0.001


def _logits_high(step: int, row: Row) -> None:
    """Every region logit above half the scale (100): all cosines >= 0.7."""
    if step >= 100:
        row[H(ev.LOGITS_MIN, "region")], row[H(ev.LOGITS_MAX, "region")] = 70.0, 99.0


def _temperature(step: int, row: Row) -> None:
    """The seed's region head: scale 3.0 (exp 20), loss 1.5 where the clamp scale would give 0.05."""
    row[H(ev.LOGIT_SCALE, "region")] = 3.0
    row[REGION], row[H(ev.LOSS_AT_MAX_SCALE, "region")] = 1.5, 0.05


def _rising(step: int, row: Row) -> None:
    if step > 150:
        row[ev.LOSS] = 1.6 + 0.01 * (step - 150)


def _bank_late(step: int, row: Row) -> None:
    row[ev.MB_ACTIVE] = 1.0 if step >= 50 else 0.0


# name -> (change, the codes it must make fire)
FAULTS: dict[str, tuple[Callable[[int, Row], None] | None, set[str]]] = {
    "healthy": (None, set()),
    "FGD101 clip init": (_set(H(ev.LOGIT_SCALE, "region"), 2.65625), {"FGD101"}),
    "FGD101 gap": (_set(H(ev.LOGIT_SCALE, "hardneg"), 3.2), {"FGD101"}),
    "FGD102 unclamped": (_set(H(ev.LOGIT_SCALE, "global"), 4.62, lambda s: s >= 100), {"FGD102"}),
    "FGD102 flat at clamp": (_set(REGION, 1.2), {"FGD102"}),
    "FGD103 frozen": (_set(H(ev.LOGIT_SCALE, "region"), 4.0), {"FGD103"}),
    "FGD103 decay": (_decay, {"FGD103"}),
    "FGD201 late": (_bank_late, {"FGD201"}),
    "FGD301 zero norm": (_set(ev.REGIONS_ZERO_NORM, 1.0, lambda s: s % 20 == 0), {"FGD301"}),
    "FGD302 duplicates": (_set(ev.MB_DUP_SHARE, 0.8, lambda s: 100 <= s < 150), {"FGD302"}),
    "FGD501 spike": (_set(ev.GRAD_NORM, 50.0, lambda s: s in (150, 250)), {"FGD501"}),
    "FGD501 head ratio": (_set(H(ev.GRAD_NORM_GROUP, "heads_decay"), 400.0, lambda s: s > 200), {"FGD501"}),
    "FGD601 at chance": (_follow_chance(1.005), {"FGD601"}),
    "FGD602 above chance": (_follow_chance(1.0, 0.6), {"FGD602"}),
    "FGD603 collapse": (_cos_std_tiny, {"FGD603"}),
    "FGD603 logits above half the scale": (_logits_high, {"FGD603"}),
    "FGD604 slow": (_set(REGION, 1.1), {"FGD604"}),
    "FGD104 temperature": (_temperature, {"FGD104"}),
    "FGD502 gradient scale": (_set(ev.GRAD_NORM, 800.0), {"FGD502"}),
    "FGD605 rising": (_rising, {"FGD605"}),
    "FGD606 flat": (_set(ev.LOSS, 2.5), {"FGD606"}),
    "FGD703 skipped": (lambda step, row: row.update({ev.SKIPPED_STEPS: 0.2 * step}), {"FGD703"}),
    "FGD701 nan": (_set(ev.GRAD_NORM, float("nan"), lambda s: s in (120, 125, 200)), {"FGD701"}),
    "no chance in the log": (_drop(H(ev.CANDIDATES, "region"), H(ev.CHANCE, "region")), set()),
}


def stream(name: str, steps: int = 300, every: int = 5) -> list[tuple[int, Row]]:
    change = FAULTS[name][0]
    out = []
    for step in range(every, steps + 1, every):
        row = healthy(step)
        if change is not None:
            change(step, row)
        out.append((step, row))
    return out
