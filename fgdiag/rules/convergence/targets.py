"""FGD604: each point of the target profile (a metric below a threshold at a step, judged on the metric
smoothed over the steps before it) and the profile's starting logit scale."""

from __future__ import annotations

import math
from typing import Any

from fgdiag import events as ev
from fgdiag.rules.batch import Batch
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check

SCALE_PREFIXES = (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/")

register(
    "FGD604",
    "target-missed",
    "error",
    what="A point of the target profile (region loss below X at step N) was missed.",
    why="The profile is what a healthy run reaches with margin; missing it means the run is off track.",
    example="ucf profile: region loss < 1.0 @ 50, seen 1.38",
    fix="Look at the other findings at that step; compare with fgdiag run --compare seed.",
)


@runtime_check
class Targets(Check):
    """FGD604: each point of the target profile, judged on the metric smoothed over the steps before it, and
    the profile's starting logit scale."""

    codes = ("FGD604",)
    SMOOTH_FRACTION = 0.1  # a target point is judged on the mean over the last 10 % of its step
    OTHER_SCHEDULE = 10.0  # a peak learning rate 10x from the profile's: another run

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        t = engine.targets
        self.done: set[int] = set()
        self.scale_done: set[str] = set()
        self.keeps = tuple(cp.metric for cp in t.points) if t is not None else ()
        if t is not None and t.learning_rate is not None:
            self.keeps += (ev.LEARNING_RATE,)
        self.every_row = t is not None
        if t is None:
            engine.why("FGD604", "no target profile; pass --targets")

    def observe(self, step: int, m: Row) -> None:
        e, t = self.engine, self.engine.targets
        if t.logit_scale is not None and len(self.scale_done) < len(ev.HEADS):
            self._scale(step, m, t)
        for i, cp in enumerate(t.points):
            if i in self.done or step < cp.step:
                continue
            if not e.tail(cp.metric, 1)[0]:
                if cp.metric not in m:
                    e.why("FGD604", f"target {cp.describe()} needs {cp.metric}, absent from this log")
                continue
            self.done.add(i)
            other = self._other_schedule(t)
            if other:
                e.extra_not_judged[f"FGD604@{cp.step}:{cp.metric}"] = (
                    f"FGD604: target {cp.describe()} {other}"
                )
                continue
            span = max(2 * e.interval(), self.SMOOTH_FRACTION * cp.step)
            vals = [v for _s, v in e.since(cp.metric, cp.step - span) if math.isfinite(v) and v != 0.0]
            if not vals:
                continue
            e.judge("FGD604")
            smoothed = sum(vals) / len(vals)
            passed = cp.passes(smoothed)
            e.target_results.append(
                {
                    "metric": cp.metric,
                    "step": cp.step,
                    "threshold": cp.threshold,
                    "below": cp.below,
                    "value": smoothed,
                    "passed": passed,
                    "judged_at": step,
                }
            )
            if not passed:
                e.emit(
                    "FGD604",
                    f"target missed: {cp.describe()} (profile {t.name}); smoothed value {smoothed:.4f} over "
                    f"steps {max(0, int(cp.step - span))}-{step}",
                    step,
                    evidence={
                        "metric": cp.metric,
                        "target": cp.threshold,
                        "value": smoothed,
                        "point": cp.step,
                    },
                )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Only rows at or past a pending target point, and rows with scales while the starting scale is
        pending, need `observe`."""
        t = self.engine.targets
        pending = [cp.step for i, cp in enumerate(t.points) if i not in self.done]
        due = min(pending) if pending else None
        steps = batch.steps
        scales = (
            {
                i
                for names, idx in batch.groups.items()
                if any(n.startswith(SCALE_PREFIXES) for n in names)
                for i in idx
            }
            if t.logit_scale is not None and len(self.scale_done) < len(ev.HEADS)
            else set()
        )
        return [i for i in rows if (due is not None and steps[i] >= due) or i in scales]

    def _other_schedule(self, t: Any) -> str:
        """Why the run is not the profile's (its peak learning rate 10x away), or ""."""
        if t.learning_rate is None:
            return ""
        rates = [v for v in self.engine.tail(ev.LEARNING_RATE, 4096)[1] if math.isfinite(v) and v > 0]
        if not rates:
            return ""
        peak = max(rates)
        if max(peak / t.learning_rate, t.learning_rate / peak) < self.OTHER_SCHEDULE:
            return ""
        return (
            f"not judged: the run's learning rate peaks at {peak:.3g}, {peak / t.learning_rate:.3g}x the "
            f"{t.learning_rate:g} of the runs profile {t.name} was measured on (another schedule)"
        )

    def _scale(self, step: int, m: Row, t: Any) -> None:
        e = self.engine
        found: list = []
        for head, value in e.raw_scales(m).items():
            if head in self.scale_done:
                continue
            self.scale_done.add(head)
            e.judge("FGD604")
            if abs(value - t.logit_scale) > t.logit_scale_tolerance:
                message = (
                    f"{head} logit scale starts at {value:.6f}; target profile {t.name} expects "
                    f"{t.logit_scale:.4f} +- {t.logit_scale_tolerance:g}"
                )
                found.append((head, message, None, {"head": head, "raw": value, "target": t.logit_scale}))
        e.emit_heads("FGD604", found, step)

    def finish(self) -> None:
        e, t = self.engine, self.engine.targets
        if t is None or e.last_step is None:
            return
        for i, cp in enumerate(t.points):
            if i not in self.done and cp.step > e.last_step:
                e.extra_not_judged[f"FGD604@{cp.step}:{cp.metric}"] = (
                    f"FGD604: target {cp.describe()} not judged: the log ends at step {e.last_step}"
                )
