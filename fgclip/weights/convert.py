"""Apply the name maps of `weights.names` to tensors: copy, transpose, q/k/v thirds, the upstream long table.

Each source tensor is read once (a fused `in_proj` feeds three rules) and dropped as soon as its last rule is
done, so converting needs little more memory than the converted state.
"""

from __future__ import annotations

from collections import Counter

import torch

from fgclip.weights.errors import ArchitectureError
from fgclip.weights.names import COPY, LONG_TABLE, THIRDS, TRANSPOSE, UPSTREAM_ORI_ROWS, Coverage, Rule
from fgclip.weights.sources import WeightSource


def apply_rule(rule: Rule, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Our tensor from the rule's source tensors (shapes checked; errors name the saved tensor)."""
    first = tensors[0]
    if rule.op == COPY:
        return first
    if rule.op == TRANSPOSE:
        if first.dim() != 2:
            raise ArchitectureError(
                f"{rule.sources[0]} has shape {tuple(first.shape)}, expected 2-D (in, out)"
            )
        return first.t().contiguous()  # (in, out) -> Linear's (out, in)
    if rule.op in THIRDS:
        if first.shape[0] % 3:
            raise ArchitectureError(f"{rule.sources[0]} has {first.shape[0]} rows, not 3 x width (q, k, v)")
        return first.chunk(3, dim=0)[THIRDS.index(rule.op)].contiguous()  # (3C, ...) -> (C, ...)
    if rule.op == LONG_TABLE:
        ori, res = tensors
        if ori.shape != res.shape:
            raise ArchitectureError(
                f"{rule.sources[0]} {tuple(ori.shape)} and {rule.sources[1]} {tuple(res.shape)} "
                "differ in shape"
            )
        return torch.cat([ori[:UPSTREAM_ORI_ROWS], res[UPSTREAM_ORI_ROWS:]], dim=0)  # (P, C)
    raise ValueError(f"unknown op {rule.op!r}")


def convert(source: WeightSource, cov: Coverage) -> dict[str, torch.Tensor]:
    """Our name -> tensor for every rule the source covers."""
    uses = Counter(s for rule in cov.rules for s in rule.sources)
    cache: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for rule in cov.rules:
        tensors = []
        for name in rule.sources:
            if name not in cache:
                cache[name] = source.tensor(cov.saved_name[name])
            tensors.append(cache[name])
            uses[name] -= 1
        out[rule.target] = apply_rule(rule, tensors)
        for name in rule.sources:
            if uses[name] == 0:
                cache.pop(name, None)
    return out


__all__ = ["apply_rule", "convert"]
