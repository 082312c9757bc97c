"""FGD605 (the loss rises over the run) and FGD606 (no learning: the loss stays flat over the whole run), on
the log's main `loss`, judged once the log has ended, on the whole run.

Both compare levels, not single points: means over windows of logging points (the last window; rolling
windows before it), a noise level from the point-to-point differences (robust to spikes), and the warm-up
(trend start) left out. A rise that follows the memory bank switching on while the region head learns
(its loss well below ln K) is the task getting harder, not a failure, and is not reported.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from itertools import pairwise
from operator import le, lt
from typing import Any

from fgdiag import events as ev
from fgdiag.rules.batch import Batch, finite_values
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import register, runtime_check
from fgdiag.rules.series import finite, median

register(
    "FGD605",
    "loss-rising",
    "error",
    what="After the warm-up the loss rises and stays up: the mean of the last window of logging points is "
    "at least 20 % (and clearly more than the noise) above the lowest level the loss held before it, with "
    "every point of the last window above that level. Judged on the whole run when the log ends.",
    why="A loss that climbs back is diverging: gradients not divided by the accumulation (FGD502), a "
    "learning rate too high, targets that drift, or a head at chance whose K grows with the memory bank.",
    example="{'loss': 0.64} at step 20 ... {'loss': 2.9} at step 400",
    fix="Lower the learning rate, divide the loss by the gradient accumulation, look at the heads at chance "
    "(FGD601) and at gradient norms (FGD501, FGD502).",
)
register(
    "FGD606",
    "no-learning",
    "error",
    what="The loss stays flat over the whole run, from its first logging steps to its last (at least 5 "
    "points after the warm-up): the last window's mean less than 5 % below the first one's, and every "
    "rolling window within 10 % of the run's level, while above a converged floor (0.1 nats).",
    why="A loss that never moves means no update reaches the weights: learning rate 0, frozen or detached "
    "parameters, an optimizer over the wrong parameters, or a loss at chance from the start.",
    example="- loss: 1.911 at step 10 ... - loss: 1.910 at step 600 (lr 2e-5)",
    fix="Check the learning rate schedule, requires_grad and the optimizer's parameter groups; compare with "
    "chance ln K (FGD601).",
)

RISE = 0.2  # the last window >= 20 % above the lowest earlier level...
MIN_RISE = 0.05  # ...and at least 0.05 nats
NOISE_SIGMAS = 3.0  # ...and 3 standard errors above it
FLAT = 0.05  # the loss fell by less than 5 % from the start, every window within 10 % of the run's level
FLOOR = 0.1  # a loss below 0.1 nats is converged, not stuck
MIN_POINTS = 5
LEARNING = 0.9  # a region loss below 90 % of ln K is learning
CAP = 8192
REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, "region")
REGION_CHANCE = ev.head_metric(ev.CHANCE, "region")


def rolling_means(values: list[float], w: int) -> list[float]:
    """Means of every run of `w` consecutive values."""
    if len(values) < w:
        return []
    total = sum(values[:w])
    out = [total / w]
    for i in range(w, len(values)):
        total += values[i] - values[i - w]
        out.append(total / w)
    return out


def noise(values: list[float]) -> float:
    """A robust standard deviation of one point around the curve: from the median absolute difference of
    consecutive points (a spike moves one difference, not the median)."""
    diffs = [abs(b - a) for a, b in pairwise(values)]
    return 1.4826 * median(diffs) / math.sqrt(2) if diffs else 0.0


@runtime_check
class LossProgress(Check):
    """FGD605 / FGD606 on the main loss, at the end of the log."""

    codes = ("FGD605", "FGD606")
    reads = (ev.LOSS, REGION_LOSS, ev.MB_ACTIVE, ev.LEARNING_RATE)
    absent = "no loss in this log"

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.steps: list[int] = []
        self.values: list[float] = []
        self.lr_zero = True  # every logged learning rate is 0
        self.lr_seen = False
        self.bank_on: int | None = None  # step the memory bank switched on
        self.region: list[tuple[int, float]] = []  # (step, region loss / ln K), recent points

    def event(self, step: int, kind: str, data: Mapping[str, Any]) -> None:
        if kind == ev.EVENT_MB_ENABLED and self.bank_on is None:
            self.bank_on = step

    def observe(self, step: int, m: Row) -> None:
        loss = m.get(ev.LOSS)
        active = m.get(ev.MB_ACTIVE)
        if active is not None and finite(active) and active > 0 and self.bank_on is None:
            self.bank_on = step
        lr = m.get(ev.LEARNING_RATE)
        if lr is not None:
            self.lr_seen = True
            self.lr_zero = self.lr_zero and lr == 0.0
        region, chance = m.get(REGION_LOSS), m.get(REGION_CHANCE)
        if region is not None and chance is not None and finite(region) and finite(chance) and chance > 0:
            self.region.append((step, region / chance))
            if len(self.region) > 64:
                del self.region[:32]
        if loss is None or not finite(loss) or loss == 0.0:
            return
        if self.steps and self.steps[-1] == step:
            self.values[-1] = loss
            return
        self.steps.append(step)
        self.values.append(loss)
        if len(self.steps) > CAP:  # halve the resolution: the whole run's shape stays
            self.steps, self.values = self.steps[::2], self.values[::2]

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Rising steps: the batch's losses, learning rates, bank and region points go in whole (nothing is
        judged before the end of the log)."""
        steps = batch.steps
        idx, vals = batch.column(ev.LOSS)
        sel = list(map(steps.__getitem__, idx))
        if not (batch.rises or all(map(le, sel, sel[1:]))) or (
            sel and self.steps and sel[0] < self.steps[-1]
        ):
            return None  # a step going back (a restart): row by row
        if self.bank_on is None:
            act_idx, active = batch.column(ev.MB_ACTIVE)
            on = next(
                (steps[i] for i, a in zip(act_idx, active, strict=True) if a is not None and a > 0), None
            )
            self.bank_on = on
        reg_idx, regions = batch.column(REGION_LOSS)
        if reg_idx:
            c_idx, c_vals = batch.column(REGION_CHANCE)
            tail = bisect_left(c_idx, reg_idx[-64:][0])  # the last 64 region points are all that is kept
            chances = dict(zip(c_idx[tail:], c_vals[tail:], strict=True))
            for i, r in zip(reg_idx[-64:], regions[-64:], strict=True):
                c = chances.get(i)
                if r is not None and c is not None and 0 < c < math.inf and -math.inf < r < math.inf:
                    self.region.append((steps[i], r / c))
                    if len(self.region) > 64:
                        del self.region[:32]
        rates = batch.any_order(ev.LEARNING_RATE)
        if len(rates) > rates.count(None):
            self.lr_seen = True
            self.lr_zero = self.lr_zero and all(r == 0.0 for r in rates if r is not None)
        losses = finite_values(vals)  # the list itself when every value is finite (the common case)
        if losses is not vals or 0.0 in losses:  # drop what `observe` skips
            kept = [
                (s, v) for s, v in zip(sel, vals, strict=True) if v is not None and v != 0.0 and finite(v)
            ]
            sel, losses = [s for s, _ in kept], [v for _, v in kept]
        rises = batch.rises or all(map(lt, sel, sel[1:]))
        if (sel and not rises) or (sel and self.steps and sel[0] == self.steps[-1]):
            sel, losses = self._last_of_each_step(sel, losses)  # a step logged again: its newest value
        pos = 0
        while pos < len(sel):  # halved whenever CAP is passed, exactly as point by point
            room = CAP + 1 - len(self.steps)
            self.steps += sel[pos : pos + room]
            self.values += losses[pos : pos + room]
            pos += room
            if len(self.steps) > CAP:
                self.steps, self.values = self.steps[::2], self.values[::2]
        return []

    def _last_of_each_step(self, sel: list[int], vals: list[Any]) -> tuple[list[int], list[Any]]:
        """Consecutive points of one step as `observe` keeps them: the newest value, in place of a last
        point of that step already kept."""
        if sel and self.steps and sel[0] == self.steps[-1]:
            self.steps.pop()
            self.values.pop()
        keep = [i for i in range(len(sel)) if i + 1 == len(sel) or sel[i + 1] != sel[i]]
        return [sel[i] for i in keep], [vals[i] for i in keep]

    def finish(self) -> None:
        e = self.engine
        if not self.steps:
            return
        start = e.trend_start()
        post = [(s, v) for s, v in zip(self.steps, self.values, strict=True) if s > start]
        if len(post) < MIN_POINTS:
            reason = f"fewer than {MIN_POINTS} logging points with a loss after step {start} (warm-up)"
            e.why("FGD605", reason)
            e.why("FGD606", reason)
            return
        e.judge("FGD605")
        self._rising(post)
        self._flat(post, start)

    def _rising(self, post: list[tuple[int, float]]) -> None:
        e = self.engine
        values = [v for _, v in post]
        n = len(values)
        w = max(2, min(e.window_points(), n // 3))
        m = max(2, w // 2)
        last = values[-w:]
        earlier = rolling_means(values[:-w], m)
        if not earlier:
            return
        best = min(earlier)
        at = earlier.index(best)
        mean_last = sum(last) / w
        sigma = noise(values)
        margin = max(RISE * abs(best), MIN_RISE, NOISE_SIGMAS * sigma * (1 / math.sqrt(w) + 1 / math.sqrt(m)))
        rising = mean_last - best >= margin and min(last) > best
        if rising and self._harder_task(post[at][0]):
            return
        if e.gate("FGD605", rising):
            first = post[at][0]
            e.emit(
                "FGD605",
                f"loss rises: {best:.4g} around step {first} (mean of {m} logging steps) -> "
                f"{mean_last:.4g} over the last {w} logging steps {post[-w][0]}-{post[-1][0]} "
                f"(+{100 * (mean_last / best - 1):.0f} %, "
                f"noise {sigma:.2g} per point)",
                post[-1][0],
                evidence={"from": best, "to": mean_last, "best_step": first, "points": n, "window": w},
            )

    def _harder_task(self, best_step: int) -> bool:
        """The bank switched on after the best level and the region head learns now: K grew, the loss with
        it."""
        if self.bank_on is None or self.bank_on < best_step or not self.region:
            return False
        recent = [r for _, r in self.region[-MIN_POINTS:]]
        return sum(recent) / len(recent) < LEARNING

    def _flat(self, post: list[tuple[int, float]], start: int) -> None:
        e = self.engine
        interval = max(e.interval(), 1.0)
        if self.steps[0] > max(start, 2 * interval):
            e.why("FGD606", f"the log starts at step {self.steps[0]}, not at the start of the run")
            return
        e.judge("FGD606")
        values = self.values
        level = median(values)
        w = max(2, min(e.window_points(), len(values) // 4))
        means = rolling_means(values, w)
        early, late = means[0], means[-1]
        flat = (
            level > FLOOR
            and late >= (1 - FLAT) * early
            and all(abs(x - level) <= 2 * FLAT * level for x in means)
        )
        if e.gate("FGD606", flat):
            spread = max(abs(x - level) for x in means) / level
            lr = " with the learning rate at 0 on every logging step" if self.lr_seen and self.lr_zero else ""
            e.emit(
                "FGD606",
                f"loss flat at {level:.4g} (every {w}-point window within {100 * spread:.1f} %) over the "
                "whole "
                f"run, steps {self.steps[0]}-{self.steps[-1]} ({len(values)} logging steps){lr}: nothing is "
                "learnt",
                self.steps[-1],
                evidence={"level": level, "spread": spread, "points": len(values)},
            )
