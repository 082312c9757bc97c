"""Pooling of per-frame features into one clip feature, honouring the frame mask."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, T, D), mask (B, T) -> (B, D); an all-masked clip gives zeros (never NaN)."""
    w = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """Learned softmax weights over the real frames (the fgclip-vad fork's attention pooling, without its
    temporal transformer)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(
            nn.Linear(dim, max(dim // 2, 1)), nn.ReLU(), nn.Linear(max(dim // 2, 1), 1)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).squeeze(-1).float()  # (B, T)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0).to(x.dtype)  # all-masked rows -> zeros
        return (weights.unsqueeze(-1) * x).sum(dim=1)  # (B, D)
