"""Forward hook that keeps the model's latest per-head statistics (device tensors, no copy, no sync)."""

from __future__ import annotations

from typing import Any

import torch


class ModelStatsProbe:
    def __init__(self) -> None:
        self.latest: dict[str, torch.Tensor] = {}
        self.forwards = 0
        self._handle: Any = None  # torch.utils.hooks.RemovableHandle while attached

    def attach(self, model: torch.nn.Module) -> None:
        self._handle = model.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        stats = getattr(output, "stats", None)
        if stats and module.training:
            self.latest = stats
            self.forwards += 1


class GradNormProbe:
    """Gradient norm per optimizer param group, computed only when asked (on steps that will log)."""

    def __init__(self) -> None:
        self.latest: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def measure(self, optimizer: torch.optim.Optimizer) -> None:
        out: dict[str, torch.Tensor] = {}
        for index, group in enumerate(optimizer.param_groups):
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if not grads:
                continue
            norms = torch._foreach_norm(grads)
            out[str(group.get("name", f"group{index}"))] = torch.linalg.vector_norm(
                torch.stack(norms).float()
            )
        self.latest = out


def read_scalars(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """One host transfer for all scalars (stack, then .tolist())."""
    if not tensors:
        return {}
    names = list(tensors)
    values = torch.stack(
        [tensors[n].detach().float().reshape(()).to(tensors[names[0]].device) for n in names]
    )
    return dict(zip(names, values.cpu().tolist(), strict=True))
