"""FGD103: a logit scale under weight decay, frozen, or missing from the optimizer: in the configuration, in
the optimizer when training starts (the callback), and in a log (never moving, or falling steadily)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from operator import lt
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts import is_ln100
from fgdiag.facts.run import RunFacts
from fgdiag.rules.batch import Batch, all_finite, finite_values
from fgdiag.rules.engine import Check, Row
from fgdiag.rules.registry import get, live_check, register, runtime_check, static_check
from fgdiag.rules.scales.names import RAW
from fgdiag.rules.series import finite

register(
    "FGD103",
    "scale-decayed-or-frozen",
    "warning",
    what="A logit scale under weight decay, with requires_grad False, missing from the optimizer or present "
    "twice, or that has not moved at all after many optimizer steps below the clamp.",
    why="Decoupled weight decay pulls the raw scale towards 0 (temperature 1); a frozen scale never adapts.",
    example="AdamW(weight_decay=0.01) over named_parameters() including logit_scale_finegrained",
    fix="Put every logit scale in a no-decay group exactly once and keep it trainable (fgclip.train does "
    "this).",
)


@static_check("FGD103")
def optimizer_config(facts: RunFacts) -> list[Finding]:
    """Scales under weight decay, frozen, or in no parameter group (as the configuration says)."""
    s = facts.settings
    if s is None:
        return []
    rule, out = get("FGD103"), []
    if s.decayed is not None:
        out.append(
            rule.finding(
                f"logit scales decayed: {s.decayed.value}; decoupled decay pulls the raw scale towards 0 "
                "(temperature 1)",
                location=s.decayed.location,
            )
        )
    if s.frozen is not None:
        out.append(
            rule.finding(
                f"logit scales frozen or missing from the optimizer: {s.frozen.value}",
                location=s.frozen.location,
            )
        )
    return out


# --- live (callback, once at train begin) -------------------------------------------------------------------
@live_check("FGD103")
def optimizer_live(scales: Mapping[str, tuple[str, Any]], groups: list[dict[str, Any]]) -> list[Finding]:
    """Scales trainable, in the optimizer exactly once, free of weight decay."""
    rule, out = get("FGD103"), []
    for head, (pname, param) in scales.items():
        holding = [g for g in groups if any(p is param for p in g["params"])]
        count = sum(sum(1 for p in g["params"] if p is param) for g in holding)
        if not param.requires_grad:
            message = f"{pname} ({head}) has requires_grad=False: frozen"
        elif count != 1:
            message = f"{pname} ({head}) appears {count} times in the optimizer"
        elif any(g.get("weight_decay", 0) > 0 for g in holding):
            message = (
                f"{pname} ({head}) is under weight decay {max(g.get('weight_decay', 0) for g in holding)}"
            )
        else:
            continue
        out.append(rule.finding(message, location=pname, step=0))
    return out


# --- runtime ------------------------------------------------------------------------------------------------


@runtime_check
class ScaleFrozenOrDecaying(Check):
    """FGD103 on logged scales: a scale that never moves below the clamp with lr > 0, or falls steadily."""

    codes = ("FGD103",)
    reads = (ev.LOGIT_SCALE + "/", ev.LEARNING_RATE)
    keeps = (ev.LOGIT_SCALE + "/",)
    FROZEN_STEPS = 100  # B3: unchanged after 100 optimizer steps (a quarter of shorter runs)
    FROZEN_TOL = 1e-6
    CLAMP_TOL = 1e-3
    DECAY_SHARE = 0.9  # B4: the scale falls on >= 90 % of consecutive points
    DECAY_MIN_DROP = 0.01

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.first: dict[str, tuple[int, float]] = {}
        self.moved: set[str] = set()
        self.lr_positive = False
        self.lr_seen = False

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        lr = m.get(ev.LEARNING_RATE)
        if lr is not None:
            self.lr_seen = True
            if finite(lr) and lr > 0:
                self.lr_positive = True
        clamp, need = e.clamp(), self._need()
        found: list = []
        for head in ev.HEADS:
            value = m.get(RAW[head])
            if value is None or not math.isfinite(value):
                continue
            first = self.first.setdefault(head, (step, value))
            if abs(value - first[1]) >= self.FROZEN_TOL:
                self.moved.add(head)
            if step - first[0] < need:
                e.why("FGD103", f"the logit scales span fewer than {need} steps")
                continue
            e.judge("FGD103")
            lr_pos = self.lr_positive or not self.lr_seen
            frozen = head not in self.moved and not self._at_clamp(first[1], clamp) and lr_pos
            if e.gate(f"FGD103/frozen/{head}", frozen, once=True):
                message = (
                    f"{head} logit scale has not moved from {first[1]:.6f} in {step - first[0]} optimizer "
                    "steps below the clamp with lr > 0: it is frozen, missing from the optimizer or stored "
                    "in bf16"
                )
                found.append((head, message, None, {"head": head, "raw": first[1], "steps": step - first[0]}))
            if step <= e.start or not e.heavy or e.run_info.get("logit_scales_weight_decay") == 0:
                continue  # a scale the optimizer does not decay may fall: that is the gradient
            self._decay(step, head)
        e.emit_heads("FGD103", found, step)

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Settled in bulk when no head can be frozen in this batch (it moved before, sits at the clamp or
        was reported); the rows where the decay is due (heavy, after the trend start) still need `observe`."""
        e = self.engine
        clamp, need, steps = e.clamp(), self._need(), batch.steps
        lives: dict[str, tuple[list[int], list[float]]] = {}
        for head in ev.HEADS:
            live = batch.finite_points(RAW[head])
            if not live[0]:
                continue
            lives[head] = live
            first = self.first.get(head) or (live[0][0], live[1][0])
            if head in self.moved or self._at_clamp(first[1], clamp) or e.is_open(f"FGD103/frozen/{head}"):
                continue
            tol = self.FROZEN_TOL
            moves = next((j for j, v in enumerate(live[1]) if abs(v - first[1]) >= tol), len(live[1]))
            if any(s - first[0] >= need for s in live[0][:moves]):
                return None  # it may be frozen long enough in this batch: row by row
        lrs = batch.any_order(ev.LEARNING_RATE)
        if len(lrs) > lrs.count(None):
            self.lr_seen = True
            if not self.lr_positive:
                rates = finite_values(lrs)
                self.lr_positive = bool(rates) and max(rates) > 0
        judged = early = False
        for head, (live_steps, live_vals) in lives.items():
            first = self.first.setdefault(head, (live_steps[0], live_vals[0]))
            spread = max(max(live_vals) - first[1], first[1] - min(live_vals))
            if head not in self.moved and spread >= self.FROZEN_TOL:
                self.moved.add(head)
            judged = judged or max(live_steps) - first[0] >= need
            early = early or min(live_steps) - first[0] < need
        if judged:
            e.judge("FGD103")
        if early:
            e.why("FGD103", f"the logit scales span fewer than {need} steps")
        if not lives or e.run_info.get("logit_scales_weight_decay") == 0:
            return []
        heavy, start = batch.heavy, batch.start
        due = [i for i in rows if heavy[i] and steps[i] > start]
        return [] if due and self._level(batch, due, lives) else due

    def _level(self, batch: Batch, due: list[int], lives: dict[str, Any]) -> bool:
        """No scale falls by DECAY_MIN_DROP anywhere in the look-back of the due rows (every value finite,
        their spread below it) and no decay episode is open: each due row's `_decay` would do nothing."""
        e = self.engine
        reach = max(max(map(batch.windows.__getitem__, due)), 10)
        for head in lives:
            column = batch.column(RAW[head])[1]
            seen = e.tail(RAW[head], reach)[1] + [v for v in column if v is not None]
            if e.is_open(f"FGD103/decay/{head}") or not all_finite(seen):
                return False
            if not max(seen) - min(seen) < self.DECAY_MIN_DROP:  # a drop is at most the spread
                return False
        return True

    def _at_clamp(self, value: float, clamp: float) -> bool:
        """At the clamp, or at ln 100 as bf16 stores it (4.59375) when the clamp is ln 100: a bf16 scale there
        is where it should be, and too coarse for small updates to move it (the fork's heads)."""
        return value >= clamp - self.CLAMP_TOL or (is_ln100(clamp) and is_ln100(value))

    def _need(self) -> int:
        """Optimizer steps a scale must stay put to count as frozen: 100, or a quarter of a shorter run."""
        planned = self.engine.planned()
        return min(self.FROZEN_STEPS, max(20, planned // 4)) if planned else self.FROZEN_STEPS

    def _decay(self, step: int, head: str) -> None:
        e = self.engine
        w, start = max(e.window, 10), e.start
        steps, tail = e.tail(RAW[head], w)
        if steps and min(steps) <= start:
            tail = [v for s, v in zip(steps, tail, strict=True) if s > start]
        if len(tail) < w:
            return
        # the drop first: a scale that did not fall over the window needs no count (the common case)
        decaying = tail[0] - tail[-1] >= self.DECAY_MIN_DROP and sum(
            map(lt, tail[1:], tail[:-1])
        ) >= self.DECAY_SHARE * (len(tail) - 1)
        if e.gate(f"FGD103/decay/{head}", decaying):
            e.emit(
                "FGD103",
                f"{head} logit scale falls steadily ({tail[0]:.4f} -> {tail[-1]:.4f} over the last "
                f"{len(tail)} logging steps): weight decay on the scale?",
                step,
                evidence={"head": head, "from": tail[0], "to": tail[-1]},
            )
