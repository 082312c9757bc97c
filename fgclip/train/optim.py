"""The only parameter-group builder. Named groups, each with its own learning rate and weight decay.

- logit scales: never decayed (decoupled weight decay pulls a raw scale towards 0, i.e. temperature 1;
  upstream FG-CLIP decays them), own learning rate if given;
- new heads (roi_projection, long-text projection, long position table, temporal pooling): own learning rate
  (the seed's follow-up: a randomly initialised head on the towers' rate can blow up the first steps);
- towers: weight decay on matrices only, never on biases, norms or other 1-D tensors.
"""

from __future__ import annotations

from typing import Any

from torch import nn

LOGIT_SCALES = ("logit_scale", "logit_scale_finegrained", "logit_scale_hardneg")
NEW_HEAD_PREFIXES = ("roi_projection.", "text_long_projection.", "long_position_embedding.", "temporal_pool.")


def group_of(name: str, param: nn.Parameter) -> str:
    if name in LOGIT_SCALES:
        return "logit_scales"
    decay = param.ndim >= 2 and "norm" not in name and "embedding" not in name
    head = name.startswith(NEW_HEAD_PREFIXES)
    return f"{'heads' if head else 'towers'}_{'decay' if decay else 'no_decay'}"


def build_param_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    head_learning_rate: float | None = None,
    logit_scale_learning_rate: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer param groups with a `name` key each; empty groups are left out."""
    lrs = {
        "towers": learning_rate,
        "heads": learning_rate if head_learning_rate is None else head_learning_rate,
        "logit_scales": learning_rate if logit_scale_learning_rate is None else logit_scale_learning_rate,
    }
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = group_of(name, param)
        family = key if key == "logit_scales" else key.split("_", 1)[0]
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "param_names": [],
                "lr": lrs[family],
                "weight_decay": weight_decay
                if key.endswith("_decay") and not key.endswith("no_decay")
                else 0.0,
            },
        )
        group["params"].append(param)
        group["param_names"].append(name)
    order = ["towers_decay", "towers_no_decay", "heads_decay", "heads_no_decay", "logit_scales"]
    return [groups[k] for k in order if k in groups]


def describe_param_groups(groups: list[dict[str, Any]]) -> str:
    """One line: name(count params, n tensors, lr, wd) per group."""
    parts = []
    for g in groups:
        count = sum(p.numel() for p in g["params"])
        parts.append(
            f"{g['name']}({len(g['params'])} tensors, {count:,} params, lr {g['lr']:.2e}, "
            f"wd {g['weight_decay']:g})"
        )
    return "param groups: " + " | ".join(parts)
