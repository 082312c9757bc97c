"""Static rules over a planned run: logit scales (FGD1xx), memory bank (FGD2xx), data (FGD3xx), learning rates
(FGD501) and precision (FGD701). Each function takes the resolved `Settings`/`Plan` and returns findings.

Rules judge; they never read files (fgdiag.static does) and never print (the CLI does). Messages carry the
observed values and, for assumed values, the assumption (`Field.origin`), so a reader can check the arithmetic.
Checkpoint and weight rules (FGD401-403) live in `fgdiag.static.weight_rules`.
"""

from __future__ import annotations

import math
from typing import Any

from fgdiag.checkpoints import is_clip_init, is_ln100
from fgdiag.diagnostic import Finding, Severity
from fgdiag.rules import registry
from fgdiag.static.data_source import invalid_counts, repeated_captions
from fgdiag.static.plan import Plan, loss_floor
from fgdiag.static.settings import Settings
from fgdiag.static.values import Field, as_bool, as_float

LN_100 = math.log(100.0)
CLAMP_TOLERANCE = 1e-3  # 4.6052 (ln 100 to 4 decimals) must not count as "above" a clamp at 4.605170
LATE_ACTIVATION = 0.8  # a bank switching on after 80 % of the run trains most steps without its negatives
QUEUE_DATA_SHARE = 0.05
HEAD_LR_RATIO = 10.0
LABELS = {
    "logit_scale": "global",
    "logit_scale_finegrained": "region",
    "logit_scale_hardneg": "hard-negative",
}


def _exp(raw: float) -> str:
    return f"exp {math.exp(raw):.4g}"


def _scales(s: Settings) -> list[tuple[str, Field, float]]:
    """(label, field, raw) of every initial scale that is known: heads, then the global one."""
    out = [(LABELS[h], f, v) for h, f in s.heads.items() if (v := as_float(f)) is not None]
    glob = s.source_scale or s.global_init
    if glob is not None and (v := as_float(glob)) is not None:
        out.append(("global", glob, v))
    return out


def head_scale_rules(s: Settings) -> list[Finding]:
    """FGD101: a head initialised at CLIP's from-scratch scale, or far from the global one, when fine-tuning."""
    src = s.source_scale
    ref = as_float(src) if src is not None else None
    if ref is None or src is None:
        return []
    origin = s.source.value if s.source is not None else src.origin
    out = []
    for head, field in s.heads.items():
        value = as_float(field)
        if value is None:
            continue
        at_init = is_clip_init(value) and is_ln100(ref)
        if not at_init and abs(value - ref) <= 1.0:
            continue
        why = "CLIP's from-scratch ln(1/0.07)" if at_init else f"{abs(value - ref):.2f} apart in log space"
        why += f"; {field.origin}" if field.default else ""
        out.append(
            registry.get("FGD101").finding(
                f"{LABELS[head]} logit scale initialised at {value:.5g} ({_exp(value)}; {why}) while "
                f"fine-tuning from {origin} whose logit_scale is {ref:.5g} ({_exp(ref)}; {src.origin}): its logits span "
                f"only +-{math.exp(value):.3g} against +-{math.exp(ref):.3g} for the global head",
                location=field.location,
                evidence={"head": head, "init": value, "source_scale": ref},
            )
        )
    return out


def clamp_rules(s: Settings) -> list[Finding]:
    """FGD102: a scale initialised above the clamp (error), or no clamp at all (warning)."""
    rule = registry.get("FGD102")
    clamp = s.clamp
    if clamp is None:
        return []
    if clamp.value is None:
        return [
            rule.finding(
                f"no clamp on the logit scales ({clamp.origin}): exp(scale) can pass 100 and "
                "destabilise training",
                location=clamp.location,
            )
        ]
    limit = as_float(clamp)
    if limit is None:
        return []
    out = []
    for label, field, value in _scales(s):
        if value > limit + CLAMP_TOLERANCE:
            out.append(
                rule.finding(
                    f"{label} logit scale starts at {value:.5g} ({field.origin}), above the clamp logit_scale_max = "
                    f"{limit:.5g} ({clamp.origin}): the first clamp cuts it and the configured value never holds",
                    location=field.location,
                    severity=Severity.ERROR,
                    evidence={"head": label, "init": value, "clamp": limit},
                )
            )
    return out


def optimizer_scale_rules(s: Settings) -> list[Finding]:
    """FGD103: scales under weight decay, frozen, or in no parameter group."""
    rule = registry.get("FGD103")
    out = []
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


def precision_rules(s: Settings) -> list[Finding]:
    """FGD701: fp16 with a logit scale of 100 (fp16 overflows at exp(logit) > 65504 = e^11.09)."""
    fp16 = s.fields.get("fp16")
    if fp16 is None or not as_bool(fp16):
        return []
    high = [(label, value) for label, _, value in _scales(s) if value >= LN_100 - 0.02]
    clamp = as_float(s.clamp) if s.clamp is not None and s.clamp.value is not None else None
    if not high and clamp is not None and clamp >= LN_100 - 0.02:
        high = [("clamp", clamp)]
    if not high:
        return []
    shown = ", ".join(f"{label} {value:.4g}" for label, value in high)
    return [
        registry.get("FGD701").finding(
            f"fp16 with logit scale 100 ({shown}): fp16 similarity logits overflow (max 65504 = e^11.09) and "
            "FG-CLIP is known to give NaN under fp16",
            location=fp16.location,
            evidence={"scales": dict(high)},
        )
    ]


def bank_rules(s: Settings, plan: Plan, notes: list[str]) -> list[Finding]:
    """FGD201 (bank cannot activate in time) and FGD202 (warm-up counted in forward passes)."""
    if not plan.memory_bank_size or plan.memory_bank_activation_step is None or s.warmup is None:
        return []
    out = []
    start, accum, total = (
        plan.memory_bank_activation_step,
        plan.gradient_accumulation_steps,
        plan.planned_optimizer_steps,
    )
    if s.warmup_unit == "forward":
        out.append(
            registry.get("FGD202").finding(
                f"memory-bank warm-up of {plan.memory_bank_warmup:g} forward passes ({s.warmup.origin}): with "
                f"gradient_accumulation_steps = {accum} the bank activates at optimizer step {start:g}, not "
                f"{plan.memory_bank_warmup:g}",
                location=s.warmup.location,
                evidence={"forward_passes": plan.memory_bank_warmup, "optimizer_step": start},
            )
        )
    rule = registry.get("FGD201")
    if total is None:
        notes.append(
            "planned optimizer steps unknown (no max_steps, and no readable data_path or num_train_samples)"
            ": set one of them to check when the memory bank activates (FGD201)"
        )
    elif start >= total:
        out.append(
            rule.finding(
                f"memory bank never activates: its warm-up ends at optimizer step {start:g} but the run plans {total} "
                f"optimizer steps; the region loss trains against in-batch negatives only",
                location=s.warmup.location,
                evidence={"activation_step": start, "planned_steps": total},
            )
        )
        return out
    elif start > LATE_ACTIVATION * total:
        out.append(
            rule.finding(
                f"memory bank activates at optimizer step {start:g}, in the last {100 * (1 - start / total):.0f} % of "
                f"the {total}-step run",
                location=s.warmup.location,
                evidence={"activation_step": start, "planned_steps": total},
            )
        )
        return out
    if s.bank_active_by is not None and start > s.bank_active_by[0]:
        out.append(
            rule.finding(
                f"memory bank activates at optimizer step {start:g}, after step {s.bank_active_by[0]} by which the "
                f"target profile {s.bank_active_by[1]} expects it",
                location=s.warmup.location,
                evidence={"activation_step": start, "active_by": s.bank_active_by[0]},
            )
        )
    return out


def queue_rules(s: Settings, plan: Plan, regions_in_data: int | None) -> list[Finding]:
    """FGD203: queue too small for the batch, too large for the data, or targets the temperature cannot meet."""
    rule = registry.get("FGD203")
    k = plan.memory_bank_candidates or 0
    where = s.bank_size.location if s.bank_size is not None else s.anchor
    out = []
    if k and k <= plan.regions_per_optimizer_step:
        out.append(
            rule.finding(
                f"memory bank of {k} entries <= {plan.regions_per_optimizer_step} regions per optimizer step (batch "
                f"{plan.per_device_train_batch_size} x {s.boxes_per_sample} boxes x accumulation "
                f"{plan.gradient_accumulation_steps} x world {plan.world_size}): the queue is overwritten every step and "
                "adds no older negatives",
                location=where,
                evidence={"queue": k},
            )
        )
    if k and regions_in_data and k > QUEUE_DATA_SHARE * regions_in_data:
        out.append(
            rule.finding(
                f"memory bank of {k} entries is {100 * k / regions_in_data:.0f} % of the ~{regions_in_data} regions in "
                "the data: the queue keeps copies of the positives' own regions and captions as negatives",
                location=where,
                evidence={"queue": k, "regions": regions_in_data},
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
        if raw is not None and target < (floor := loss_floor(candidates, math.exp(raw))):
            out.append(
                rule.finding(
                    f"region-loss target {target:g}{at} is below the floor {floor:.3f} that scale {raw:.4g} "
                    f"({_exp(raw)}) allows with {candidates} candidates (ln(1 + (K-1) e^(-2s)))",
                    location=location,
                )
            )
        elif target >= chance:
            out.append(
                rule.finding(
                    f"region-loss target {target:g}{at} is at or above chance ln {candidates} = {chance:.3f}: a model "
                    "that learned nothing meets it",
                    location=location,
                )
            )
    return out


def lr_rules(s: Settings) -> list[Finding]:
    """FGD501: new heads on the towers' learning rate, a head lr >= 10x the towers', or no gradient clipping."""
    if not s.new_heads:
        return []
    rule = registry.get("FGD501")
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
                f"new heads ({heads}) train at the towers' learning rate {lr_text}: the {s.dialect} trainer has no head "
                "learning rate (text_model_lr only splits off text_model.*)",
                location=lr_field.location,
            )
        )
    elif head_lr is None or head_lr == lr:
        out.append(
            rule.finding(
                f"new heads ({heads}) train at the towers' learning rate {lr_text} "
                f"({'head_learning_rate not set' if head is None else 'head_learning_rate equals learning_rate'})",
                location=(head or lr_field).location,
            )
        )
    elif lr and head_lr >= HEAD_LR_RATIO * lr:
        out.append(
            rule.finding(
                f"head_learning_rate {head_lr:g} is {head_lr / lr:.0f}x the towers' {lr:g}: a randomly initialised head "
                "at that rate can blow up the first steps",
                location=head.location,
            )
        )  # type: ignore[union-attr]
    clip = s.fields["max_grad_norm"]
    if not (as_float(clip) or 0.0) > 0:
        out.append(
            rule.finding(
                f"no gradient clipping ({clip.why or clip.origin}: max_grad_norm {clip.value}) while new heads ({heads}) "
                "start from random weights",
                location=clip.location,
            )
        )
    return out


def data_rules(
    report: dict[str, Any], s: Settings | None, plan: Plan | None, max_invalid_ratio: float, location: str
) -> list[Finding]:
    """FGD301 (invalid boxes above the threshold) and FGD302 (captions repeated enough to be false negatives).

    A caption repeated c times among N is a false negative for a query holding it whenever a copy lands among
    its K - 1 negatives: about (K - 1)(c - 1)/(N - 1) copies per query for uniform sampling. Region captions
    compete in the region loss (batch regions + queue), global captions in the global batch.
    """
    out = []
    invalid, boxes, ratio = invalid_counts(report)
    if ratio is not None and ratio > max_invalid_ratio:
        counts = f"{invalid} of {boxes} boxes, " if invalid is not None and boxes else ""
        out.append(
            registry.get("FGD301").finding(
                f"invalid boxes: {counts}{100 * ratio:.1f} % (threshold {100 * max_invalid_ratio:.1f} %, "
                "--max-invalid-ratio); fgdiag data-audit lists them",
                location=location,
                evidence={"invalid_ratio": ratio, "invalid": invalid, "boxes": boxes},
            )
        )
    region_k = (plan.regions_per_forward + (plan.memory_bank_candidates or 0)) if plan else 8
    global_k = plan.per_device_train_batch_size * plan.world_size if plan else 8
    mask = (
        s is not None
        and s.dialect == "fgclip"
        and as_bool(s.values.get("memory_bank_mask_duplicates") or Field("memory_bank_mask_duplicates", True))
        is True
    )
    for group, total, repeats in repeated_captions(report):
        candidates = global_k if group == "global" else region_k
        if total < 2 or candidates < 2:
            continue
        flagged = [(c, n, (candidates - 1) * (n - 1) / (total - 1)) for c, n in repeats]
        flagged = [item for item in flagged if item[2] >= 0.05]
        if not flagged:
            continue
        caption, count, expected = flagged[0]
        masked = (
            " (the queue masks equal captions; in-batch copies stay)" if mask and group != "global" else ""
        )
        out.append(
            registry.get("FGD302").finding(
                f"{len(flagged)} {group} caption(s) repeated enough to be false negatives; worst {caption!r} x{count} of "
                f"{total}: ~{expected:.2f} copies among the {candidates - 1} negatives of each query holding it{masked}",
                location=location,
                evidence={"group": group, "captions": [[c, n] for c, n, _ in flagged[:10]]},
            )
        )
    return out
