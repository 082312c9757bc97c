"""FGD1xx, logit scales and temperatures: docs, static checks (config, model directories), the live check of
the optimizer at train begin, and the runtime checks over logged scales.

Thresholds cite shared/reference/failure-modes.md (B2 saturation, B3 frozen, B4 decay, B5 head gap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts import GLOBAL, HARDNEG, REGION, is_clip_from_scratch, is_ln100
from fgdiag.facts.run import RunFacts
from fgdiag.facts.settings import SCALE_LABELS
from fgdiag.facts.values import as_float
from fgdiag.rules.engine import Check, Row, finite
from fgdiag.rules.registry import get, live_check, register, runtime_check, static_check

register(
    "FGD101",
    "head-scale-at-clip-init",
    "error",
    what="A region or hard-negative logit scale initialised at CLIP's from-scratch ln(1/0.07) = 2.6592, or "
    "more "
    "than 1.0 apart (log space) from the global scale, while fine-tuning from a checkpoint at ln 100.",
    why="With scale exp(2.6592) = 14.3 the region logits span only +-14 while the global head runs at 100; "
    "the "
    "seed's region loss sat at chance for days because of exactly this.",
    example="FGCLIPConfig(finegrained_logit_scale_init=2.6592) with a CLIP checkpoint whose logit_scale is "
    "4.6052",
    fix="Initialise every head at the checkpoint's scale: finegrained_logit_scale_init = "
    "hardneg_logit_scale_init "
    "= 4.6052 (ln 100).",
)
register(
    "FGD102",
    "scale-unclamped-or-saturated",
    "warning",
    what="A logit scale initialised above the clamp (error), no clamp configured, or a scale sitting at the "
    "clamp "
    "while the loss is flat.",
    why="Without a clamp exp(scale) can pass 100 and destabilise training; at the clamp the temperature is "
    "frozen "
    "and a flat loss there means the scale is not the lever.",
    example="logit_scale_max = None (upstream FG-CLIP has no clamp)",
    fix="Set logit_scale_max = 4.6052 (ln 100) and initialise every head at or below it.",
)
register(
    "FGD103",
    "scale-decayed-or-frozen",
    "warning",
    what="A logit scale under weight decay, with requires_grad False, missing from the optimizer or present "
    "twice, "
    "or that has not moved at all after many optimizer steps below the clamp.",
    why="Decoupled weight decay pulls the raw scale towards 0 (temperature 1); a frozen scale never adapts.",
    example="AdamW(weight_decay=0.01) over named_parameters() including logit_scale_finegrained",
    fix="Put every logit scale in a no-decay group exactly once and keep it trainable (fgclip.train does "
    "this).",
)

HEAD_GAP = 1.0  # B5/FGD101: heads more than 1.0 apart in log space
CLAMP_TOLERANCE = 1e-3  # 4.6052 (ln 100 to 4 decimals) must not count as "above" a clamp at 4.605170
RAW = {h: ev.head_metric(ev.LOGIT_SCALE, h) for h in ev.HEADS}
RAW_EXP = {h: ev.head_metric(ev.LOGIT_SCALE_EXP, h) for h in ev.HEADS}
SCALE_READS = (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/")


def _exp(raw: float) -> str:
    return f"exp {math.exp(raw):.4g}"


# --- static ------------------------------------------------------------------------------------------------
@static_check("FGD101")
def head_scales(facts: RunFacts) -> list[Finding]:
    """A head initialised at CLIP's from-scratch scale, or far from the global one, when fine-tuning."""
    s = facts.settings
    src = s.source_scale if s is not None else None
    ref = as_float(src) if src is not None else None
    if s is None or ref is None or src is None:
        return []
    origin = s.source.value if s.source is not None else src.origin
    out = []
    for head, field in s.heads.items():
        value = as_float(field)
        if value is None:
            continue
        at_init = is_clip_from_scratch(value) and is_ln100(ref)
        if not at_init and abs(value - ref) <= HEAD_GAP:
            continue
        why = "CLIP's from-scratch ln(1/0.07)" if at_init else f"{abs(value - ref):.2f} apart in log space"
        why += f"; {field.origin}" if field.default else ""
        out.append(
            get("FGD101").finding(
                f"{SCALE_LABELS[head]} logit scale initialised at {value:.5g} ({_exp(value)}; {why}) while "
                f"fine-tuning from {origin} whose logit_scale is {ref:.5g} ({_exp(ref)}; {src.origin}): its "
                f"logits span only +-{math.exp(value):.3g} against +-{math.exp(ref):.3g} for the global head",
                location=field.location,
                evidence={"head": head, "init": value, "source_scale": ref},
            )
        )
    return out


@static_check("FGD101")
def source_scales(facts: RunFacts) -> list[Finding]:
    """A model directory whose own head scale sits at CLIP's init while its global one is at ln 100."""
    out = []
    for info in facts.models:
        glob = info.scales.get("logit_scale")
        for head in ("logit_scale_finegrained", "logit_scale_hardneg"):
            have = info.scales.get(head)
            if glob and have and is_ln100(glob.value) and is_clip_from_scratch(have.value):
                out.append(
                    get("FGD101").finding(
                        f"{have.key} = {have.value:.5g} (CLIP's from-scratch init) while logit_scale = "
                        f"{glob.value:.5g} (ln 100): loading this model brings the head-scale bug along",
                        location=str(info.path),
                        evidence={"head": head, "saved": have.value, "logit_scale": glob.value},
                    )
                )
    return out


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
                f"logit scales decayed: {s.decayed.value}; decoupled decay pulls the raw scale "
                "towards 0 (temperature 1)",
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
class ScaleAtInit(Check):
    """FGD101 on logged scales: a head at CLIP's init while the global head is at ln 100, or far apart."""

    codes = ("FGD101",)
    reads = SCALE_READS
    keeps = (RAW[GLOBAL],)
    absent = "no logit scale in this log"

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        raw = e.raw_scales(m)
        if not raw:
            return
        e.judge("FGD101")
        glob = raw.get(GLOBAL)
        if glob is None and RAW[GLOBAL] in e.series:
            glob = e.series[RAW[GLOBAL]].values[-1]
        for head in (REGION, HARDNEG):
            value = raw.get(head)
            if value is None:
                continue
            at_init = is_clip_from_scratch(value)
            message = severity = None
            if glob is not None and at_init and is_ln100(glob):
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) while the global "
                    f"scale is {glob:.4f} (ln 100): the {head} logits span only +-{math.exp(value):.1f}"
                )
            elif glob is not None and abs(value - glob) > HEAD_GAP:
                message = (
                    f"{head} logit scale {value:.4f} is {abs(value - glob):.2f} apart from the global scale "
                    f"{glob:.4f} in log space (exp {math.exp(value):.1f} vs {math.exp(glob):.1f})"
                )
            elif glob is None and at_init:
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) (exp "
                    f"{math.exp(value):.2f}); the global scale is not in this log, check it is not at ln 100"
                )
                severity = Severity.WARNING
            if e.gate(f"FGD101/{head}", message is not None) and message:
                e.emit(
                    "FGD101",
                    message,
                    step,
                    severity=severity,
                    evidence={"head": head, "raw": value, "global": glob},
                )


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
                    f"{clamp:.4f} (exp {math.exp(clamp):.2f}): the scale is not clamped",
                    step,
                    severity=Severity.ERROR,
                    evidence={"head": head, "raw": value, "clamp": clamp},
                )
            if step > e.start and e.heavy:
                self._saturated(step, head, clamp)

    def _saturated(self, step: int, head: str, clamp: float) -> None:
        """B2: judged over a long span (500 steps, or half of a shorter run): over a few dozen steps a noisy
        loss at the clamp looks flat in every healthy run."""
        e = self.engine
        planned = e.planned()
        span = min(self.SATURATED_STEPS, planned * 0.5) if planned else self.SATURATED_STEPS
        w = max(e.window, math.ceil(span / max(e.interval(), 1.0)))
        empty: list[float] = []
        raw_series = e.series.get(RAW[head])
        pts = raw_series.values[-w:] if raw_series is not None else empty
        if len(pts) < w:
            exp_series = e.series.get(RAW_EXP[head])
            pts = [math.log(v) for v in (exp_series.values[-w:] if exp_series else empty) if v > 0]
        loss = e.series.get(ev.head_metric(ev.HEAD_LOSS, head)) or e.series.get(ev.LOSS)
        if not pts or pts[-1] < clamp - self.CLAMP_TOL:
            e.gate(f"FGD102/saturated/{head}", False)
            return
        lvals = [v for v in loss.values[-w:] if math.isfinite(v)] if loss is not None else []
        at_clamp = clamp - self.CLAMP_TOL
        saturated = len(pts) >= w and sum(v >= at_clamp for v in pts) >= self.SATURATED_SHARE * len(pts)
        flat = False
        key = (head, e.start)
        start = self.start_loss.get(key)
        if start is None and loss is not None:
            start = next(
                (v for s, v in zip(loss.steps, loss.values, strict=True) if s > e.start and math.isfinite(v)),
                None,
            )
            if start is not None:
                self.start_loss[key] = start
        if len(lvals) >= max(4, w) and start is not None:
            half = len(lvals) // 2
            first, second = sum(lvals[:half]) / half, sum(lvals[half:]) / (len(lvals) - half)
            # flat, not converged: still above the floor and never 20 % below its value at the trend start
            flat = (
                first > self.FLAT_FLOOR
                and (first - second) < self.FLAT_REL * first
                and second > (1.0 - self.LEARNED_DROP) * start
            )
        if e.gate(f"FGD102/saturated/{head}", saturated and flat):
            e.emit(
                "FGD102",
                f"{head} logit scale sits at the clamp {clamp:.4f} on the last {len(pts)} logging steps "
                "while "
                f"its loss is flat ({lvals[0]:.4f} -> {lvals[-1]:.4f}): the temperature is frozen and not "
                "the "
                "lever",
                step,
                evidence={"head": head},
            )


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
        planned, clamp = e.planned(), e.clamp()
        need = min(self.FROZEN_STEPS, max(20, planned // 4)) if planned else self.FROZEN_STEPS
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
            frozen = head not in self.moved and first[1] < clamp - self.CLAMP_TOL and lr_pos
            if e.gate(f"FGD103/frozen/{head}", frozen, once=True):
                e.emit(
                    "FGD103",
                    f"{head} logit scale has not moved from {first[1]:.6f} in {step - first[0]} optimizer "
                    "steps "
                    "below the clamp with lr > 0: it is frozen, missing from the optimizer or stored in bf16",
                    step,
                    evidence={"head": head, "raw": first[1], "steps": step - first[0]},
                )
            if step <= e.start or not e.heavy or e.run_info.get("logit_scales_weight_decay") == 0:
                continue  # a scale the optimizer does not decay may fall: that is the gradient
            self._decay(step, head)

    def _decay(self, step: int, head: str) -> None:
        e = self.engine
        w, start = max(e.window, 10), e.start
        sr = e.series[RAW[head]]
        tail = [v for s, v in zip(sr.steps[-w:], sr.values[-w:], strict=True) if s > start]
        if len(tail) < w:
            return
        falls = sum(b < a for a, b in pairwise(tail))
        decaying = falls >= self.DECAY_SHARE * (len(tail) - 1) and tail[0] - tail[-1] >= self.DECAY_MIN_DROP
        if e.gate(f"FGD103/decay/{head}", decaying):
            e.emit(
                "FGD103",
                f"{head} logit scale falls steadily ({tail[0]:.4f} -> {tail[-1]:.4f} over the last "
                f"{len(tail)} "
                "logging steps): weight decay on the scale?",
                step,
                evidence={"head": head, "from": tail[0], "to": tail[-1]},
            )
