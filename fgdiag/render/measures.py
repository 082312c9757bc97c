"""What a run measured, read off a judged log (a `LogRead`): values at a step, at the start and the end, the
step the memory bank joined the loss, target points with their smoothing window. Shared by the comparison
table, the report's first paragraph and the panels, so the three never disagree on a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from fgdiag import events as ev
from fgdiag.render.summary import summary_dict, target_table

REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, "region")
REGION_CHANCE = ev.head_metric(ev.CHANCE, "region")
REGION_K = ev.head_metric(ev.CANDIDATES, "region")


def finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def at(read: Any, name: str, step: int | None) -> float | None:
    """The value logged at the last logging step <= step (None before the first or when absent)."""
    if step is None:
        return None
    best = None
    for s in sorted(read.rows):
        if s > step:
            break
        value = finite(read.rows[s].get(name))
        if value is not None:
            best = value
    return best


def first(read: Any, name: str) -> tuple[int, float] | None:
    return next(((s, v) for s, v in read.series(name) if finite(v) is not None), None)


def last(read: Any, name: str) -> tuple[int, float] | None:
    points = [(s, v) for s, v in read.series(name) if finite(v) is not None]
    return points[-1] if points else None


def last_step(read: Any) -> int | None:
    return max(read.rows) if read.rows else None


def scale_exp(read: Any, head: str, which: str = "end") -> float | None:
    """exp(raw logit scale) = 1/temperature of a head at the first or last logging step."""
    pick = first if which == "start" else last
    hit = pick(read, ev.head_metric(ev.LOGIT_SCALE_EXP, head))
    if hit is not None:
        return hit[1]
    raw = pick(read, ev.head_metric(ev.LOGIT_SCALE, head))
    return math.exp(min(raw[1], 700.0)) if raw is not None else None


def bank_on(read: Any) -> int | None:
    """Optimizer step the memory bank switched on (joined the loss), None if it never did."""
    for e in read.events:
        if e.get("kind") == ev.EVENT_MB_ENABLED:
            return int(e.get("step", 0))
    return None


def has_bank(read: Any) -> bool:
    size = read.run_info.get("memory_bank_size")
    return bool(size) or any(ev.MB_FILL in row for row in read.rows.values())


def first_below(read: Any, name: str, threshold: float) -> int | None:
    return next((s for s, v in read.series(name) if finite(v) is not None and v < threshold), None)


def verdict(read: Any) -> tuple[str, str]:
    """(verdict word, detail) as watch/report's JSON has them (the detail may be empty)."""
    summary = summary_dict(read)
    return str(summary["verdict"]), str(summary.get("verdict_detail") or "")


def logging_interval(read: Any) -> float:
    steps = sorted(read.rows)
    gaps = sorted(b - a for a, b in pairwise(steps) if b > a)
    return float(gaps[len(gaps) // 2]) if gaps else 1.0


@dataclass(frozen=True)
class TargetRow:
    """One target point of the profile as judged for one run (FGD604: the metric smoothed over a window
    before the point, not the single logged value)."""

    target: str  # "region loss < 0.8 @ 50"
    metric: str  # "region loss"
    condition: str  # "< 0.8 @ 50"
    step: int
    status: str  # passed / missed / pending / not judged
    value: float | None  # the smoothed value FGD604 judged
    window: tuple[int, int] | None  # the steps it averaged


def metric_words(metric: str) -> str:
    base, _, head = metric.partition("/")
    words = {"head_loss": "loss", "loss_over_chance": "loss / ln K", "logit_scale": "logit scale"}
    return f"{head} {words.get(base, base)}" if head else metric


def target_rows(read: Any, profile: Any = None) -> list[TargetRow]:
    """The profile's points with this run's smoothed values and status; the window is the one FGD604
    averages: max(2 logging intervals, 10 % of the point's step) before it, up to the step it judged at."""
    from fgdiag.rules.convergence import Targets

    profile = profile or read.targets
    if profile is None:
        return []
    table = target_table(profile, read.target_results, last_step(read))
    judged = {(r["metric"], r["step"]): r for r in read.target_results}
    span_of = max(2 * logging_interval(read), 0)
    out = []
    for row, cp in zip(table, profile.points, strict=True):
        hit = judged.get((cp.metric, cp.step))
        window = None
        if hit is not None:
            span = max(span_of, Targets.SMOOTH_FRACTION * cp.step)
            window = (max(0, int(cp.step - span)), int(hit.get("judged_at", cp.step)))
        words, condition = metric_words(cp.metric), f"{'<' if cp.below else '>'} {cp.threshold:g} @ {cp.step}"
        value = finite(row["value"])
        out.append(TargetRow(f"{words} {condition}", words, condition, cp.step, row["status"], value, window))
    return out


def checkpoint_steps(reads: Mapping[str, Any], profile: Any = None) -> list[int]:
    """Steps the comparison shows single logged values at: the profile's points, else 50/100/200/400; only
    those the longest run reached."""
    steps: set[int] = set()
    for read in reads.values():
        p = profile or read.targets
        if p is not None:
            steps |= {cp.step for cp in p.points if cp.metric == REGION_LOSS}
    longest = max((last_step(r) or 0 for r in reads.values()), default=0)
    return [s for s in sorted(steps or {50, 100, 200, 400}) if s <= longest]
