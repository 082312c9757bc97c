"""FGCLIPTrainer: transformers' Trainer with our param groups and per-part loss logging; plus the callback
that runs after every optimizer step (clamp the scales, tick the memory bank's clock)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback

from fgclip.train.optim import build_param_groups, describe_param_groups

logger = logging.getLogger("fgclip.train")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while hasattr(model, "module"):
        model = model.module
    return model


class OptimizerStepCallback(TrainerCallback):
    """After each optimizer step (not each forward): clamp logit scales, then tell the memory bank."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None:
            inner = unwrap(model)
            inner.clamp_logit_scales()
            inner.optimizer_step_completed()


class FGCLIPTrainer(Trainer):
    """Adds named param groups (one builder) and logs every loss part next to the total."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_count = 0
        self.add_callback(OptimizerStepCallback())

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = unwrap(self.model if model is None else model)
            groups = build_param_groups(
                opt_model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                head_learning_rate=getattr(self.args, "head_learning_rate", None),
                logit_scale_learning_rate=getattr(self.args, "logit_scale_learning_rate", None),
            )
            if self.is_world_process_zero():
                logger.info(describe_param_groups(groups))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training and outputs.losses:
            for name, value in outputs.losses.items():
                value = value.detach().float()
                self._part_sums[name] = self._part_sums.get(name, torch.zeros_like(value)) + value
            self._part_count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._part_count and "loss" in logs:
            names = sorted(self._part_sums)
            means = torch.stack([self._part_sums[n] for n in names]) / self._part_count
            if dist.is_available() and dist.is_initialized():  # the mean over ranks, like the logged loss
                dist.all_reduce(means)
                means /= dist.get_world_size()
            for name, value in zip(names, means.tolist(), strict=True):  # host read on logging steps only
                logs[name] = round(value, 6)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, start_time)

    def memory_bank_checksums(self) -> list[float] | None:
        """Sum of each rank's queue (all ranks must agree: the bank is gathered before enqueueing)."""
        bank = getattr(unwrap(self.model), "memory_bank", None)
        if bank is None:
            return None
        local = (
            torch.stack(
                [
                    bank.image_queue.double().sum(),
                    bank.text_queue.double().sum(),
                    bank.ptr.double(),
                    bank.fill.double(),
                ]
            )
            .sum()
            .reshape(1)
        )
        if not (dist.is_available() and dist.is_initialized()):
            return local.tolist()
        parts = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        return [p.item() for p in parts]
