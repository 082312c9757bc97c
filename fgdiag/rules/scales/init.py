"""FGD101: a region or hard-negative head at CLIP's from-scratch scale, or far from the global head, in the
configuration, in a model directory, or in a log."""

from __future__ import annotations

from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts import (
    CLIP_FROM_SCRATCH_SCALE,
    CLIP_FROM_SCRATCH_TOLERANCE,
    GLOBAL,
    HARDNEG,
    REGION,
    is_clip_from_scratch,
    is_ln100,
)
from fgdiag.facts.run import RunFacts
from fgdiag.facts.settings import SCALE_LABELS
from fgdiag.facts.values import as_float
from fgdiag.rules.batch import Batch
from fgdiag.rules.engine import Check, Row
from fgdiag.rules.registry import get, register, runtime_check, static_check
from fgdiag.rules.scales.names import HEAD_GAP, RAW, SCALE_READS
from fgdiag.rules.series import exp_or_inf

register(
    "FGD101",
    "head-scale-at-clip-init",
    "error",
    what="A region or hard-negative logit scale initialised at CLIP's from-scratch ln(1/0.07) = 2.6592, or "
    "more than 1.0 apart (log space) from the global scale, while fine-tuning from a checkpoint at ln 100.",
    why="With scale exp(2.6592) = 14.3 the region logits span only +-14 while the global head runs at 100; "
    "the seed's region loss sat at chance for days because of exactly this.",
    example="FGCLIPConfig(finegrained_logit_scale_init=2.6592) with a CLIP checkpoint whose logit_scale is "
    "4.6052",
    fix="Initialise every head at the checkpoint's scale: finegrained_logit_scale_init = "
    "hardneg_logit_scale_init = 4.6052 (ln 100).",
)


def _exp(raw: float) -> str:
    return f"exp {exp_or_inf(raw):.4g}"


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
                f"logits span only +-{exp_or_inf(value):.3g} against +-{exp_or_inf(ref):.3g} for the global "
                "head",
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
        if glob is None:
            before = e.tail(RAW[GLOBAL], 1)[1]
            glob = before[0] if before else None
        found: list = []
        for head in (REGION, HARDNEG):
            value = raw.get(head)
            if value is None:
                continue
            at_init = is_clip_from_scratch(value)
            message = severity = None
            if glob is not None and at_init and is_ln100(glob):
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) while the global "
                    f"scale is {glob:.4f} (ln 100): the {head} logits span only +-{exp_or_inf(value):.1f}"
                )
            elif glob is not None and abs(value - glob) > HEAD_GAP:
                message = (
                    f"{head} logit scale {value:.4f} is {abs(value - glob):.2f} apart from the global scale "
                    f"{glob:.4f} in log space (exp {exp_or_inf(value):.1f} vs {exp_or_inf(glob):.1f})"
                )
            elif glob is None and at_init:
                message = (
                    f"{head} logit scale {value:.6f} is CLIP's from-scratch init ln(1/0.07) (exp "
                    f"{exp_or_inf(value):.2f}); the global scale is not in this log, check it is not at "
                    "ln 100"
                )
                severity = Severity.WARNING
            if e.gate(f"FGD101/{head}", message is not None) and message:
                found.append((head, message, severity, {"head": head, "raw": value, "global": glob}))
        e.emit_heads("FGD101", found, step)

    def quick(self, batch: Batch, rows: list[int]) -> list[int] | None:
        """Nothing near CLIP's init and every head within HEAD_GAP of every global value: nothing fires."""
        e = self.engine
        if e.is_open("FGD101/"):
            return None
        heads = batch.log_scales((REGION, HARDNEG))
        globs = batch.log_scales((GLOBAL,))
        if RAW[GLOBAL] in e.series:
            globs.append(e.series[RAW[GLOBAL]].values[-1])
        if heads:
            near = CLIP_FROM_SCRATCH_TOLERANCE
            if not (
                min(heads) > CLIP_FROM_SCRATCH_SCALE + near or max(heads) < CLIP_FROM_SCRATCH_SCALE - near
            ):
                return None
            if globs and (max(heads) - min(globs) > HEAD_GAP or max(globs) - min(heads) > HEAD_GAP):
                return None
        if heads or batch.log_scales((GLOBAL,)):
            e.judge("FGD101")
        return []
