"""FGCLIPTrainer: transformers' Trainer with our param groups; the per-step work (scale clamp, memory-bank
clock, loss parts) is `FGCLIPCallback`'s, the same callback any stock Trainer uses."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
from transformers import Trainer

from fgclip.train.callback import FGCLIPCallback, unwrap
from fgclip.train.optim import build_param_groups, describe_param_groups

logger = logging.getLogger("fgclip.train")

__all__ = ["FGCLIPCallback", "FGCLIPTrainer", "unwrap"]


class FGCLIPTrainer(Trainer):
    """Adds named param groups (one builder) and logs every loss part next to the total."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fgclip_callback = FGCLIPCallback.attach(self)

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

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # before the Trainer copies logs into log_history and calls any callback
            logs.update(self.fgclip_callback.take_parts(self.state.global_step))
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
