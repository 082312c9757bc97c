"""FGD2xx, the memory bank of region negatives: docs, static checks (the plan's activation step, the warm-up's
unit, the queue against the batch and the data, the fork's forward-pass counter in a checkpoint) and the
runtime check that the bank is on by the step it should be.

The seed's bank never switched on because nobody did the arithmetic: a warm-up of 400 forward passes at
gradient accumulation 8 is 50 optimizer steps, longer than the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts.plan import loss_floor
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import as_float, as_int
from fgdiag.rules.batch import Batch, finite_values
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import get, register, runtime_check, static_check
from fgdiag.rules.series import exp_or_inf, finite

register(
    "FGD201",
    "memory-bank-never-active",
    "error",
    what="The memory bank cannot activate within the planned run (warm-up >= planned optimizer steps), "
    "activates only in the last part of it, or is not active by the step the configuration implies.",
    why="The bank is what turns 4 in-batch candidates into 132; if it never switches on the region loss "
    "trains against almost no negatives.",
    example="memory_bank_warmup_steps=400 with 240 planned optimizer steps",
    fix="Count the warm-up in optimizer steps and keep it well inside the run (e.g. 5-10 % of the planned "
    "steps).",
)
register(
    "FGD202",
    "warmup-in-forward-passes",
    "warning",
    what="A memory-bank warm-up expressed in forward passes (micro-batches), as in the fgclip-vad fork.",
    why="With gradient accumulation G the bank switches on G times later than a step-based reading suggests.",
    example="training_steps >= 200 counted per forward, gradient_accumulation_steps 16 -> 12.5 optimizer "
    "steps",
    fix="Express the warm-up in optimizer steps (memory_bank_warmup_steps); fgclip counts optimizer steps.",
)
register(
    "FGD203",
    "queue-size-mismatch",
    "warning",
    what="Queue size against the batch: K so small that the bank adds nothing, so large that most entries "
    "are stale or duplicates, or a target below the floor the temperature allows for that K.",
    why="Chance level ln K and the loss floor depend on K; targets written for another K cannot be met.",
    example="memory_bank_size=4 with 16 regions per step",
    fix="Choose a queue several times the regions per optimizer step and below ~5 % of the data set.",
)

LATE_ACTIVATION = 0.8  # a bank switching on after 80 % of the run trains most steps without its negatives
QUEUE_DATA_SHARE = 0.05
FORK_WARMUP_FORWARDS = 200  # the fork switches the bank on at training_steps >= 200 (forward passes)
NO_DEADLINE = "no memory-bank warm-up in the run info and no target profile; pass --targets"


# --- static ------------------------------------------------------------------------------------------------
@static_check("FGD201", "FGD202")
def activation(facts: RunFacts) -> list[Finding]:
    """The bank cannot activate in time (FGD201), or its warm-up counts forward passes (FGD202)."""
    s, plan = facts.settings, facts.plan
    if s is None or plan is None or s.warmup is None:
        return []
    if not plan.memory_bank_size or plan.memory_bank_activation_step is None:
        return []
    out = []
    start, accum, total = (
        plan.memory_bank_activation_step,
        plan.gradient_accumulation_steps,
        plan.planned_optimizer_steps,
    )
    warmup = plan.memory_bank_warmup or 0.0
    if s.warmup_unit == "forward":
        out.append(
            get("FGD202").finding(
                f"memory-bank warm-up of {warmup:g} forward passes ({s.warmup.origin}): with "
                f"gradient_accumulation_steps = {accum} the bank activates at optimizer step {start:g}, not "
                f"{warmup:g}",
                location=s.warmup.location,
                evidence={"forward_passes": plan.memory_bank_warmup, "optimizer_step": start},
            )
        )
    rule = get("FGD201")
    if total is None:
        facts.notes.append(
            "planned optimizer steps unknown (no max_steps, and no readable data_path or "
            "num_train_samples): set one of them to check when the memory bank activates (FGD201)"
        )
    elif start >= total:
        out.append(
            rule.finding(
                f"memory bank never activates: its warm-up ends at optimizer step {start:g} but the run "
                f"plans {total} optimizer steps; the region loss trains against in-batch negatives only",
                location=s.warmup.location,
                evidence={"activation_step": start, "planned_steps": total},
            )
        )
        return out
    elif start > LATE_ACTIVATION * total:
        out.append(
            rule.finding(
                f"memory bank activates at optimizer step {start:g}, in the last "
                f"{100 * (1 - start / total):.0f} % of the {total}-step run",
                location=s.warmup.location,
                evidence={"activation_step": start, "planned_steps": total},
            )
        )
        return out
    if s.bank_active_by is not None and start > s.bank_active_by[0]:
        out.append(
            rule.finding(
                f"memory bank activates at optimizer step {start:g}, after step {s.bank_active_by[0]} by "
                f"which the target profile {s.bank_active_by[1]} expects it",
                location=s.warmup.location,
                evidence={"activation_step": start, "active_by": s.bank_active_by[0]},
            )
        )
    return out


@static_check("FGD203")
def queue(facts: RunFacts) -> list[Finding]:
    """Queue too small for the batch, too large for the data, or targets the temperature cannot meet."""
    s, plan = facts.settings, facts.plan
    if s is None or plan is None:
        return []
    rule, regions = get("FGD203"), facts.regions_in_data
    k = plan.memory_bank_candidates or 0
    where = s.bank_size.location if s.bank_size is not None else s.anchor
    out = []
    if k and k <= plan.regions_per_optimizer_step:
        out.append(
            rule.finding(
                f"memory bank of {k} entries <= {plan.regions_per_optimizer_step} regions per optimizer step "
                f"(batch {plan.per_device_train_batch_size} x {s.boxes_per_sample} boxes x accumulation "
                f"{plan.gradient_accumulation_steps} x world {plan.world_size}): the queue is overwritten "
                "every step and adds no older negatives",
                location=where,
                evidence={"queue": k},
            )
        )
    if k and regions and k > QUEUE_DATA_SHARE * regions:
        out.append(
            rule.finding(
                f"memory bank of {k} entries is {100 * k / regions:.0f} % of the ~{regions} regions in the "
                "data: the queue keeps copies of the positives' own regions and captions as negatives",
                location=where,
                evidence={"queue": k, "regions": regions},
            )
        )
    region = s.heads.get("logit_scale_finegrained")
    raw = as_float(region) if region is not None else None
    if raw is not None and s.clamp is not None and s.clamp.value is not None:
        raw = min(raw, as_float(s.clamp) or raw)
    for step, target, location in s.targets:
        active = k and (step is None or (plan.memory_bank_activation_step or 0) <= step)
        candidates = plan.regions_per_forward + (k if active else 0)
        chance = math.log(candidates) if candidates > 1 else 0.0
        at = f" at step {step}" if step is not None else ""
        if raw is not None and target < (floor := loss_floor(candidates, exp_or_inf(raw))):
            out.append(
                rule.finding(
                    f"region-loss target {target:g}{at} is below the floor {floor:.3f} that scale {raw:.4g} "
                    f"(exp {exp_or_inf(raw):.4g}) allows with {candidates} candidates "
                    "(ln(1 + (K-1) e^(-2s)))",
                    location=location,
                )
            )
        elif target >= chance:
            out.append(
                rule.finding(
                    f"region-loss target {target:g}{at} is at or above chance ln {candidates} = "
                    f"{chance:.3f}: a model that learned nothing meets it",
                    location=location,
                )
            )
    return out


@static_check("FGD202")
def forward_pass_counter(facts: RunFacts) -> list[Finding]:
    """The fork's `training_steps` buffer in a checkpoint: a warm-up counter in forward passes (latest
    one)."""
    counted = [c for c in facts.checkpoints if c.forward_passes is not None]
    if not counted:
        return []
    latest, s = counted[-1], facts.settings
    passes, step = latest.forward_passes or 0, latest.step
    accum = as_int(s.fields["gradient_accumulation_steps"]) if s is not None else None
    if step:
        ratio = passes / step
        per = f"{passes} forward passes at optimizer step {step} ({ratio:g} per step)"
    else:
        ratio = float(accum or 0)
        per = f"{passes} forward passes"
    warm = ""
    if ratio:
        warm = (
            f"; the fork's warm-up of {FORK_WARMUP_FORWARDS} forward passes is optimizer step "
            f"{FORK_WARMUP_FORWARDS / ratio:g}"
        )
    return [
        get("FGD202").finding(
            f"{latest.path.name} counts the bank warm-up in forward passes (training_steps buffer): "
            f"{per}{warm}",
            location=str(latest.path),
            evidence={"training_steps": passes, "step": step},
        )
    ]


# --- runtime ------------------------------------------------------------------------------------------------
@runtime_check
class BankActiveInTime(Check):
    """FGD201 on a log: the bank must be on by its warm-up (+ slack) or the target profile's deadline."""

    codes = ("FGD201",)
    reads = (ev.MB_SIZE, ev.MB_ACTIVE, ev.MB_FILL, ev.MB_ACTIVATED_STEP)
    every_row = True  # a deadline passes on rows that say nothing about the bank
    SLACK_STEPS = 2
    NAMES = (ev.MB_SIZE, ev.MB_ACTIVE, ev.MB_FILL, ev.MB_ACTIVATED_STEP)

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.active_step: int | None = None  # optimizer step the bank switched on (None: not yet seen on)
        self.off_step: int | None = None  # last logging step that saw it off
        self.seen = False  # the log has memory-bank lines
        self.configured = False  # the run has a bank (its run info or its lines say so)
        self.settled = False  # on in time: nothing left to judge
        self.ended = False  # the log showed the end of training

    def configure(self) -> None:
        self.settled = False  # the run info changed: judge again
        size = self.engine.run_info.get("memory_bank_size")
        self.configured = (finite(size) and size > 0) or self.seen
        if finite(size) and size == 0:
            self.configured = False
        if not self.configured:
            self.engine.why(
                "FGD201", "no memory-bank lines in this log and no memory_bank_size in its run info"
            )

    def event(self, step: int, kind: str, data: Mapping[str, Any]) -> None:
        if kind == ev.EVENT_MB_ENABLED:
            self._seen()
            if self.active_step is None:
                self.active_step = int(step)
        elif kind == ev.EVENT_TRAIN_END:
            self.ended = True

    def finish(self) -> None:
        """A run that ended with its bank never on: whatever the warm-up said, it trained without it."""
        e = self.engine
        last, planned = e.last_step, e.planned()
        over = self.ended or (planned is not None and last is not None and last >= planned)
        if not self.configured or self.active_step is not None or last is None or e.is_open("FGD201"):
            return
        if not over:
            e.why("FGD201", "the log ends before the run does (no end of training)")
            return
        e.judge("FGD201")
        if e.gate("FGD201/end", True, once=True):
            e.emit(
                "FGD201",
                f"memory bank never switched on in this run (to step {last}, "
                f"{'the end of training' if self.ended else 'the planned steps'}): the region loss trained "
                "against in-batch negatives only",
                last,
                evidence={"last_step": last, "planned": planned},
            )

    def _seen(self) -> None:
        if not self.seen:
            self.seen = True
            self.configure()

    def observe(self, step: int, m: Row) -> None:
        if self.settled:
            return
        self._track(step, m)
        if self.configured:
            self._judge(step)

    def _track(self, step: int, m: Row) -> None:
        """The bank's state as the log shows it: seen at all, switched on (when), last seen off."""
        if m.get(ev.MB_SIZE) or m.get(ev.MB_ACTIVE) is not None or m.get(ev.MB_FILL) is not None:
            self._seen()
        active = m.get(ev.MB_ACTIVE)
        if finite(active) and self.active_step is None:
            if (
                active > 0
            ):  # switched on after the last logging step that saw it off (or before the log began)
                activated = m.get(ev.MB_ACTIVATED_STEP)
                if finite(activated) and activated >= 0:
                    self.active_step = int(activated)
                else:
                    self.active_step = self.off_step + 1 if self.off_step is not None else 0
            else:
                self.off_step = step

    def _deadline(self) -> tuple[int, str] | None:
        """(the optimizer step by which the bank must be on, why), or None when the run info cannot say."""
        targets, warm = self.engine.targets, self.engine.run_info.get("memory_bank_warmup_steps")
        if finite(warm):
            return int(warm) + self.SLACK_STEPS, f"warm-up {int(warm)} + slack"
        if targets is not None and targets.memory_bank_active_by is not None:
            return targets.memory_bank_active_by, f"target profile {targets.name}"
        return None

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Settled in bulk while the bank's state cannot change the verdict: on in time, no deadline known,
        the deadline not reached, or the late episode already reported and the bank still off."""
        e = self.engine
        if self.settled:
            return []
        if any(name in names for names in batch.groups for name in self.NAMES):
            if not self.configured:
                return None  # the bank shows up in this batch: judged from that row on
            self.seen = True
            if self.active_step is None:
                values = finite_values(batch.any_order(ev.MB_ACTIVE))
                if values and max(values) > 0:
                    return None  # it switches on in this batch
                act_idx, act_vals = batch.column(ev.MB_ACTIVE)
                for j in range(len(act_vals) - 1, -1, -1):  # the last row that saw it off
                    if finite(act_vals[j]):
                        self.off_step = batch.steps[act_idx[j]]
                        break
        deadline = self._deadline()
        if not self.configured:
            return []
        if deadline is None:
            e.why("FGD201", NO_DEADLINE)
            return []
        expected, warm, planned = deadline[0], e.run_info.get("memory_bank_warmup_steps"), e.planned()
        never = finite(warm) and planned and int(warm) >= planned and self.active_step is None
        if self.active_step is not None and self.active_step <= expected:
            return None  # on in time: the next row settles it
        if never or max(batch.steps[i] for i in rows) > expected:
            if not e.is_open("FGD201"):
                return None
            e.judge("FGD201")
            return []
        e.why("FGD201", f"the log ends before step {expected}")
        return []

    def _judge(self, step: int) -> None:
        e, warm, deadline = (
            self.engine,
            self.engine.run_info.get("memory_bank_warmup_steps"),
            self._deadline(),
        )
        if deadline is None:
            e.why("FGD201", NO_DEADLINE)
            return
        expected, why = deadline
        planned = e.planned()
        if finite(warm) and planned and int(warm) >= planned and self.active_step is None:
            e.judge("FGD201")
            if e.gate("FGD201", True, once=True):
                e.emit(
                    "FGD201",
                    f"memory bank cannot activate within the planned run: warm-up {int(warm)} optimizer "
                    f"steps >= {planned} planned",
                    step,
                    evidence={"warmup": int(warm), "planned": planned},
                )
            return
        if step <= expected and self.active_step is None:
            e.why("FGD201", f"the log ends before step {expected}")
            return
        e.judge("FGD201")
        late = self.active_step is None or self.active_step > expected
        if e.gate("FGD201", late) and late:
            seen = (
                f"not active at step {step}"
                if self.active_step is None
                else f"switched on only after step {self.active_step - 1}"
            )
            e.emit(
                "FGD201",
                f"memory bank {seen}; expected by step {expected} ({why})",
                step,
                evidence={"expected": expected, "activated": self.active_step},
            )
        if not late:
            e.close("FGD201")
            self.settled = True  # on in time, and the activation step never changes again


@runtime_check
class BankClock(Check):
    """FGD201: the bank's own optimizer-step clock stays put while the run's steps go on (a Trainer without
    FGCLIPCallback: nothing calls `optimizer_step_completed`, so the warm-up never ends)."""

    codes = ("FGD201",)
    reads = (ev.MB_OPTIMIZER_STEPS,)
    MIN_STEPS = 5  # optimizer steps the run must have moved on

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.first: tuple[int, float] | None = None
        self.done = False

    def observe(self, step: int, m: Row) -> None:
        clock = m.get(ev.MB_OPTIMIZER_STEPS)
        if self.done or not finite(clock):
            return
        if self.first is None:
            self.first = (step, clock)
            return
        e, (since, at) = self.engine, self.first
        if clock != at:
            self.done = True  # the clock moves: FGCLIPCallback (or an equivalent) is attached
            return
        if step - since < self.MIN_STEPS:
            return
        e.judge("FGD201")
        self.done = True
        if e.gate("FGD201/clock", True, once=True):
            e.emit(
                "FGD201",
                f"the memory bank's optimizer-step clock stays at {at:g} while the run went from step "
                f"{since} to {step}: no FGCLIPCallback attached (a stock Trainer without "
                "FGCLIPCallback.attach(trainer) never advances it), so the bank's warm-up never ends and it "
                "never switches on",
                step,
                evidence={"clock": at, "from": since, "to": step},
            )
