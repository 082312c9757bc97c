"""Emulate bf16 parameter storage for named parameters on fp32 hardware: round them to bf16 at the start
and after every optimizer step.

Why: the fgclip-vad fork casts the whole model with `.to(torch.bfloat16)`, so its region scale 2.6592 is
stored as 2.65625 (its logs print 2.656250 for 54+ steps). bf16 keeps 8 significant bits: between 2 and 4
its spacing is 2**-6 = 0.0156, so any update smaller than 0.0078 (an Adam step at lr 5e-6, or at 1e-4)
rounds back to the same value and the scale can never move. Rounding after each step reproduces exactly
that, while the rest of the model trains in fp32 like the fixed run (`fgdiag run --compare seed`).
"""

from __future__ import annotations

from typing import cast

import torch
from transformers import TrainerCallback


def parse_names(spec: str | None) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); empty or None -> ()."""
    return tuple(name.strip() for name in (spec or "").split(",") if name.strip())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while hasattr(model, "module"):
        model = cast(torch.nn.Module, model.module)  # DDP / DeepSpeed / accelerate wrappers
    return model


@torch.no_grad()
def round_to_bf16(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Round the named parameters in place to the nearest bf16 value (kept in their own dtype)."""
    params = dict(_unwrap(model).named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(
            f"bf16_parameter_storage: no parameter named {', '.join(unknown)}; "
            f"scalars of this model: {', '.join(n for n, p in params.items() if p.ndim == 0) or 'none'}"
        )
    for name in names:
        param = params[name]
        param.copy_(param.to(torch.bfloat16).to(param.dtype))


class Bf16StorageCallback(TrainerCallback):
    """Keeps `names` on the bf16 grid: once before training, then after every optimizer step."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            round_to_bf16(model, self.names)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None:
            round_to_bf16(model, self.names)


def storage_callbacks(train_args) -> list[TrainerCallback]:
    """The callback for `--bf16_parameter_storage NAMES`, or nothing when the option is unset."""
    names = parse_names(getattr(train_args, "bf16_parameter_storage", None))
    return [Bf16StorageCallback(names)] if names else []


__all__ = ["Bf16StorageCallback", "parse_names", "round_to_bf16", "storage_callbacks"]
