"""FGD102: a scale above its clamp (or no clamp), or saturated at the clamp while the loss is flat."""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import as_float
from fgdiag.rules.batch import Batch, all_finite, finite_values
from fgdiag.rules.engine import Check, Row
from fgdiag.rules.registry import get, register, runtime_check, static_check
from fgdiag.rules.scales.names import CLAMP_TOLERANCE, RAW, RAW_EXP, SCALE_READS
from fgdiag.rules.series import SERIES_CAP, exp_or_inf

register(
    "FGD102",
    "scale-unclamped-or-saturated",
    "warning",
    what="A logit scale initialised above the clamp (error), no clamp configured, or a scale sitting at the "
    "clamp while the loss is flat.",
    why="Without a clamp exp(scale) can pass 100 and destabilise training; at the clamp the temperature is "
    "frozen and a flat loss there means the scale is not the lever.",
    example="logit_scale_max = None (upstream FG-CLIP has no clamp)",
    fix="Set logit_scale_max = 4.6052 (ln 100) and initialise every head at or below it.",
)


@static_check("FGD102")
def clamp(facts: RunFacts) -> list[Finding]:
    """A scale initialised above the clamp (error), or no clamp at all (warning)."""
    s = facts.settings
    if s is None or s.clamp is None:
        return []
    rule, limit_field = get("FGD102"), s.clamp
    if limit_field.value is None:
        return [
            rule.finding(
                f"no clamp on the logit scales ({limit_field.origin}): exp(scale) can pass 100 and "
                "destabilise training",
                location=limit_field.location,
            )
        ]
    limit = as_float(limit_field)
    if limit is None:
        return []
    return [
        rule.finding(
            f"{label} logit scale starts at {value:.5g} ({field.origin}), above the clamp logit_scale_max = "
            f"{limit:.5g} ({limit_field.origin}): the first clamp cuts it and the configured value never "
            "holds",
            location=field.location,
            severity=Severity.ERROR,
            evidence={"head": label, "init": value, "clamp": limit},
        )
        for label, field, value in s.initial_scales()
        if value > limit + CLAMP_TOLERANCE
    ]


@runtime_check
class ScaleAtClamp(Check):
    """FGD102 on logged scales: above the clamp (unclamped), or saturated at it while the loss is flat."""

    codes = ("FGD102",)
    reads = SCALE_READS
    keeps = (*SCALE_READS, ev.HEAD_LOSS + "/", ev.LOSS)
    absent = "no logit scale in this log"
    UNCLAMPED_TOL = 1e-4  # B2: raw > clamp + 1e-4 (exp > 100.01) is unclamped
    CLAMP_TOL = 1e-3  # B2: raw >= clamp - 1e-3 counts as saturated
    SATURATED_SHARE = 0.95
    SATURATED_STEPS = 500  # ...of the last 500 steps (half of a shorter run)
    FLAT_REL = 0.02  # loss changed by < 2 % over the window: flat
    FLAT_FLOOR = 0.1  # a loss below this is converged, not flat
    LEARNED_DROP = 0.2  # a loss 20 % below its value at the trend start has learned: a plateau is not "flat"

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.start_loss: dict[tuple[str, int], float] = {}

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        raw = e.raw_scales(m)
        if not raw:
            return
        e.judge("FGD102")
        clamp = e.clamp()
        for head, value in raw.items():
            over = value > clamp + self.UNCLAMPED_TOL
            if e.gate(f"FGD102/unclamped/{head}", over):
                e.emit(
                    "FGD102",
                    f"{head} logit scale {value:.6f} (exp {math.exp(min(value, 50)):.2f}) is above the clamp "
                    f"{clamp:.4f} (exp {exp_or_inf(clamp):.2f}): the scale is not clamped",
                    step,
                    severity=Severity.ERROR,
                    evidence={"head": head, "raw": value, "clamp": clamp},
                )
            if step > e.start and e.heavy:
                self._saturated(step, head, clamp)

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No scale above the clamp: only the rows where saturation is due (heavy, after the trend start)."""
        e = self.engine
        scales = batch.log_scales(ev.HEADS)
        if e.is_open("FGD102/unclamped") or (scales and max(scales) > e.clamp() + self.UNCLAMPED_TOL):
            return None
        if scales:
            e.judge("FGD102")
        heavy, steps, start = batch.heavy, batch.steps, batch.start
        due = [i for i in rows if heavy[i] and steps[i] > start]
        if not due or self._learned(batch, due) or self._replayed(batch, due):
            return []
        return due

    def _points(self, window: int, interval: float) -> int:
        """B2's look-back in logging points as of a row: 500 steps (half of a shorter run), at least its
        window."""
        planned = self.engine.planned()
        span = min(self.SATURATED_STEPS, planned * 0.5) if planned else self.SATURATED_STEPS
        return max(window, math.ceil(span / max(interval, 1.0)))

    def _flat(self, first: float, second: float, start: float) -> bool:
        """The loss's halves over the span: flat, not converged (above the floor, never 20 % below its value
        at the trend start)."""
        return (
            first > self.FLAT_FLOOR
            and (first - second) < self.FLAT_REL * first
            and second > (1.0 - self.LEARNED_DROP) * start
        )

    def _learned(self, batch: Batch, due: list[int]) -> bool:
        """Every head's loss stays below 80 % of its value at the trend start over every look-back window
        of the due rows (the loss has learned: no window is flat), and no saturation episode is open: each
        due row's `_saturated` would only record a clear point on a closed gate, i.e. do nothing."""
        e = self.engine
        names = batch.names()
        windows, intervals = batch.windows, batch.intervals
        reach = max(self._points(windows[i], intervals[i]) for i in due)
        for head in ev.HEADS:
            if RAW[head] not in names and RAW_EXP[head] not in names:
                continue
            start = self.start_loss.get((head, batch.start))
            if start is None or not start > 0 or e.is_open(f"FGD102/saturated/{head}"):
                return False
            loss_name = ev.head_metric(ev.HEAD_LOSS, head)
            if not e.tail(loss_name, 1)[0]:  # no head loss before the batch: its rows must not bring one
                if any(v is not None for v in batch.column(loss_name)[1]):
                    return False
                loss_name = ev.LOSS
            seen = finite_values(e.tail(loss_name, reach)[1]) + finite_values(batch.column(loss_name)[1])
            # a mean of values <= top is <= top up to rounding: the margin covers it
            if not seen or max(seen) * (1 + 1e-6) >= (1.0 - self.LEARNED_DROP) * start:
                return False
        return True

    def _replayed(self, batch: Batch, due: list[int]) -> bool:
        """`_saturated` for each due row settled from the columns when the batch is plain (every row holds
        each head's raw scale and loss, finite, and the series before it reach back a full span), its gate
        calls replayed; False (nothing changed) otherwise or when one would start an episode: row by row."""
        e = self.engine
        names, clamp = batch.names(), e.clamp()
        spans = [self._points(batch.windows[i], batch.intervals[i]) for i in due]
        reach, at_clamp, every = max(spans), clamp - self.CLAMP_TOL, batch.every()
        ops: list[tuple[str, bool]] = []
        for head in ev.HEADS:
            if RAW[head] not in names and RAW_EXP[head] not in names:
                continue
            loss_name = ev.head_metric(ev.HEAD_LOSS, head)
            if loss_name not in names and not e.tail(loss_name, 1)[0]:
                loss_name = ev.LOSS  # no loss of the head's own, before or in the batch: the total's
            start = self.start_loss.get((head, batch.start))
            (raw_at, raw), (loss_at, loss) = batch.column(RAW[head]), batch.column(loss_name)
            if start is None or raw_at != every or loss_at != every or not all_finite(raw + loss):
                return False
            old_raw, old_loss = e.tail(RAW[head], reach)[1], e.tail(loss_name, reach)[1]
            if len(old_raw) < reach or len(old_loss) < reach or not all_finite(old_loss):
                return False
            pts: list[Any] = old_raw + raw  # the series as each row sees them, up to it
            lvals: list[Any] = old_loss + loss
            held = list(accumulate(map(at_clamp.__le__, pts), initial=0))  # points at the clamp, cumulative
            for i, w in zip(due, spans, strict=True):
                end = reach + i + 1
                if pts[end - 1] < at_clamp or w < 4:  # below the clamp, or a span too short to be flat
                    ops.append((f"FGD102/saturated/{head}", False))
                    continue
                half = w // 2
                first = sum(lvals[end - w : end - w + half]) / half
                second = sum(lvals[end - w + half : end]) / (w - half)
                saturated = (
                    self._flat(first, second, start) and held[end] - held[end - w] >= self.SATURATED_SHARE * w
                )
                ops.append((f"FGD102/saturated/{head}", saturated))
        if e.gates_fire(ops):
            return False
        e.apply_gates(ops)
        return True

    def _saturated(self, step: int, head: str, clamp: float) -> None:
        """B2: judged over a long span (500 steps, or half of a shorter run): over a few dozen steps a noisy
        loss at the clamp looks flat in every healthy run."""
        e = self.engine
        w = self._points(e.window, e.interval())
        pts = e.tail(RAW[head], w)[1]
        if len(pts) < w:
            pts = [math.log(v) for v in e.tail(RAW_EXP[head], w)[1] if v > 0]
        loss_name = ev.head_metric(ev.HEAD_LOSS, head)
        if not e.tail(loss_name, 1)[0]:
            loss_name = ev.LOSS
        if not pts or pts[-1] < clamp - self.CLAMP_TOL:
            e.gate(f"FGD102/saturated/{head}", False)
            return
        lvals = e.tail(loss_name, w)[1]
        half = len(lvals) // 2
        sums = (sum(lvals[:half]), sum(lvals[half:])) if half and None not in lvals else None
        if sums is None or not (math.isfinite(sums[0]) and math.isfinite(sums[1])):
            lvals, sums = finite_values(lvals), None  # a missing or non-finite loss: the halves of the rest
        at_clamp = clamp - self.CLAMP_TOL
        flat = False
        key = (head, e.start)
        start = self.start_loss.get(key)
        if start is None:
            loss_steps, loss_values = e.tail(loss_name, 2 * SERIES_CAP)
            start = next(
                (v for s, v in zip(loss_steps, loss_values, strict=True) if s > e.start and math.isfinite(v)),
                None,
            )
            if start is not None:
                self.start_loss[key] = start
        if len(lvals) >= max(4, w) and start is not None:
            half = len(lvals) // 2
            if sums is None:
                sums = (sum(lvals[:half]), sum(lvals[half:]))
            first, second = sums[0] / half, sums[1] / (len(lvals) - half)
            flat = self._flat(first, second, start)
        # counted only when the loss is flat (the rarer condition): a pass over the span costs the most here
        saturated = (
            flat and len(pts) >= w and sum(map(at_clamp.__le__, pts)) >= self.SATURATED_SHARE * len(pts)
        )
        if e.gate(f"FGD102/saturated/{head}", saturated):
            e.emit(
                "FGD102",
                f"{head} logit scale sits at the clamp {clamp:.4f} on the last {len(pts)} logging steps "
                f"while its loss is flat ({lvals[0]:.4f} -> {lvals[-1]:.4f}): the temperature is frozen and "
                "not the lever",
                step,
                evidence={"head": head},
            )
