"""Refuse impossible training values before anything is built, naming the option and where it was set.

transformers' TrainingArguments accepts a negative batch size, zero or negative accumulation, `max_steps
0`, negative or NaN learning rates... and fails later with a ZeroDivisionError or a DataLoader traceback,
or trains nonsense. FGCLIPConfig fields are validated by `FGCLIPConfig.check()`; this covers the rest.
"""

from __future__ import annotations

import math
from typing import Any

from fgclip.train.errors import TrainingRefused


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def problems(data_args: Any, train_args: Any) -> list[tuple[str, str]]:
    """(option, why) for every impossible value."""
    out: list[tuple[str, str]] = []

    def need(ok: bool, name: str, why: str) -> None:
        if not ok:
            out.append((name, why))

    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        value = getattr(train_args, name)
        need(_is_int(value) and value >= 1, name, "must be an integer >= 1")
    max_steps = train_args.max_steps
    need(
        _is_int(max_steps) and (max_steps >= 1 or max_steps == -1),
        "max_steps",
        "must be >= 1 (or -1: train num_train_epochs)",
    )
    if max_steps == -1:
        epochs = train_args.num_train_epochs
        need(_finite(epochs) and epochs > 0, "num_train_epochs", "must be > 0 when max_steps is -1")
    for name in ("learning_rate", "head_learning_rate", "logit_scale_learning_rate", "weight_decay"):
        value = getattr(train_args, name)
        if value is not None:
            need(_finite(value) and value >= 0, name, "must be a finite number >= 0")
    need(
        _finite(train_args.max_grad_norm) and train_args.max_grad_norm >= 0,
        "max_grad_norm",
        "must be a finite number >= 0 (0 turns clipping off)",
    )
    for name, strategy in (("logging_steps", "logging_strategy"), ("save_steps", "save_strategy")):
        value, every = getattr(train_args, name), getattr(train_args, strategy)
        if getattr(every, "value", every) == "steps":
            need(_finite(value) and value > 0, name, "must be > 0 (a number of steps, or a ratio below 1)")
    need(
        _is_int(train_args.dataloader_num_workers) and train_args.dataloader_num_workers >= 0,
        "dataloader_num_workers",
        "must be an integer >= 0",
    )
    ratio = data_args.max_dropped_box_ratio
    need(_finite(ratio) and 0 <= ratio <= 1, "max_dropped_box_ratio", "must lie in [0, 1]")
    return out


def check_arguments(data_args: Any, train_args: Any, sources: dict[str, str]) -> None:
    """Raise TrainingRefused listing every impossible value with its source (file:line, preset, ...)."""
    found = problems(data_args, train_args)
    if not found:
        return
    lines = []
    for name, why in found:
        value = getattr(train_args, name, None) if hasattr(train_args, name) else getattr(data_args, name)
        lines.append(f"  --{name} {value!r} ({sources.get(name, 'default')}): {why}")
    raise TrainingRefused("impossible training values:\n" + "\n".join(lines))


__all__ = ["check_arguments", "problems"]
