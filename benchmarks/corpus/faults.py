"""Faults injected into real runs of our trainer, the way `tests/runtime/test_runtime_faults.py` injects them.

Each fault is a function `fault(trainer)` applied to the built `FGCLIPTrainer` before `train()`; it changes
the collator, adds a hook or a callback, and nothing else, so the log is what `python -m fgclip.train` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

SHARED_WEIGHT = 2.5
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
    "1.21 GiB is free. Including non-PyTorch memory, this process has 77.96 GiB memory in use. Of the "
    "allocated memory 74.02 GiB is allocated by PyTorch, and 2.41 GiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
    "Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)


def wrap_collator(trainer: Any, change: Callable[[dict], dict]) -> None:
    inner = trainer.data_collator

    def collate(samples: list) -> dict:
        return change(inner(samples))

    trainer.data_collator = collate


def freeze_region_scale(trainer: Any) -> None:
    """The seed's region head: scale left where it was initialised (run with --finegrained_logit_scale_init
    2.6592); requires_grad False, so it never moves."""
    trainer.model.logit_scale_finegrained.requires_grad_(False)


def zero_boxes(trainer: Any) -> None:
    def change(batch: dict) -> dict:
        batch["boxes"] = torch.zeros_like(batch["boxes"])
        return batch

    wrap_collator(trainer, change)


def shuffle_region_captions(trainer: Any) -> None:
    """Region captions permuted against their boxes in every batch (a broken box/caption pairing)."""

    def change(batch: dict) -> dict:
        mask = batch["box_mask"]
        ids = batch["region_input_ids"]
        valid = ids[mask]
        batch["region_input_ids"][mask] = valid[torch.randperm(valid.shape[0])]
        return batch

    wrap_collator(trainer, change)


def blank_images(trainer: Any) -> None:
    """Every image replaced by zeros (a loader that silently returns blank frames)."""

    def change(batch: dict) -> dict:
        batch["pixel_values"] = torch.zeros_like(batch["pixel_values"])
        return batch

    wrap_collator(trainer, change)


class NaNRegionAt(TrainerCallback):
    """The region loss becomes NaN on one optimizer step (a forward hook on the loss module)."""

    def __init__(self, step: int):
        self.step = step
        self.handle = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self.handle = model.region_loss.register_forward_hook(
                lambda m, i, out: ({"region_loss": out[0]["region_loss"] * float("nan")}, out[1])
            )
        elif self.handle is not None:
            self.handle.remove()
            self.handle = None


def nan_region_at_step_12(trainer: Any) -> None:
    trainer.add_callback(NaNRegionAt(12))


def undivided_accumulation(trainer: Any) -> None:
    """Gradients summed over the accumulation steps instead of averaged, as the fork's custom training_step
    does (it never divides the loss by gradient_accumulation_steps): every gradient is multiplied by G."""
    factor = float(trainer.args.gradient_accumulation_steps)
    for param in trainer.model.parameters():
        if param.requires_grad:
            param.register_hook(lambda grad: grad * factor)


def collapse_regions(trainer: Any) -> None:
    """Region and region-caption embeddings pulled onto one shared direction before the region loss (own
    feature + SHARED_WEIGHT x a fixed unit vector): every cosine lands between ~0.65 and 1, so the logits sit
    between ~65 and 100 at scale ~100 while their spread is not tiny."""
    dim = trainer.model.config.projection_dim
    generator = torch.Generator().manual_seed(1234)
    shared = F.normalize(torch.randn(dim, generator=generator), dim=0)

    def pre_hook(module: Any, args: tuple) -> tuple:
        region, text, *rest = args
        region = F.normalize(region + SHARED_WEIGHT * shared.to(region), dim=-1)
        text = F.normalize(text + SHARED_WEIGHT * shared.to(text), dim=-1)
        return (region, text, *rest)

    trainer.model.region_loss.register_forward_pre_hook(pre_hook)


class OutOfMemoryAt(TrainerCallback):
    """Raises CUDA's out-of-memory error (with CUDA's wording) at the start of one optimizer step."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise torch.OutOfMemoryError(OOM_MESSAGE)


def oom_at_step_0(trainer: Any) -> None:
    trainer.add_callback(OutOfMemoryAt(0))


def oom_at_step_25(trainer: Any) -> None:
    trainer.add_callback(OutOfMemoryAt(25))


FAULTS: dict[str, Callable[[Any], None]] = {
    "none": lambda trainer: None,
    "freeze_region_scale": freeze_region_scale,
    "zero_boxes": zero_boxes,
    "shuffle_region_captions": shuffle_region_captions,
    "blank_images": blank_images,
    "nan_region_at_step_12": nan_region_at_step_12,
    "undivided_accumulation": undivided_accumulation,
    "collapse_regions": collapse_regions,
    "oom_at_step_0": oom_at_step_0,
    "oom_at_step_25": oom_at_step_25,
}
