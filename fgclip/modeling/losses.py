"""One module per loss. Each returns its weighted `<name>_loss` and detached per-head statistics.

Statistics stay device tensors (no `.item()`), so a step that does not log pays no host sync; the
diagnostics read them on logging steps only. Logits are computed in float32 whatever the training dtype
(at scale 100, bf16 logits are quantised to 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import fgclip.modeling.dist as dist
import fgclip.vocab as V
from fgclip.modeling.memory_bank import RegionMemoryBank

NEG_INF = float("-inf")


@torch.no_grad()
def logit_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scale: torch.Tensor,
    raw_scale: torch.Tensor,
    candidates: torch.Tensor,
    loss: torch.Tensor,
    row_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Range of the logits actually fed to cross-entropy, positive vs negative means, cosine spread and the
    floor the current temperature and spread put under the loss. Masked (-inf) entries and the rows
    `row_mask` leaves out (padding regions) are ignored.

    Only masked reductions (no boolean indexing), so computing them never waits for the device: the
    diagnostics read them on logging steps only.
    """
    x = logits.float()
    live = torch.ones(x.shape[0], dtype=torch.bool, device=x.device) if row_mask is None else row_mask
    valid = torch.isfinite(x) & live.unsqueeze(1)  # (N, K)
    n_valid = valid.sum()
    zero = torch.zeros((), device=x.device)
    nan = torch.full((), float("nan"), device=x.device)
    xv = torch.where(valid, x, zero)
    mean = xv.sum() / n_valid.clamp(min=1)
    var = torch.where(valid, (x - mean) ** 2, zero).sum() / (n_valid - 1).clamp(min=1)
    std = torch.where(n_valid > 1, var.sqrt(), nan)
    has = n_valid > 0
    rows = live.sum()
    pos = x.gather(1, targets.view(-1, 1)).squeeze(1) if x.shape[0] else x.new_zeros(0)  # (N,)
    pos = torch.where(live, pos, zero)
    pos_mean = torch.where(rows > 0, pos.sum() / rows.clamp(min=1), nan)
    n_neg = n_valid - rows
    neg_mean = torch.where(n_neg > 0, (xv.sum() - pos.sum()) / n_neg.clamp(min=1), nan)
    k = candidates.float()
    gap = (pos_mean - neg_mean).nan_to_num(0.0)
    # best achievable loss if every positive/negative sat at the current mean gap: ln(1 + (K-1) e^{-gap})
    floor = torch.log1p((k - 1).clamp(min=0) * torch.exp(-gap))
    big = torch.finfo(torch.float32).max
    return {
        V.LOGIT_SCALE: raw_scale.detach().float(),
        V.LOGIT_SCALE_EXP: scale.detach().float(),
        V.LOGITS_MIN: torch.where(has, torch.where(valid, x, big).amin() if x.numel() else zero, nan),
        V.LOGITS_MAX: torch.where(has, torch.where(valid, x, -big).amax() if x.numel() else zero, nan),
        V.LOGITS_MEAN: torch.where(has, mean, nan),
        V.LOGITS_STD: std,
        V.POS_MEAN: pos_mean,
        V.NEG_MEAN: neg_mean,
        V.COS_STD: std / scale.float(),
        V.CANDIDATES: k,
        V.CHANCE: torch.log(k.clamp(min=1)),
        V.HEAD_LOSS: loss.detach().float(),
        V.LOSS_FLOOR: floor,
    }


class GlobalContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between images and captions, gathered across ranks with gradients.

    Each rank scores its local images against all ranks' texts (and local texts against all images);
    targets are offset by rank * local batch, as in FG-CLIP and open_clip's local loss.
    """

    def __init__(self, name: str, weight: float):
        super().__init__()
        self.name = name
        self.weight = weight

    def forward(self, image: torch.Tensor, text: torch.Tensor, raw_scale: torch.Tensor):
        image, text = image.float(), text.float()
        scale = raw_scale.float().exp()
        all_image, all_text = dist.gather_with_grad(image), dist.gather_with_grad(text)
        n = image.shape[0]
        targets = torch.arange(n, device=image.device) + dist.rank() * n
        logits_i2t = scale * image @ all_text.T  # (B, B*W)
        logits_t2i = scale * text @ all_image.T  # (B, B*W)
        loss = (F.cross_entropy(logits_i2t, targets) + F.cross_entropy(logits_t2i, targets)) / 2
        k = torch.full((), float(all_text.shape[0]), device=image.device)
        stats = logit_stats(logits_i2t.detach(), targets, scale, raw_scale, k, loss)
        return {f"{self.name}_loss": self.weight * loss}, stats


class RegionContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between region (RoI) features and region-caption embeddings.

    Rows are every region slot of the batch; `valid` says which count (a padding slot or an empty box
    neither asks nor answers). Candidates are the other valid regions plus, once the memory bank is active,
    the queued regions of earlier steps; with `mask_duplicates`, candidates whose caption key equals the
    positive's (in the batch or in the queue) are masked out: they are false negatives. The current regions
    are enqueued after the logits are computed, so a query never meets itself among the negatives.
    """

    def __init__(self, weight: float, mask_duplicates: bool = True):
        super().__init__()
        self.weight = weight
        self.mask_duplicates = mask_duplicates

    def forward(
        self,
        region: torch.Tensor,
        text: torch.Tensor,
        raw_scale: torch.Tensor,
        caption_keys: torch.Tensor,
        bank: RegionMemoryBank | None = None,
        valid: torch.Tensor | None = None,
    ):
        # region, text (M, D); caption_keys (M,): equal keys = the same caption; valid (M,) bool
        m = region.shape[0]
        valid = torch.ones(m, dtype=torch.bool, device=region.device) if valid is None else valid
        region = torch.where(valid.unsqueeze(1), region.float(), 0.0)
        text = torch.where(valid.unsqueeze(1), text.float(), 0.0)
        scale = raw_scale.float().exp()
        targets = torch.arange(m, device=region.device)
        eye = torch.eye(m, dtype=torch.bool, device=region.device)
        allowed = valid.unsqueeze(0).expand(m, m)  # (M, M): column j is a candidate of row i
        if self.mask_duplicates:
            # another region with the same caption is not a negative (repeated captions are frequent)
            allowed = allowed & (caption_keys.unsqueeze(0) != caption_keys.unsqueeze(1))
        allowed = allowed | eye  # the positive; a padding row keeps only it (finite, zero loss)
        logits_i2t = (scale * region @ text.T).masked_fill(~allowed, NEG_INF)  # (M, M)
        logits_t2i = (scale * text @ region.T).masked_fill(~allowed, NEG_INF)  # (M, M)
        per_row = allowed.float().sum(dim=1)  # candidates per query, the positive included
        if bank is not None:
            q_image, q_text, usable = bank.negatives(caption_keys)  # (Kq, D), (Kq, D), (M, Kq)
            usable = usable & valid.unsqueeze(1)
            queue_i2t = (scale * region @ q_text.float().T).masked_fill(~usable, NEG_INF)  # (M, Kq)
            queue_t2i = (scale * text @ q_image.float().T).masked_fill(~usable, NEG_INF)  # (M, Kq)
            logits_i2t = torch.cat([logits_i2t, queue_i2t], dim=1)  # (M, M + Kq)
            logits_t2i = torch.cat([logits_t2i, queue_t2i], dim=1)  # (M, M + Kq)
            per_row = per_row + usable.float().sum(dim=1)
        weights = valid.float()
        count = weights.sum().clamp(min=1)
        candidates = (per_row * weights).sum() / count
        per_query = F.cross_entropy(logits_i2t, targets, reduction="none") + F.cross_entropy(
            logits_t2i, targets, reduction="none"
        )  # (M,)
        loss = (per_query * weights).sum() / (2 * count)  # 0 with a graph when no region is valid
        stats = logit_stats(logits_i2t.detach(), targets, scale, raw_scale, candidates, loss, valid)
        if bank is not None:
            stats.update({f"{V.MEMORY_BANK}/{k}": v for k, v in bank.stats(caption_keys, valid).items()})
            if bank.training:
                bank.enqueue(region.detach(), text.detach(), caption_keys, valid)
        return {"region_loss": self.weight * loss}, stats


class HardNegativeLoss(nn.Module):
    """(1 + N)-way cross-entropy per hard box: its caption against N attribute-swapped negatives."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(
        self,
        region: torch.Tensor,
        texts: torch.Tensor,
        raw_scale: torch.Tensor,
        valid: torch.Tensor | None = None,
    ):
        # region (H, D); texts (H, 1 + N, D) with the positive first; valid (H,) bool: rows that count
        h = region.shape[0]
        valid = torch.ones(h, dtype=torch.bool, device=region.device) if valid is None else valid
        region = torch.where(valid.unsqueeze(1), region.float(), 0.0)
        texts = texts.float()
        scale = raw_scale.float().exp()
        logits = scale * torch.einsum("hd,hkd->hk", region, texts)  # (H, 1 + N)
        targets = torch.zeros(h, dtype=torch.long, device=region.device)
        weights = valid.float()
        per_row = F.cross_entropy(logits, targets, reduction="none")  # (H,)
        loss = (per_row * weights).sum() / weights.sum().clamp(min=1)  # 0 with a graph when none counts
        k = torch.full((), float(texts.shape[1]), device=region.device)
        stats = logit_stats(logits.detach(), targets, scale, raw_scale, k, loss, valid)
        return {"hard_negative_loss": self.weight * loss}, stats
