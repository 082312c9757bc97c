"""FGD5xx, optimizer, learning rates and gradients: docs, the static check of the planned learning rates and
clipping, and the runtime checks of gradient norms (spikes, a head's gradients dwarfing the towers', a norm
hundreds of times the clipping threshold on every logging step)."""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import cast

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import as_float
from fgdiag.rules.batch import Batch, finite_values
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import get, register, runtime_check, static_check

register(
    "FGD501",
    "learning-rate-or-gradient-imbalance",
    "warning",
    what="New heads on the towers' learning rate, learning rates that make the first steps explode, a "
    "gradient-norm spike, or a new head's gradients dwarfing the towers'.",
    why="A randomly initialised head trained like the pretrained towers can blow up the first steps.",
    example="grad_norm 10x the median of the previous 100 steps",
    fix="Give new heads their own learning rate (--head_learning_rate) and keep max_grad_norm set.",
)

register(
    "FGD502",
    "gradient-scale",
    "warning",
    what="The logged gradient norm stays at least 100x max_grad_norm (1.0, the Trainer's default, unless the "
    "log states it) on every logging step of the run (at least 5).",
    why="Clipped on every step, each update has the clip's length whatever the gradient: the step size no "
    "longer follows the loss. Norms hundreds of times the clip usually mean the loss was summed, not "
    "averaged, over the gradient-accumulation steps (the fgclip-vad fork's custom training_step), which "
    "multiplies every gradient by the accumulation count.",
    example="{'loss': 2.9457, 'grad_norm': 1624.0} on every logging step with max_grad_norm 1.0 and "
    "gradient_accumulation_steps 16",
    fix="Divide the loss by gradient_accumulation_steps before backward (or use the Trainer's "
    "training_step), then check the norms fall to the clip's order.",
)

HEAD_LR_RATIO = 10.0
GROUP = ev.GRAD_NORM_GROUP + "/"


# --- static ------------------------------------------------------------------------------------------------
@static_check("FGD501")
def learning_rates(facts: RunFacts) -> list[Finding]:
    """New heads on the towers' learning rate, a head lr >= 10x the towers', or no gradient clipping."""
    s = facts.settings
    if s is None or not s.new_heads:
        return []
    rule = get("FGD501")
    heads = ", ".join(s.new_heads)
    lr_field = s.fields["learning_rate"]
    lr = as_float(lr_field)
    lr_text = f"{lr:g}" if lr is not None else str(lr_field.value)  # unresolved `$LR` stays readable
    head = s.fields.get("head_learning_rate")
    head_lr = as_float(head) if head is not None else None
    out = []
    if s.dialect != "fgclip":
        out.append(
            rule.finding(
                f"new heads ({heads}) train at the towers' learning rate {lr_text}: the {s.dialect} trainer "
                "has no head learning rate (text_model_lr only splits off text_model.*)",
                location=lr_field.location,
            )
        )
    elif head_lr is None or head_lr == lr:
        unset = "head_learning_rate not set" if head is None else "head_learning_rate equals learning_rate"
        out.append(
            rule.finding(
                f"new heads ({heads}) train at the towers' learning rate {lr_text} ({unset})",
                location=(head or lr_field).location,
            )
        )
    elif lr and head_lr >= HEAD_LR_RATIO * lr:
        out.append(
            rule.finding(
                f"head_learning_rate {head_lr:g} is {head_lr / lr:.0f}x the towers' {lr:g}: a randomly "
                "initialised head at that rate can blow up the first steps",
                location=head.location if head is not None else lr_field.location,
            )
        )
    clip = s.fields["max_grad_norm"]
    if not (as_float(clip) or 0.0) > 0:
        out.append(
            rule.finding(
                f"no gradient clipping ({clip.why or clip.origin}: max_grad_norm {clip.value}) while new "
                f"heads ({heads}) start from random weights",
                location=clip.location,
            )
        )
    return out


# --- runtime ------------------------------------------------------------------------------------------------
@runtime_check
class GradientNorms(Check):
    """FGD501 on a log: a grad-norm spike over the running median, or a head group's norm over the towers'."""

    codes = ("FGD501",)
    reads = (ev.GRAD_NORM, GROUP)
    absent = "no grad_norm in this log"
    SPIKE_FACTOR = 10.0  # G: grad norm > 10x the running median
    SPIKE_HISTORY = 20
    SPIKE_MIN_HISTORY = 5
    HEAD_GRAD_RATIO = 100.0  # G: head group grad norm > 100x the towers'

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.history: deque[float] = deque()  # the last SPIKE_HISTORY logged grad norms (NaN included)
        self.ordered: list[float] = []  # their finite values, sorted: the running median in O(log n)
        self.last_step: int | None = None
        self.has_groups = False

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        gn = m.get(ev.GRAD_NORM)
        groups: dict[str, float] = {}
        if self.has_groups or any(k.startswith(GROUP) for k in m):
            self.has_groups = True
            groups = {
                k[len(GROUP) :]: v
                for k, v in m.items()
                if k.startswith(GROUP) and v is not None and math.isfinite(v)
            }
        if gn is None and not groups:
            return
        if gn is not None:
            self._spike(step, gn)
        heads = [v for k, v in groups.items() if k.startswith("heads")]
        towers = [v for k, v in groups.items() if k.startswith("towers")]
        if heads and towers and max(towers) > 0:
            e.judge("FGD501")
            ratio = max(heads) / max(towers)
            if e.gate("FGD501/ratio", ratio > self.HEAD_GRAD_RATIO):
                e.emit(
                    "FGD501",
                    f"head gradient norm {max(heads):.4g} is {ratio:.0f}x the towers' {max(towers):.4g} at "
                    f"step {step}",
                    step,
                    evidence={"ratio": ratio},
                )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """No group norms and every grad norm at most SPIKE_FACTOR x the smallest one around it (so below
        SPIKE_FACTOR x any running median): the history moves on in bulk, nothing fires."""
        e = self.engine
        if self.has_groups or e.is_open("FGD501/") or any(n.startswith(GROUP) for n in batch.names()):
            return None
        col_idx, vals = batch.column(ev.GRAD_NORM)
        if None in vals:
            steps = [batch.steps[i] for i, v in zip(col_idx, vals, strict=True) if v is not None]
            gns = [v for v in vals if v is not None]
        else:
            steps, gns = list(map(batch.steps.__getitem__, col_idx)), cast("list[float]", vals)
        if not gns:
            return []
        rising = batch.rises or sorted(set(steps)) == steps
        if not rising or (self.last_step is not None and steps[0] <= self.last_step):
            return None  # a step logged again replaces its value: row by row
        finite = finite_values(gns)
        if len(finite) < len(gns) or len(self.ordered) < len(self.history):
            return None  # NaN in the window: row by row
        floor = min(finite + self.ordered)
        if floor <= 0 or max(finite) > self.SPIKE_FACTOR * floor:
            return None
        # Row k (steps strictly rise) is judged when its step is past the start and min(history + k,
        # SPIKE_HISTORY) >= SPIKE_MIN_HISTORY: false up to one row, true from there on.
        count, history_cap, need = len(self.ordered), self.SPIKE_HISTORY, self.SPIKE_MIN_HISTORY
        full = max(0, need - count) if history_cap >= need else len(steps)
        first = max(bisect.bisect_right(steps, batch.start), full)
        if first < len(steps):
            e.judge("FGD501")
        if first > 0:
            e.why("FGD501", "too few grad-norm points after the trend start")
        self.history.extend(gns[-history_cap:])  # the oldest ones would be dropped below
        while len(self.history) > self.SPIKE_HISTORY:
            self.history.popleft()
        self.ordered = sorted(v for v in self.history if math.isfinite(v))
        self.last_step = steps[-1]
        return []

    def _spike(self, step: int, gn: float) -> None:
        """Against the median of the previous SPIKE_HISTORY logged values (a step logged again replaces its
        value), once trends are judged (`trend_start`)."""
        e = self.engine
        if step == self.last_step and self.history:
            self._drop(self.history.pop())
        if math.isfinite(gn):
            hist = self.ordered
            if step > e.start and len(hist) >= self.SPIKE_MIN_HISTORY:
                e.judge("FGD501")
                n = len(hist)
                med = hist[n // 2] if n % 2 else (hist[n // 2 - 1] + hist[n // 2]) / 2
                spike = med > 0 and gn > self.SPIKE_FACTOR * med
                if e.gate("FGD501/spike", spike):
                    e.emit(
                        "FGD501",
                        f"grad norm {gn:.4g} at step {step} is {gn / med:.0f}x the running median {med:.4g} "
                        f"of the previous {n} logging steps",
                        step,
                        evidence={"grad_norm": gn, "median": med},
                    )
            else:
                e.why("FGD501", "too few grad-norm points after the trend start")
        self.history.append(gn)
        if math.isfinite(gn):
            bisect.insort(self.ordered, gn)
        if len(self.history) > self.SPIKE_HISTORY:
            self._drop(self.history.popleft())
        self.last_step = step

    def _drop(self, value: float) -> None:
        if math.isfinite(value):
            del self.ordered[bisect.bisect_left(self.ordered, value)]


@runtime_check
class GradientScale(Check):
    """FGD502 at the end of the log: the smallest logged grad norm >= FACTOR x max_grad_norm."""

    codes = ("FGD502",)
    reads = (ev.GRAD_NORM,)
    FACTOR = 100.0
    MIN_POINTS = 5
    DEFAULT_CLIP = 1.0  # transformers.TrainingArguments.max_grad_norm

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.count = 0
        self.low = math.inf
        self.high = 0.0
        self.last_step: int | None = None
        # the highest step counted: a step logged again, also by a resumed run, counts once
        self.top = -math.inf

    def observe(self, step: int, m: Row) -> None:
        gn = m.get(ev.GRAD_NORM)
        if gn is None or not math.isfinite(gn):
            return
        if step > self.top:
            self.count, self.top = self.count + 1, step
        self.last_step = step
        self.low, self.high = min(self.low, gn), max(self.high, gn)

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Counts, minimum and maximum of the batch's finite norms (a step logged again: row by row)."""
        idx, vals = batch.column(ev.GRAD_NORM)
        steps = list(map(batch.steps.__getitem__, idx))
        values = finite_values(vals)
        if values is not vals:
            kept = [(s, v) for s, v in zip(steps, vals, strict=True) if v is not None and math.isfinite(v)]
            steps, values = [s for s, _ in kept], [v for _, v in kept]
        if values:  # `observe` counts a step once (a step logged again is the same step)
            if batch.rises and steps[0] > self.top:
                self.count, self.top = self.count + len(steps), steps[-1]
            else:
                for step in steps:
                    if step > self.top:
                        self.count, self.top = self.count + 1, step
            self.low, self.high = min(self.low, min(values)), max(self.high, max(values))
            self.last_step = steps[-1]
        return []

    def finish(self) -> None:
        e = self.engine
        if self.count < self.MIN_POINTS:
            if self.count:
                e.why("FGD502", f"fewer than {self.MIN_POINTS} logging steps with a grad_norm")
            return
        e.judge("FGD502")
        stated = e.run_info.get("max_grad_norm")
        clip = float(stated) if isinstance(stated, (int, float)) and stated > 0 else self.DEFAULT_CLIP
        if self.low < self.FACTOR * clip or not e.gate("FGD502", True, once=True):
            return
        where = (e.run_info.get("facts_from") or {}).get("max_grad_norm")
        said = (
            f"max_grad_norm {clip:g} ({where})"
            if stated
            else f"max_grad_norm {clip:g} (the Trainer's default)"
        )
        accum = e.run_info.get("gradient_accumulation_steps")
        hint = "the loss is probably summed, not averaged, over the gradient-accumulation steps"
        if isinstance(accum, (int, float)) and accum > 1:
            hint += f" (x{accum:g}: grad_norm / {accum:g} = {self.low / accum:.4g}-{self.high / accum:.4g})"
        e.emit(
            "FGD502",
            f"grad_norm {self.low:.4g}-{self.high:.4g} on all {self.count} logging steps, "
            f"{self.low / clip:.0f}-{self.high / clip:.0f}x {said}: every step is clipped; {hint}",
            self.last_step if self.last_step is not None else 0,
            evidence={"min": self.low, "max": self.high, "clip": clip, "points": self.count},
        )
