"""Parity oracle: the selection-based step as it stood before the fixed-shape path (commit ef800f3).

A frozen copy of that forward - boolean selection of the real frames, the valid regions and the hard rows,
`torch.unique` de-duplication of the texts, region and hard-negative losses over the N selected rows, the
memory bank's data-dependent enqueue - run on the modules of a current FGCLIPModel, so the tests can hold
the new path to it. It makes host syncs by design; only the tests use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fgclip.modeling import regions, text
from fgclip.modeling.memory_bank import MIN_KEY_NORM
from fgclip.modeling.temporal import masked_mean

NEG_INF = float("-inf")


def to_legacy(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An indexed batch (this collator) -> the per-group layout of the older collator, same tokens."""
    ids = batch["text_input_ids"]
    out = {k: v for k, v in batch.items() if not k.endswith("_text_index") and k not in ("text_input_ids",)}
    out.pop("frame_rows", None)
    out["short_input_ids"] = ids[batch["short_text_index"]]
    out["region_input_ids"] = ids[batch["region_text_index"]]
    if "hard_text_index" in batch:
        out["hard_input_ids"] = ids[batch["hard_text_index"]]
    return out


def _encode_frames(model, pixel_values, frame_mask):
    video = pixel_values.dim() == 5
    if video:
        b, t = pixel_values.shape[:2]
        frame_mask = torch.ones(b, t, dtype=torch.bool) if frame_mask is None else frame_mask
        frames = pixel_values[frame_mask]  # (F, 3, H, W)
        frame_index = torch.full((b, t), -1, dtype=torch.long)
        frame_index[frame_mask] = torch.arange(frames.shape[0])
    else:
        frames, frame_index = pixel_values, torch.arange(pixel_values.shape[0]).unsqueeze(1)
    out = model.vision_model(pixel_values=frames, output_hidden_states=True)
    per_frame = model.visual_projection(out.pooler_output)  # (F, D)
    if video:
        dense = per_frame.new_zeros(b, t, per_frame.shape[-1])
        dense[frame_mask] = per_frame
        pool = model.temporal_pool if model.temporal_pool is not None else masked_mean
        pooled = pool(dense, frame_mask)
    else:
        pooled = per_frame
    tokens = regions.value_only_block(model.vision_model.encoder.layers[-1], out.hidden_states[-2])
    return pooled, regions.dense_grid(model.vision_model.post_layernorm(tokens)), frame_index


def _encode_short_texts(model, groups):
    groups = [g.reshape(-1, g.shape[-1]) for g in groups]
    sizes = [g.shape[0] for g in groups]
    length = max(g.shape[-1] for g in groups)
    pad = model.config.text_config.eos_token_id
    ids = torch.cat([text.pad_to(g, length, pad) for g in groups], dim=0)  # (M, L)
    unique, inverse = torch.unique(ids, dim=0, return_inverse=True)
    emb = F.normalize(model.get_text_features(unique).float(), dim=-1)[inverse]  # (M, D)
    return list(torch.split(emb, sizes, dim=0))


def _region_loss(model, region, text_emb, keys):
    bank, scale = model.memory_bank, model.logit_scale_finegrained.float().exp()
    n = region.shape[0]
    targets = torch.arange(n)
    logits_i2t, logits_t2i = scale * region @ text_emb.T, scale * text_emb @ region.T
    candidates = torch.full((), float(n))
    if model.region_loss.mask_duplicates and n:
        same = keys.unsqueeze(0) == keys.unsqueeze(1)
        same.fill_diagonal_(False)
        logits_i2t, logits_t2i = logits_i2t.masked_fill(same, NEG_INF), logits_t2i.masked_fill(same, NEG_INF)
        candidates = candidates - same.float().sum(dim=1).mean()
    if bank is not None:
        q_image, q_text, usable = bank.negatives(keys)
        logits_i2t = torch.cat([logits_i2t, (scale * region @ q_text.T).masked_fill(~usable, NEG_INF)], 1)
        logits_t2i = torch.cat([logits_t2i, (scale * text_emb @ q_image.T).masked_fill(~usable, NEG_INF)], 1)
        candidates = candidates + usable.float().sum(dim=1).mean() if n else candidates
    if n == 0:
        loss = region.sum() * 0.0
    else:
        loss = (F.cross_entropy(logits_i2t, targets) + F.cross_entropy(logits_t2i, targets)) / 2
    if bank is not None and bank.training:
        _enqueue(bank, region.detach(), text_emb.detach(), keys)
    return model.region_loss.weight * loss, candidates


@torch.no_grad()
def _enqueue(bank, image, text_emb, keys):
    ok = (
        torch.isfinite(image).all(dim=1)
        & torch.isfinite(text_emb).all(dim=1)
        & (image.norm(dim=1) > MIN_KEY_NORM)
        & (text_emb.norm(dim=1) > MIN_KEY_NORM)
    )
    image, text_emb, keys = image[ok], text_emb[ok], keys[ok]
    n = image.shape[0]
    if n == 0:
        return
    if n > bank.size:
        image, text_emb, keys = image[-bank.size :], text_emb[-bank.size :], keys[-bank.size :]
        bank.ptr.add_(n - bank.size).remainder_(bank.size)
        n = bank.size
    index = (bank.ptr + torch.arange(n)) % bank.size
    bank.image_queue[index] = F.normalize(image.float(), dim=1)
    bank.text_queue[index] = F.normalize(text_emb.float(), dim=1)
    bank.caption_keys[index] = keys
    bank.entry_step[index] = bank.optimizer_steps
    bank.ptr.add_(n).remainder_(bank.size)
    bank.fill.clamp_(max=bank.size - n).add_(n)


def legacy_step(model, batch: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(losses, stats) of the old selection-based forward for a per-group batch (see `to_legacy`)."""
    b = batch
    image_pooled, grid, frame_index = _encode_frames(model, b["pixel_values"], b.get("frame_mask"))
    image = F.normalize(image_pooled.float(), dim=-1)
    boxes, box_mask = b["boxes"], b["box_mask"]
    if boxes.dim() == 3:
        boxes_t, frame_boxes = boxes.unsqueeze(1), box_mask.unsqueeze(1)
    else:
        boxes_t, frame_boxes = boxes, b["box_frame_mask"]
    feats, has_box = regions.track_features(grid, boxes_t, frame_boxes & box_mask.unsqueeze(1), frame_index)
    valid = box_mask & has_box
    raw = feats[valid]
    usable = torch.isfinite(raw).all(dim=-1) & (raw.float().norm(dim=-1) > 1e-6)
    keep = valid.clone()
    keep[valid] = usable
    region_emb = F.normalize(model._project_regions(feats[keep]).float(), dim=-1)  # (N, D)
    region_ids = b["region_input_ids"][keep]
    groups = [b["short_input_ids"], region_ids]
    hard_ids = None
    if "hard_input_ids" in b:
        hard_rows = (b["hard_mask"] & keep)[keep].nonzero(as_tuple=True)[0]
        hard_ids = b["hard_input_ids"][b["hard_mask"] & keep]  # (H, 1 + N, L)
        groups.append(hard_ids.reshape(-1, hard_ids.shape[-1]))
    embs = _encode_short_texts(model, groups)
    long_emb = F.normalize(model.get_text_features(b["long_input_ids"], long=True).float(), dim=-1)
    losses = {}
    losses.update(model.global_long_loss(image, long_emb, model.logit_scale)[0])
    losses.update(model.global_short_loss(image, embs[0], model.logit_scale)[0])
    keys = text.caption_keys(region_ids, model.config.text_config.eos_token_id)
    losses["region_loss"], candidates = _region_loss(model, region_emb, embs[1], keys)
    if hard_ids is not None:
        hard_texts = embs[2].reshape(hard_rows.shape[0], hard_ids.shape[1], -1)  # (H, 1 + N, D)
        scale = model.logit_scale_hardneg.float().exp()
        logits = scale * torch.einsum("hd,hkd->hk", region_emb[hard_rows], hard_texts)
        targets = torch.zeros(logits.shape[0], dtype=torch.long)
        loss = F.cross_entropy(logits, targets) if logits.shape[0] else region_emb.sum() * 0.0
        losses["hard_negative_loss"] = model.hard_negative_loss.weight * loss
    stats = {"regions/valid": usable.float().sum(), "candidates/region": candidates}
    return losses, stats
