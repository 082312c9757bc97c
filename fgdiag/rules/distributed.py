"""FGD8xx, distributed training: docs, and the static check of a DeepSpeed config against the Trainer's
arguments (FGD802). FGD801 has no check yet: `fgclip.train` writes every rank's queue checksum to
`memory_bank_ranks.json`, which a future static check can compare (a new class or function here)."""

from __future__ import annotations

from typing import Any

from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts.deepspeed import ACCUMULATION, BF16, CLIPPING, FP16, MICRO_BATCH, STAGE, TRAIN_BATCH
from fgdiag.facts.run import RunFacts
from fgdiag.facts.values import Field, as_bool, as_float
from fgdiag.rules.registry import get, register, static_check

register(
    "FGD801",
    "ranks-disagree",
    "warning",
    what="Ranks hold different memory-bank queues or report diverging losses.",
    why="The bank must be gathered across ranks so every rank trains against the same negatives.",
    example="queue checksum differs between rank 0 and rank 1",
    fix="Gather keys across ranks before enqueueing (fgclip does).",
)
register(
    "FGD802",
    "deepspeed-config-disagrees",
    "error",
    what="A DeepSpeed config whose explicit values disagree with the Trainer's arguments (precision, "
    "gradient clipping, accumulation, batch sizes), an unknown ZeRO stage, or an optimizer block of its own.",
    why="transformers refuses explicit values that disagree (after the model is loaded), and DeepSpeed's own "
    "optimizer replaces fgclip's parameter groups: the logit scales get weight decay, new heads the towers' "
    "learning rate.",
    example='"gradient_clipping": 5.0 with --max_grad_norm 1.0',
    fix='Write "auto" for every value the Trainer also sets, and leave the optimizer to fgclip.train.',
)
STAGES = (0, 1, 2, 3)


def _trainer(facts: RunFacts, name: str) -> tuple[Any, str]:
    """(value, where it comes from) of a Trainer argument the DeepSpeed config must match."""
    s = facts.settings
    field = s.values.get(name) if s is not None else None  # the Trainer's own, not what DeepSpeed implies
    if field is None and s is not None and name in s.defaults:
        return s.defaults[name], "the Trainer default"
    return (field.value, field.origin) if field is not None else (None, "")


def _number(field: Field) -> float | None:
    try:
        return as_float(field)
    except ValueError:
        return None


def _mismatch(rule: Any, ds: Field, trainer: Any, origin: str, name: str) -> Finding:
    return rule.finding(
        f"DeepSpeed {ds.name} = {ds.value!r:.40} but the Trainer's {name} = {trainer!r:.40} ({origin}): "
        'transformers refuses the mismatch when it starts; write "auto" to take the Trainer\'s value',
        location=ds.location,
        evidence={"deepspeed": ds.value, "trainer": trainer},
    )


@static_check("FGD802")
def deepspeed_config(facts: RunFacts) -> list[Finding]:
    """Each explicit DeepSpeed value that disagrees with the Trainer's, a bad stage, an optimizer block."""
    ds = facts.deepspeed
    if ds is None:
        return []
    rule, out = get("FGD802"), []
    stage = ds.get(STAGE)
    if stage is not None and stage.value not in STAGES:
        out.append(
            rule.finding(f"ZeRO stage {stage.value!r:.20} is not one of 0, 1, 2, 3", location=stage.location)
        )
    if "optimizer" in ds.blocks or "scheduler" in ds.blocks:
        blocks = " and ".join(b for b in ("optimizer", "scheduler") if b in ds.blocks)
        out.append(
            rule.finding(
                f"the DeepSpeed config defines its own {blocks}: DeepSpeed then builds it over all "
                "parameters, so fgclip's parameter groups (no weight decay on the logit scales, the heads' "
                "learning rate) are not used",
                location=ds.path,
                severity=Severity.WARNING,
            )
        )
    if facts.settings is None:
        return out
    for key, name in ((BF16, "bf16"), (FP16, "fp16")):
        field = ds.get(key)
        value, origin = _trainer(facts, name)
        if field is not None and isinstance(field.value, bool) and value is not None:
            try:
                trainer = as_bool(Field(name, value))
            except ValueError:
                continue
            if trainer is not None and field.value != trainer:
                out.append(_mismatch(rule, field, trainer, origin, name))
    for key, name in (
        (CLIPPING, "max_grad_norm"),
        (ACCUMULATION, "gradient_accumulation_steps"),
        (MICRO_BATCH, "per_device_train_batch_size"),
    ):
        field = ds.get(key)
        value, origin = _trainer(facts, name)
        if field is None or field.value == "auto" or value is None:
            continue
        mine, theirs = _number(field), _number(Field(name, value))
        if mine is None:
            out.append(
                rule.finding(
                    f'DeepSpeed {key} = {field.value!r:.40} is not a number or "auto"',
                    location=field.location,
                )
            )
        elif theirs is not None and mine != theirs:
            out.append(_mismatch(rule, field, value, origin, name))
    total, plan = ds.get(TRAIN_BATCH), facts.plan
    if total is not None and total.value != "auto" and plan is not None:
        want = plan.per_device_train_batch_size * plan.gradient_accumulation_steps * plan.world_size
        if _number(total) != want:
            out.append(
                rule.finding(
                    f"DeepSpeed train_batch_size = {total.value!r:.40} but batch x accumulation x world = "
                    f"{plan.per_device_train_batch_size} x {plan.gradient_accumulation_steps} x "
                    f"{plan.world_size} = {want}: DeepSpeed refuses the mismatch",
                    location=total.location,
                )
            )
    return out
