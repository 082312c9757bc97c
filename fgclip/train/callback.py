"""FGCLIPCallback: what any transformers Trainer needs to train an fgclip model.

- After every optimizer step (never per forward pass): clamp the logit scales to `logit_scale_max`, then
  tick the memory bank's optimizer-step clock. Both act on the model, whose buffers are checkpointed, so
  the callback holds no state a resume could lose; gradient accumulation changes nothing.
- On logging steps: the mean of every loss part (`global_long_loss`, `region_loss`, ...) since the last
  log, averaged over ranks, added to the log dict and to `state.log_history`. The parts are collected by a
  forward hook as detached device tensors: no host sync on steps that do not log.

The Trainer calls callbacks in list order and puts `callbacks=[...]` after the `report_to` integrations,
which would then miss the loss parts: `FGCLIPCallback.attach(trainer)` places the callback right after
`DefaultFlowCallback`, before them. fgclip never imports a diagnostics package.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from transformers import DefaultFlowCallback, TrainerCallback

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

    from fgclip.modeling.model import FGCLIPModel

logger = logging.getLogger("fgclip.train")

# every part the model can return; ranks reduce this fixed list (a part absent on one rank counts 0 there)
LOSS_PARTS = ("global_long_loss", "global_short_loss", "region_loss", "hard_negative_loss")


def unwrap(model: Any) -> FGCLIPModel:
    """The model inside the DDP / DeepSpeed / accelerate wrappers (each keeps it as `.module`)."""
    while hasattr(model, "module"):
        model = model.module
    return model


class FGCLIPCallback(TrainerCallback):
    """Scale clamp + memory-bank clock after each optimizer step; loss parts in the logs."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._hook: RemovableHandle | None = None
        self.attached = False  # True when placed by `attach`, i.e. before the report_to integrations
        self._warned_order = False
        self._taken_step: int | None = None  # FGCLIPTrainer.log takes the parts before the callbacks run

    @classmethod
    def attach(cls, trainer: Any) -> FGCLIPCallback:
        """Add one FGCLIPCallback to `trainer` right after DefaultFlowCallback (replacing any already
        there), so what it adds to the log dict reaches TensorBoard, W&B, ... Returns the callback."""
        callbacks = trainer.callback_handler.callbacks
        callbacks[:] = [cb for cb in callbacks if not isinstance(cb, cls)]
        flow = next((i for i, cb in enumerate(callbacks) if isinstance(cb, DefaultFlowCallback)), -1)
        callback = cls()
        callback.attached = True
        callbacks.insert(flow + 1, callback)
        return callback

    # ------------------------------------------------------------------ lifecycle
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        inner = unwrap(model)
        self._sums, self._counts = {}, {}
        if self._hook is None:
            self._hook = inner.register_forward_hook(self._collect)
        self._warn_on_decayed_scales(inner, optimizer)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None:
            inner = unwrap(model)
            inner.clamp_logit_scales()
            inner.optimizer_step_completed()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._taken_step == state.global_step:
            return
        parts = self.take_parts()
        if not parts:
            return
        if not self.attached and not self._warned_order and _integrations(args):
            self._warned_order = True
            logger.warning(
                "FGCLIPCallback was passed in callbacks=[...], so it runs after the report_to integrations "
                "(%s): they miss the loss parts. Use FGCLIPCallback.attach(trainer) instead.",
                ", ".join(_integrations(args)),
            )
        logs.update(parts)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(parts)  # the Trainer copied `logs` there before calling us

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # ------------------------------------------------------------------ loss parts
    def _collect(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        losses = getattr(output, "losses", None)
        if not module.training or not losses:
            return
        for name, value in losses.items():
            value = value.detach().float()
            self._sums[name] = self._sums.get(name, torch.zeros_like(value)) + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def take_parts(self, step: int | None = None) -> dict[str, float]:
        """Mean of each loss part over the forward passes since the last call (over all ranks); resets.
        Every rank must call it at the same logging step (it all-reduces when distributed). A trainer
        that logs them itself passes its `step`, and `on_log` then leaves that step alone."""
        self._taken_step = step
        distributed = dist.is_available() and dist.is_initialized()
        names = [*LOSS_PARTS, *sorted(set(self._sums) - set(LOSS_PARTS))] if not distributed else LOSS_PARTS
        if not self._counts and not distributed:
            return {}
        device = next(iter(self._sums.values())).device if self._sums else _device_of_group()
        sums = torch.stack([self._sums.get(n, torch.zeros((), device=device)) for n in names])
        counts = torch.tensor([float(self._counts.get(n, 0)) for n in names], device=sums.device)
        if distributed:
            both = torch.stack([sums, counts])  # (2, P): one collective for sums and counts
            dist.all_reduce(both)
            sums, counts = both[0], both[1]
        self._sums, self._counts = {}, {}
        means = (sums / counts.clamp(min=1)).tolist()  # the host read, on logging steps only
        present = counts.tolist()
        return {n: round(m, 6) for n, m, c in zip(names, means, present, strict=True) if c > 0}

    # ------------------------------------------------------------------ checks
    def _warn_on_decayed_scales(self, model: FGCLIPModel, optimizer: Any) -> None:
        """A stock Trainer decays every 0-dim parameter: decay pulls a raw scale to 0 (temperature 1)."""
        if optimizer is None or not hasattr(model, "logit_scales"):
            return
        scales = {id(p): head for head, p in model.logit_scales().items()}
        decayed = sorted(
            scales[id(p)]
            for group in optimizer.param_groups
            if group.get("weight_decay", 0) > 0
            for p in group["params"]
            if id(p) in scales
        )
        if decayed:
            logger.warning(
                "the optimizer applies weight decay to the logit scales (%s): it pulls them towards 0, "
                "i.e. temperature 1. Use FGCLIPTrainer or fgclip.train.optim.build_param_groups.",
                ", ".join(decayed),
            )


def _integrations(args: Any) -> list[str]:
    report_to = getattr(args, "report_to", None) or []
    report_to = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in report_to if name not in ("none", None)]


def _device_of_group() -> torch.device:
    """The device collectives of the default group run on (a rank without parts still joins)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


__all__ = ["LOSS_PARTS", "FGCLIPCallback", "unwrap"]
