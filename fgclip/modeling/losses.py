"""One module per loss. Each returns its weighted `<name>_loss` and detached per-head statistics.

Statistics stay device tensors (no `.item()`), so a step that does not log pays no host sync; the
diagnostics read them on logging steps only. Logits are computed in float32 whatever the training dtype
(at scale 100, bf16 logits are quantised to 0.5). Each head also reports the loss its own logits would give
at the clamp scale (`loss_at_max_scale`) and the gap to its hardest negative in cosine units
(`hardest_gap`): a head stuck at a low temperature shows a loss far above what the same cosines allow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import fgclip.modeling.dist as dist
import fgclip.vocab as V
from fgclip.modeling.duplicates import Captions, DuplicateMasking, pair_counts, share
from fgclip.modeling.memory_bank import RegionMemoryBank
from fgclip.vocab import LN_100

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
    loss_at_max: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Range of the logits actually fed to cross-entropy, positive vs negative means, cosine spread, the
    floor the current temperature and spread put under the loss, and the mean per-row gap between the
    positive and the hardest negative in cosine units. Masked (-inf) entries and the rows `row_mask` leaves
    out (padding regions) are ignored. `loss_at_max` (the head loss at the clamp scale) is passed through.

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
    hardest_gap = _hardest_gap(x, targets, valid, live, pos, scale.float(), big)
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
        V.HARDEST_GAP: hardest_gap,
        V.LOSS_AT_MAX_SCALE: (loss if loss_at_max is None else loss_at_max).detach().float(),
    }


def _hardest_gap(x, targets, valid, live, pos, scale, big) -> torch.Tensor:
    """Mean over the live rows with a negative of (positive - hardest unmasked negative) / scale."""
    if not x.numel():
        return torch.full((), float("nan"), device=x.device)
    columns = torch.arange(x.shape[1], device=x.device)
    negative = valid & (columns.unsqueeze(0) != targets.unsqueeze(1))  # (N, K)
    hardest = torch.where(negative, x, -big).amax(dim=1)  # (N,)
    rows = negative.any(dim=1) & live  # (N,)
    n = rows.sum()
    total = torch.where(rows, pos - hardest, 0.0).sum()
    return torch.where(n > 0, total / n.clamp(min=1) / scale, torch.full_like(total, float("nan")))


@torch.no_grad()
def loss_at_scale(
    logits: list[torch.Tensor],
    targets: torch.Tensor,
    raw_scale: torch.Tensor,
    max_raw_scale: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The head's loss recomputed on its detached logits with the scale set to exp(max_raw_scale): the
    mean over `logits` (one per direction) of the `weights`-weighted mean row cross-entropy.

    At the clamp scale a run's cosines give the loss they would give without a temperature holding them
    back; a head at CLIP's from-scratch 2.6592 (scale 14.3) shows a loss far above it from its first steps.
    """
    ratio = torch.exp(max_raw_scale - raw_scale.detach().float())  # exp(max) / exp(raw)
    per_row = torch.stack(
        [F.cross_entropy(x.detach().float() * ratio, targets, reduction="none") for x in logits]
    ).mean(dim=0)  # (N,): the mean over the directions
    if weights is None:
        return per_row.mean()
    return (per_row * weights).sum() / weights.sum().clamp(min=1)


class GlobalContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between images and captions, gathered across ranks with gradients.

    Each rank scores its local images against all ranks' texts (and local texts against all images);
    targets are offset by rank * local batch, as in FG-CLIP and open_clip's local loss.
    """

    def __init__(self, name: str, weight: float, max_raw_scale: float = LN_100):
        super().__init__()
        self.name = name
        self.weight = weight
        self.max_raw_scale = max_raw_scale  # the clamp: the scale `loss_at_max_scale` is computed at

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
        at_max = loss_at_scale([logits_i2t, logits_t2i], targets, raw_scale, self.max_raw_scale)
        stats = logit_stats(logits_i2t.detach(), targets, scale, raw_scale, k, loss, loss_at_max=at_max)
        return {f"{self.name}_loss": self.weight * loss}, stats


class RegionContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between region (RoI) features and region-caption embeddings.

    Rows are every region slot of the batch; `valid` says which count (a padding slot or an empty box
    neither asks nor answers). Candidates are the other valid regions plus, once the memory bank is active,
    the queued regions of earlier steps. Candidates whose caption duplicates the positive's (in the batch or
    in the queue) are false negatives: `masking` (fgclip/modeling/duplicates.py) says which are masked -
    exact duplicates, canonical-key near-duplicates, contained captions, captions within a text cosine. The
    current regions are enqueued after the logits are computed, so a query never meets itself among the
    negatives.
    """

    def __init__(
        self,
        weight: float,
        mask_duplicates: bool = True,
        *,
        mask_near_duplicates: bool = True,
        mask_contained_captions: bool = True,
        near_duplicate_cosine: float | None = None,
        max_raw_scale: float = LN_100,
    ):
        super().__init__()
        self.weight = weight
        self.mask_duplicates = mask_duplicates
        self.masking = DuplicateMasking(
            mask_duplicates, mask_near_duplicates, mask_contained_captions, near_duplicate_cosine
        )
        self.max_raw_scale = max_raw_scale

    def forward(
        self,
        region: torch.Tensor,
        text: torch.Tensor,
        raw_scale: torch.Tensor,
        caption_keys: torch.Tensor,
        bank: RegionMemoryBank | None = None,
        valid: torch.Tensor | None = None,
        near_keys: torch.Tensor | None = None,
        words: torch.Tensor | None = None,
    ):
        # region, text (M, D); caption_keys (M,): equal = the same caption; near_keys (M,): equal canonical
        # caption (default: caption_keys); words (M, W): canonical word hashes (default: none); valid (M,)
        m = region.shape[0]
        valid = torch.ones(m, dtype=torch.bool, device=region.device) if valid is None else valid
        region = torch.where(valid.unsqueeze(1), region.float(), 0.0)
        text = torch.where(valid.unsqueeze(1), text.float(), 0.0)
        scale = raw_scale.float().exp()
        targets = torch.arange(m, device=region.device)
        eye = torch.eye(m, dtype=torch.bool, device=region.device)
        captions = Captions(caption_keys, caption_keys if near_keys is None else near_keys, text, words)
        pairs = self.masking.pairs(captions, captions)  # (M, M)
        candidate = valid.unsqueeze(0) & valid.unsqueeze(1) & ~eye  # (M, M): column j is a negative of row i
        used = candidate & ~pairs.masked
        counts = [pair_counts(pairs, candidate, used)]
        allowed = used | eye  # the positive; a padding row keeps only it (finite, zero loss)
        logits_i2t = (scale * region @ text.T).masked_fill(~allowed, NEG_INF)  # (M, M)
        logits_t2i = (scale * text @ region.T).masked_fill(~allowed, NEG_INF)  # (M, M)
        per_row = allowed.float().sum(dim=1)  # candidates per query, the positive included
        queue: dict[str, torch.Tensor] = {}
        if bank is not None:
            q_image, q_captions, filled = bank.entries()  # (Kq, D), keys and text (Kq, D), (Kq,)
            q_pairs = self.masking.pairs(captions, q_captions)  # (M, Kq)
            q_candidate = filled.unsqueeze(0) & valid.unsqueeze(1)  # counted before the bank is active
            usable = q_candidate & bank.active & ~q_pairs.masked  # (M, Kq)
            queue_i2t = (scale * region @ q_captions.text.float().T).masked_fill(~usable, NEG_INF)
            queue_t2i = (scale * text @ q_image.float().T).masked_fill(~usable, NEG_INF)  # (M, Kq)
            logits_i2t = torch.cat([logits_i2t, queue_i2t], dim=1)  # (M, M + Kq)
            logits_t2i = torch.cat([logits_t2i, queue_t2i], dim=1)  # (M, M + Kq)
            per_row = per_row + usable.float().sum(dim=1)
            counts.append(pair_counts(q_pairs, q_candidate, usable))
            queue = counts[-1]
        weights = valid.float()
        count = weights.sum().clamp(min=1)
        candidates = (per_row * weights).sum() / count
        per_query = F.cross_entropy(logits_i2t, targets, reduction="none") + F.cross_entropy(
            logits_t2i, targets, reduction="none"
        )  # (M,)
        loss = (per_query * weights).sum() / (2 * count)  # 0 with a graph when no region is valid
        logits = [logits_i2t, logits_t2i]
        at_max = loss_at_scale(logits, targets, raw_scale, self.max_raw_scale, weights)
        stats = logit_stats(logits_i2t.detach(), targets, scale, raw_scale, candidates, loss, valid, at_max)
        stats.update(_duplicate_stats(counts[0], queue, counts))
        if bank is not None:
            stats.update({f"{V.MEMORY_BANK}/{k}": v for k, v in bank.stats().items()})
            if bank.training:
                bank.enqueue(region.detach(), text.detach(), caption_keys, valid, captions.canonical, words)
        return {"region_loss": self.weight * loss}, stats


def _duplicate_stats(batch: dict, queue: dict, every: list[dict]) -> dict[str, torch.Tensor]:
    """Shares of duplicate captions among the candidate pairs (batch, queue) and among the used negatives."""
    used = sum(c["used"] for c in every)
    out = {
        V.EXACT_DUP_SHARE: share(batch["exact"], batch["pairs"]),
        V.NEAR_DUP_SHARE: share(batch["near"], batch["pairs"]),
        V.UNMASKED_DUP_SHARE: share(sum(c["used_duplicates"] for c in every), used),
    }
    if queue:
        out[V.MB_DUP_SHARE] = share(queue["exact"], queue["pairs"])
        out[V.MB_NEAR_DUP_SHARE] = share(queue["near"], queue["pairs"])
    return out


class HardNegativeLoss(nn.Module):
    """(1 + N)-way cross-entropy per hard box: its caption against N attribute-swapped negatives."""

    def __init__(self, weight: float, max_raw_scale: float = LN_100):
        super().__init__()
        self.weight = weight
        self.max_raw_scale = max_raw_scale

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
        at_max = loss_at_scale([logits], targets, raw_scale, self.max_raw_scale, weights)
        stats = logit_stats(logits.detach(), targets, scale, raw_scale, k, loss, valid, at_max)
        return {"hard_negative_loss": self.weight * loss}, stats
