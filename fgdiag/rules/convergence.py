"""FGD6xx, loss trends, chance level and targets: docs and the runtime checks (region loss at or above chance
ln K over a window, embedding collapse, the target profile's points).

Chance is ln K_t with K_t the candidates of each logging step: K changes when the memory bank switches on,
so a fixed ln K would call a healthy run "at chance" before the bank and "learning" after it.
"""

from __future__ import annotations

import math
from operator import gt, truediv
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import REGION
from fgdiag.rules.batch import Batch, finite_values
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.series import SERIES_CAP, finite

register(
    "FGD601",
    "region-loss-at-chance",
    "error",
    what="The region loss stays within 2 % of chance level ln K for a window after the first steps.",
    why="At chance the region head learns nothing; K changes when the bank activates, so the line is ln K_t.",
    example="region_loss 1.386 for 200 steps with K = 4",
    fix="Check the region scale (FGD101), boxes (FGD301) and pairing of boxes and captions.",
)
register(
    "FGD602",
    "region-loss-above-chance",
    "error",
    what="The region loss sits above chance level ln K for a window.",
    why="Above chance means the targets point to the wrong column (misaligned labels) or negatives are "
    "duplicates of the positive.",
    example="region_loss 5.1 with K = 132 (ln K = 4.88)",
    fix="Check the pairing of boxes and captions and mask duplicate captions in the queue.",
)
register(
    "FGD603",
    "embedding-collapse",
    "warning",
    what="All pairs sit at nearly the same cosine (narrow cosine spread) or logits are nearly constant per "
    "row.",
    why="Collapsed embeddings carry no information and the loss cannot go below chance.",
    example="cosine std 0.002 across the logits matrix",
    fix="Lower the learning rate, check the temperature and that features are not detached.",
)
register(
    "FGD604",
    "target-missed",
    "error",
    what="A point of the target profile (region loss below X at step N) was missed.",
    why="The profile is what a healthy run reaches with margin; missing it means the run is off track.",
    example="ucf profile: region loss < 1.0 @ 50, seen 1.38",
    fix="Look at the other findings at that step; compare with fgdiag run --compare seed.",
)

REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, REGION)
WEIGHTED_REGION_LOSS = "region_loss"
REGION_CHANCE = ev.head_metric(ev.CHANCE, REGION)
REGION_K = ev.head_metric(ev.CANDIDATES, REGION)
SCALE_PREFIXES = (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/")


@runtime_check
class RegionLossVsChance(Check):
    """FGD601 (within 2 % of chance ln K_t over a window) and FGD602 (above chance on most of a window)."""

    codes = ("FGD601", "FGD602")
    reads = (REGION_LOSS, WEIGHTED_REGION_LOSS)
    CHANCE_REL_TOL = 0.02  # A1: |loss - ln K| < 2 % ln K
    ABOVE_MARGIN = 0.1  # A2: loss > ln K + 0.1
    ABOVE_SHARE = 0.8

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        # the points of the rows with a region loss: step, unweighted region loss, ln K (parallel lists)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.chances: list[float] = []

    def _value(self, m: Row) -> tuple[float, float] | str | None:
        """(unweighted region loss, ln K) of a row; a string says why it cannot; None: a row to skip."""
        info = self.engine.run_info
        loss = m.get(REGION_LOSS)
        if loss is None:
            weighted, weight = m.get(WEIGHTED_REGION_LOSS), info.get("region_loss_weight")
            if weighted is None:
                return "no region head loss in this log"
            if not (finite(weight) and weight > 0):
                return "the log has only the weighted region_loss; pass the region_loss_weight run info"
            loss = weighted / weight
        chance = m.get(REGION_CHANCE)
        if not finite(chance):
            k = m.get(REGION_K)
            if not finite(k):
                k = info.get("candidates")
            if not finite(k):
                return "no candidate count in this log; pass --candidates"
            chance = math.log(k) if k > 1 else None
        if (
            chance is None or chance <= 0 or not math.isfinite(loss) or loss == 0.0
        ):  # 0.0: the fork's "no region"
            return None
        return loss, chance

    def _point(self, step: int, m: Row) -> str | None:
        """Record (step, region loss, ln K) of this row; returns why it cannot, if it cannot."""
        value = self._value(m)
        if not isinstance(value, tuple):
            return value
        loss, chance = value
        if self.steps and self.steps[-1] == step:
            self.losses[-1], self.chances[-1] = loss, chance
        else:
            self.steps.append(step)
            self.losses.append(loss)
            self.chances.append(chance)
            if len(self.steps) > 2 * SERIES_CAP:
                del self.steps[:SERIES_CAP], self.losses[:SERIES_CAP], self.chances[:SERIES_CAP]
        return None

    def _window(
        self, steps: list[int], losses: list[float], chances: list[float], n: int, w: int, start: int
    ) -> Any:
        """The trend window ending at point n: None when it holds fewer than w points after the trend start,
        else (at chance?, above chance?, mean loss, mean ln K, ratio, points above, first step, last step)."""
        a = max(0, n - w)
        sel_steps, sel_l, sel_c = steps[a:n], losses[a:n], chances[a:n]
        if sel_steps and min(sel_steps) <= start:
            keep = [j for j, s in enumerate(sel_steps) if s > start]
            sel_steps = [sel_steps[j] for j in keep]
            sel_l, sel_c = [sel_l[j] for j in keep], [sel_c[j] for j in keep]
        if len(sel_steps) < w:
            return None
        margin = self.ABOVE_MARGIN
        ratio = sum(map(truediv, sel_l, sel_c)) / w
        mean_loss, mean_c = sum(sel_l) / w, sum(sel_c) / w
        above = sum(map(gt, sel_l, [c + margin for c in sel_c]))
        at_chance = abs(ratio - 1.0) < self.CHANCE_REL_TOL
        is_above = mean_loss - mean_c > margin and above >= self.ABOVE_SHARE * w
        return at_chance, is_above, mean_loss, mean_c, ratio, above, sel_steps[0], sel_steps[-1]

    def _too_few(self, w: int) -> None:
        start = self.engine.trend_start()
        why = f"fewer than {w} logging points with a region loss after step {start} (trend start)"
        self.engine.why("FGD601", why)
        self.engine.why("FGD602", why)

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        reason = self._point(step, m)
        if reason:
            if not self.steps:  # other rows had what this one lacks
                e.why("FGD601", reason)
                e.why("FGD602", reason)
            return
        if not e.heavy:
            return
        w = e.window
        found = self._window(self.steps, self.losses, self.chances, len(self.steps), w, e.start)
        if found is None:
            self._too_few(w)
            return
        e.judge("FGD601", "FGD602")
        at_chance, is_above, mean_loss, mean_c, ratio, above, lo, hi = found
        if e.gate("FGD601", at_chance):
            e.emit(
                "FGD601",
                f"region loss {mean_loss:.4f} is within {abs(ratio - 1) * 100:.1f} % of chance ln K_t over "
                f"steps {lo}-{hi} (mean ln K {mean_c:.4f}, K ~ {math.exp(min(mean_c, 700.0)):.0f})",
                step,
                evidence={"loss": mean_loss, "chance": mean_c, "from": lo, "to": hi},
            )
        if e.gate("FGD602", is_above):
            e.emit(
                "FGD602",
                f"region loss {mean_loss:.4f} is above chance ln K_t by {mean_loss - mean_c:.2f} on {above} "
                f"of {w} logging steps {lo}-{hi} (mean ln K {mean_c:.4f})",
                step,
                evidence={"loss": mean_loss, "chance": mean_c, "from": lo, "to": hi},
            )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Steps rising: the rows' points go in whole and the windows due on heavy rows are computed here;
        only a window that would fire (or an open episode) sends the batch to `observe`."""
        e = self.engine
        if e.is_open("FGD601") or e.is_open("FGD602"):
            return None
        steps = [batch.steps[i] for i in rows]
        if sorted(set(steps)) != steps or (self.steps and steps[0] <= self.steps[-1]):
            return None
        all_steps, all_l, all_c = list(self.steps), list(self.losses), list(self.chances)
        heavy, windows, start, value = batch.heavy, batch.windows, batch.start, self._value
        judged = False
        reason: str | None = None
        too_few: int | None = None
        for j, i in enumerate(rows):
            point = value(batch.rows[i][1])
            if isinstance(point, tuple):
                all_steps.append(steps[j])
                all_l.append(point[0])
                all_c.append(point[1])
            elif point is not None:
                if not all_steps:
                    reason = point
                continue
            if not heavy[i]:
                continue
            found = self._window(all_steps, all_l, all_c, len(all_steps), windows[i], start)
            if found is None:
                too_few, reason = windows[i], None
                continue
            if found[0] or found[1]:
                return None
            judged, too_few, reason = True, None, None
        cut = max(0, len(all_steps) - SERIES_CAP) if len(all_steps) > 2 * SERIES_CAP else 0
        self.steps, self.losses, self.chances = all_steps[cut:], all_l[cut:], all_c[cut:]
        if judged:
            e.judge("FGD601", "FGD602")
        if too_few is not None:
            self._too_few(too_few)
        if reason is not None:
            e.why("FGD601", reason)
            e.why("FGD602", reason)
        return []


@runtime_check
class Collapse(Check):
    """FGD603: a tiny cosine spread (or logits std) on consecutive points while the head stays at chance."""

    codes = ("FGD603",)
    reads = (ev.COS_STD + "/", ev.LOGITS_STD + "/")
    keeps = (ev.COS_STD + "/", ev.LOGITS_STD + "/", ev.LOSS_OVER_CHANCE + "/")
    absent = "no cos_std or logits_std in this log"
    COS_STD_MIN = 0.005  # collapse: cosine spread / logits std nearly zero
    LOGITS_STD_MIN = 0.05
    POINTS = 3
    CHANCE_SHARE = 0.9  # ...and only while the head's loss stays >= 90 % of ln K
    NAMES = tuple((h, b, ev.head_metric(b, h)) for h in ev.HEADS for b in (ev.COS_STD, ev.LOGITS_STD))

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        for head, base, name in self.NAMES:
            if m.get(name) is None:
                continue
            if step <= e.start:
                e.why("FGD603", "the log ends before trends are judged")
                continue
            e.judge("FGD603")
            limit = self.COS_STD_MIN if base == ev.COS_STD else self.LOGITS_STD_MIN
            pts = e.tail(name, self.POINTS)[1]
            tiny = len(pts) >= self.POINTS and all(math.isfinite(v) and v < limit for v in pts)
            # a tight spread is collapse only while the head stays at chance and stops improving over a whole
            # window; early in training (tiny models, small batches) spreads are tight but the loss falls
            w = max(self.POINTS, e.window)
            ratio = e.tail(ev.head_metric(ev.LOSS_OVER_CHANCE, head), w)[1]
            if tiny and ratio:
                recent = [v for v in ratio if math.isfinite(v)]
                tiny = (
                    len(recent) >= w
                    and min(recent) >= self.CHANCE_SHARE
                    and recent[0] - recent[-1] < 0.05 * recent[0]
                )
            if e.gate(f"FGD603/{name}", tiny):
                e.emit(
                    "FGD603",
                    f"{base} of the {head} head is {pts[-1]:.4g} (< {limit:g}) on the last {len(pts)} "
                    "logging steps: embeddings collapsed or logits constant",
                    step,
                    evidence={"metric": name, "value": pts[-1]},
                )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No spread below its limit in the batch: a collapse needs POINTS tiny points in a row."""
        e = self.engine
        if e.is_open("FGD603/"):
            return None
        present: list[int] = []
        for _head, base, name in self.NAMES:
            idx, vals = batch.column(name)
            values = finite_values(vals)
            limit = self.COS_STD_MIN if base == ev.COS_STD else self.LOGITS_STD_MIN
            if len(values) < len(vals) or (values and min(values) < limit):
                return None
            present += [i for i, v in zip(idx, vals, strict=True) if v is not None]
        steps, start = batch.steps, batch.start
        if any(steps[i] > start for i in present):
            e.judge("FGD603")
        if any(steps[i] <= start for i in present):
            e.why("FGD603", "the log ends before trends are judged")
        return []


@runtime_check
class Targets(Check):
    """FGD604: each point of the target profile, judged on the metric smoothed over the steps before it, and
    the profile's starting logit scale."""

    codes = ("FGD604",)
    SMOOTH_FRACTION = 0.1  # a target point is judged on the mean over the last 10 % of its step

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        t = engine.targets
        self.done: set[int] = set()
        self.scale_done: set[str] = set()
        self.keeps = tuple(cp.metric for cp in t.points) if t is not None else ()
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

    def _scale(self, step: int, m: Row, t: Any) -> None:
        e = self.engine
        for head, value in e.raw_scales(m).items():
            if head in self.scale_done:
                continue
            self.scale_done.add(head)
            e.judge("FGD604")
            if abs(value - t.logit_scale) > t.logit_scale_tolerance:
                e.emit(
                    "FGD604",
                    f"{head} logit scale starts at {value:.6f}; target profile {t.name} expects "
                    f"{t.logit_scale:.4f} +- {t.logit_scale_tolerance:g}",
                    step,
                    evidence={"head": head, "raw": value, "target": t.logit_scale},
                )

    def finish(self) -> None:
        e, t = self.engine, self.engine.targets
        if t is None or e.last_step is None:
            return
        for i, cp in enumerate(t.points):
            if i not in self.done and cp.step > e.last_step:
                e.extra_not_judged[f"FGD604@{cp.step}:{cp.metric}"] = (
                    f"FGD604: target {cp.describe()} not judged: the log ends at step {e.last_step}"
                )
