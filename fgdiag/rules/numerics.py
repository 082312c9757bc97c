"""FGD7xx, numerics: docs, the static check of fp16 at logit scale 100, the runtime checks for the first
non-finite loss part or gradient norm, a log that ends in a crash, and steps the fp16 loss scaler skipped."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts import LN_100, LN_100_TOLERANCE
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import as_bool, as_float
from fgdiag.rules.batch import Batch, all_finite
from fgdiag.rules.engine import Check, Row, RuleEngine
from fgdiag.rules.registry import get, register, runtime_check, static_check

register(
    "FGD701",
    "non-finite-values",
    "error",
    what="A non-finite loss part or gradient norm (the first step is reported), or fp16 with logit scale "
    "100.",
    why="transformers filters NaN losses out of its logs by default; fp16 overflows at scale 100.",
    example="{'loss': 0.0, 'grad_norm': nan}",
    fix="Use bf16 or fp32; find the first non-finite step and the loss part that produced it.",
)

register(
    "FGD702",
    "run-ended-in-crash",
    "error",
    what="The log ends in a crash: a traceback, CUDA out of memory, a kill signal or a non-zero exit status "
    "after the last training line. A crash followed by a run that trains on (a retry in the same log) is "
    "not this finding: the summary says `recovered`.",
    why="The run did not finish: its checkpoints and metrics stop there, and a CI gate on `watch --once` "
    "must fail.",
    example="torch.OutOfMemoryError: CUDA out of memory ... at step 318 of 1000, then the launcher's "
    "ChildFailedError",
    fix="Read the crash message (the first one is the cause); for out-of-memory lower the batch per device "
    "and raise the accumulation, or turn on gradient checkpointing; resume from the last checkpoint.",
)
register(
    "FGD703",
    "loss-scaler-skipping-steps",
    "warning",
    what="The fp16 loss scaler skipped more than 5 % of the optimizer steps (gradient overflow, `OVERFLOW! "
    "... Skipping step`, DeepSpeed's `skipped=S`), beyond the first handful while the scale calibrates.",
    why="A skipped step applies no update: at 20 % skipped the run trains a fifth less than planned, and a "
    "scale pinned at its floor means the gradients overflow fp16 whatever the scale.",
    example="[Rank 0] step=500, skipped=104 (loss scale 256, its floor)",
    fix="Train in bf16 (or fp32); otherwise lower the learning rate, clip gradients, and check the logit "
    "scales (fp16 overflows at exp(logit) > 65504).",
)

WATCHED = frozenset((ev.LOSS, *ev.LOSS_PARTS, ev.GRAD_NORM))
WATCHED_PREFIXES = (ev.HEAD_LOSS + "/", ev.GRAD_NORM_GROUP + "/")


# --- static ------------------------------------------------------------------------------------------------
@static_check("FGD701")
def fp16_at_scale_100(facts: RunFacts) -> list[Finding]:
    """fp16 with a logit scale of 100 (fp16 overflows at exp(logit) > 65504 = e^11.09)."""
    s = facts.settings
    fp16 = s.fields.get("fp16") if s is not None else None
    if s is None or fp16 is None or not as_bool(fp16):
        return []
    high = [(label, value) for label, _, value in s.initial_scales() if value >= LN_100 - LN_100_TOLERANCE]
    clamp = as_float(s.clamp) if s.clamp is not None and s.clamp.value is not None else None
    if not high and clamp is not None and clamp >= LN_100 - LN_100_TOLERANCE:
        high = [("clamp", clamp)]
    if not high:
        return []
    shown = ", ".join(f"{label} {value:.4g}" for label, value in high)
    return [
        get("FGD701").finding(
            f"fp16 with logit scale 100 ({shown}): fp16 similarity logits overflow (max 65504 = e^11.09) and "
            "FG-CLIP is known to give NaN under fp16",
            location=fp16.location,
            evidence={"scales": dict(high)},
        )
    ]


# --- runtime ------------------------------------------------------------------------------------------------
@runtime_check
class NonFinite(Check):
    """FGD701 on a log: the first non-finite loss, loss part, head loss or gradient norm (once)."""

    codes = ("FGD701",)
    reads = (*sorted(WATCHED), *WATCHED_PREFIXES)
    absent = "no loss or grad_norm in this log"

    def observe(self, step: int, m: Row) -> None:
        e = self.engine
        e.judge("FGD701")
        bad = [
            n
            for n, v in m.items()
            if v is not None and not math.isfinite(v) and (n in WATCHED or n.startswith(WATCHED_PREFIXES))
        ]
        if e.gate("FGD701", bool(bad), once=True):
            e.emit(
                "FGD701",
                f"first non-finite value at step {step}: {', '.join(bad)} "
                f"({', '.join(str(m[n]) for n in bad)})",
                step,
                evidence={"metrics": bad},
            )

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Every routed row holds a watched metric (judged); only a non-finite value needs `observe`."""
        e = self.engine
        e.judge("FGD701")
        if e.is_open("FGD701"):
            return []  # reported once: nothing more can happen
        for name in batch.names():
            if (name in WATCHED or name.startswith(WATCHED_PREFIXES)) and not all_finite(
                batch.column(name)[1]
            ):
                return None
        return []


@runtime_check
class EndsInCrash(Check):
    """FGD702: a crash event with no training row after it when the log ends; a crash that rows follow is a
    recovery (kept in `engine.recoveries` for the summary)."""

    codes = ("FGD702",)

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.pending: dict[str, Any] | None = None

    def event(self, step: int, kind: str, data: Mapping[str, Any]) -> None:
        if kind in (ev.EVENT_CRASH, ev.EVENT_OOM):
            if self.pending is None:
                self.pending = {"step": step, "kind": kind, "message": str(data.get("message", ""))}
                self.every_row = True
                self.engine.reroute()
            self.engine.judge("FGD702")
        elif kind == ev.EVENT_TRAIN_END:
            self.engine.judge("FGD702")

    def observe(self, step: int, m: Row) -> None:
        crash = self.pending
        if crash is None or step == crash["step"]:
            return  # the row open when the crash came is not training after it
        what = "CUDA out of memory" if crash["kind"] == ev.EVENT_OOM else "a crash"
        self.engine.recoveries.append({"after": what, "step": crash["step"], "message": crash["message"]})
        self.pending = None
        self.every_row = False
        self.engine.reroute()

    def finish(self) -> None:
        crash = self.pending
        if crash is None:
            return
        what = "CUDA out of memory" if crash["kind"] == ev.EVENT_OOM else "a crash"
        if self.engine.gate("FGD702", True, once=True):
            self.engine.emit(
                "FGD702",
                f"the log ends in {what} at step {crash['step']} with no training after it: "
                f"{crash['message'][:300]}",
                crash["step"],
                evidence={"step": crash["step"], "kind": crash["kind"]},
            )


@runtime_check
class SkippedSteps(Check):
    """FGD703: skipped optimizer steps (cumulative `skipped_steps`) above 5 % of the steps, the first
    CALIBRATION ones excused."""

    codes = ("FGD703",)
    reads = (ev.SKIPPED_STEPS,)
    SHARE = 0.05
    CALIBRATION = 16  # halvings from DeepSpeed's initial scale 2^16 down to 1
    MIN_EXTRA = 5
    MIN_STEPS = 50

    def __init__(self, engine: RuleEngine) -> None:
        super().__init__(engine)
        self.base: float | None = None

    def observe(self, step: int, m: Row) -> None:
        skipped = m.get(ev.SKIPPED_STEPS)
        if skipped is None or not math.isfinite(skipped):
            return
        e = self.engine
        if self.base is None:
            self.base = min(skipped, self.CALIBRATION)
        extra = skipped - self.base
        if step < self.MIN_STEPS:
            e.why("FGD703", f"fewer than {self.MIN_STEPS} optimizer steps")
            return
        e.judge("FGD703")
        share = extra / step
        scale = m.get(ev.LOSS_SCALE)
        if e.gate("FGD703", extra >= self.MIN_EXTRA and share > self.SHARE, once=True):
            at = f"; loss scale {scale:g}" if scale is not None else ""
            e.emit(
                "FGD703",
                f"the fp16 loss scaler skipped {skipped:g} of {step} optimizer steps "
                f"({100 * share:.1f} % beyond "
                f"the first {self.base:g} while the scale calibrated){at}: those steps applied no update",
                step,
                evidence={"skipped": skipped, "steps": step, "share": share},
            )
