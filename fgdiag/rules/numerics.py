"""FGD7xx, numerics: docs, the static check of fp16 at logit scale 100 and the runtime check for the first
non-finite loss part or gradient norm."""

from __future__ import annotations

import math

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.facts import LN_100, LN_100_TOLERANCE
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import as_bool, as_float
from fgdiag.rules.batch import Batch, all_finite
from fgdiag.rules.engine import Check, Row
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
