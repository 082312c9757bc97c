"""FGD0xx, the configuration itself: values no run can have, keys nothing reads, keys written twice.

These come before every other family: a negative batch size makes the plan arithmetic meaningless, a typo
(`max_stepz`) leaves the value the user meant at its default, and a JSON key written twice keeps the last
value without a word. The Trainer's part of the impossible values is judged by `fgclip.train.validate`'s own
`problems()` (the function the trainer refuses with), so check-config and training agree.
"""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from fgclip.train.options import ModelArguments
from fgclip.train.validate import problems
from fgdiag.diagnostic import Finding
from fgdiag.facts.plan import COUNT_LIMIT
from fgdiag.facts.run import RunFacts
from fgdiag.facts.settings import Settings
from fgdiag.facts.values import Field, as_float, as_int, unresolved
from fgdiag.rules.registry import get, register, static_check

register(
    "FGD001",
    "impossible-value",
    "error",
    what="A training value no run can have: a batch size, accumulation or step count below 1, a negative "
    "memory-bank size or warm-up, a negative learning rate or loss weight, a choice outside its options.",
    why="transformers accepts most of them and fails later (a ZeroDivisionError, a DataLoader traceback) or "
    "trains nonsense; fgclip.train refuses them before step 0, so the check should too.",
    example="memory_bank_size = -128",
    fix="Set the value in its valid range; the message names the field and where it was written.",
)
register(
    "FGD002",
    "unknown-option",
    "warning",
    what="A key in a configuration (or a --flag of a launch script) that no fgclip.train option reads.",
    why="A typo such as max_stepz leaves the intended option at its default; fgclip.train refuses the file, "
    "and other readers ignore the key silently.",
    example="max_stepz = 400",
    fix="Rename the key to the option it meant (the message names the closest one) or remove it.",
)
register(
    "FGD003",
    "repeated-key",
    "warning",
    what="A key written twice in one JSON object.",
    why="JSON readers keep the last value silently: the first one, often the one being edited, is ignored.",
    example='{"max_steps": 400, ..., "max_steps": 40}',
    fix="Keep one of them.",
)

# fgclip.train.validate.problems() reads these argument values; ints and texts, the rest are numbers
INTS = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "dataloader_num_workers")
TEXTS = ("logging_strategy", "save_strategy")
NUMBERS = (
    "num_train_epochs",
    "learning_rate",
    "head_learning_rate",
    "logit_scale_learning_rate",
    "weight_decay",
    "max_grad_norm",
    "logging_steps",
    "save_steps",
    "max_dropped_box_ratio",
)
# FGCLIPConfig.check()'s bounds for the fields a configuration sets (fgclip.config needs transformers;
# tests/diag/test_check_config_values.py checks each row against FGCLIPConfig itself)
MINIMUM = {
    "memory_bank_size": 0,
    "memory_bank_warmup_steps": 0,
    "max_boxes_per_sample": 1,
    "num_hard_negatives": 1,
    "num_frames": 1,
}
LOSS_WEIGHTS = (
    "global_long_loss_weight",
    "global_short_loss_weight",
    "region_loss_weight",
    "hard_negative_loss_weight",
)
SCALE_INITS = ("finegrained_logit_scale_init", "hardneg_logit_scale_init")
TEMPERATURE_LIKE = 0.6  # FGCLIPConfig: a raw scale in (0, 0.6) is a temperature written in the wrong field
COUNTS = (  # counts no run reaches beyond COUNT_LIMIT (the plan's arithmetic treats them as unknown)
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "num_train_epochs",
    "num_train_samples",
    "world_size",
    *MINIMUM,
)


def _choices() -> dict[str, tuple[str, ...]]:
    """Options whose type is a Literal (region_head, temporal_pooling): name -> allowed values."""
    hints = typing.get_type_hints(ModelArguments)
    out = {}
    for f in fields(ModelArguments):
        for arg in typing.get_args(hints[f.name]) or (hints[f.name],):
            if typing.get_origin(arg) is typing.Literal:
                out[f.name] = tuple(typing.get_args(arg))
    return out


def _argument(s: Settings, name: str) -> tuple[Field | None, Any]:
    """(field, typed value) of a Trainer argument, its default when unset or unresolved."""
    field = s.values.get(name) or s.fields.get(name)
    default = s.defaults.get(name)
    if field is None or field.value is None or unresolved(field.value):
        return None, default
    if name in TEXTS:
        return field, str(field.value).lower()
    value = as_int(field) if name in INTS else as_float(field)
    return field, default if value is None else value


def _trainer_problems(s: Settings, rule: Any) -> list[Finding]:
    known: dict[str, Field | None] = {}
    namespace: dict[str, Any] = {}
    for name in (*INTS, *TEXTS, *NUMBERS):
        known[name], namespace[name] = _argument(s, name)
    args = SimpleNamespace(**namespace)
    out = []
    for name, why in problems(args, args):
        field = known.get(name)
        if field is None:  # a default made invalid only by another value (epochs with max_steps -1)
            field = known.get("max_steps")
        where = field.location if field is not None else s.anchor
        shown = field.value if field is not None and field.name == name else namespace.get(name)
        out.append(
            rule.finding(
                f"{name} = {shown!r:.60}: {why}; python -m fgclip.train refuses it",
                location=where,
                evidence={"field": name, "value": shown},
            )
        )
    return out


def _model_problems(s: Settings, rule: Any) -> list[Finding]:
    out = []

    def bad(field: Field, why: str) -> None:
        out.append(rule.finding(f"{field.name} = {field.value!r:.60}: {why}", location=field.location))

    for name, low in MINIMUM.items():
        field = s.values.get(name)
        value = as_float(field) if field is not None else None
        if field is not None and value is not None and (value < low or value != int(value)):
            bad(field, f"must be an integer >= {low}")
    for name in COUNTS:
        field = s.values.get(name)
        value = as_float(field) if field is not None and not isinstance(field.value, bool) else None
        if field is not None and value is not None and value > COUNT_LIMIT:
            bad(field, f"more than {COUNT_LIMIT:.0e}: no run has that many")
    for name in LOSS_WEIGHTS:
        field = s.values.get(name)
        value = as_float(field) if field is not None else None
        if field is not None and value is not None and value < 0:
            bad(field, "a loss weight must be >= 0")
    for name in SCALE_INITS:
        field = s.values.get(name)
        value = as_float(field) if field is not None else None
        if field is None or value is None:
            continue
        if value < 0:
            bad(field, "a negative raw (log-space) scale means a temperature above 1; ln 100 = 4.6052")
        elif 0 < value < TEMPERATURE_LIKE:
            bad(field, f"looks like a temperature ({value:g}), but the field is log-space: use ln(1/T)")
    for name, allowed in _choices().items():
        field = s.values.get(name)
        text = field.value if field is not None and isinstance(field.value, str) else None
        if field is not None and text is not None and not unresolved(text) and text not in allowed:
            bad(field, f"must be one of {', '.join(allowed)}")
    return out


@static_check("FGD001")
def impossible_values(facts: RunFacts) -> list[Finding]:
    """Values fgclip.train (or FGCLIPConfig) would refuse, each at the line that set it."""
    s = facts.settings
    if s is None:
        return []
    rule = get("FGD001")
    out = _trainer_problems(s, rule) if "per_device_train_batch_size" in s.defaults else []
    return out + _model_problems(s, rule)


@static_check("FGD002")
def unknown_options(facts: RunFacts) -> list[Finding]:
    """Keys no option reads, with the closest known name."""
    s = facts.settings
    if s is None:
        return []
    rule, out = get("FGD002"), []
    for field, near in s.unknown:
        table = isinstance(field.value, dict)
        what = f"unknown table [{field.name}]" if table else f"unknown option {field.name!r}"
        hint = f"; did you mean {near!r}?" if near else ""
        out.append(
            rule.finding(
                f"{what} (nothing reads it; python -m fgclip.train refuses a file that holds it){hint}",
                location=field.location,
                evidence={"key": field.name, "closest": near},
            )
        )
    return out


@static_check("FGD003")
def repeated_keys(facts: RunFacts) -> list[Finding]:
    """Keys a JSON object repeats; the value JSON keeps is the last."""
    s = facts.settings
    if s is None:
        return []
    rule, out = get("FGD003"), []
    for kept, lines in s.values.duplicates:
        where = " and ".join(str(n) for n in lines) if lines else "two places"
        value = (
            kept.value if not isinstance(kept.value, float) or math.isfinite(kept.value) else str(kept.value)
        )
        out.append(
            rule.finding(
                f"{kept.name!r} is written on lines {where} of {kept.path}; JSON keeps the last "
                f"({value!r:.60}) and silently drops the others",
                location=kept.location,
                evidence={"key": kept.name, "lines": lines},
            )
        )
    return out
