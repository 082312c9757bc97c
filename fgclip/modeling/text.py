"""Text side: the long-caption position table and one text-tower pass with any position table.

Long captions (248 tokens) use their own position table, made from CLIP's 77-row table by Long-CLIP's
knowledge-preserving 4x stretch (first 20 rows kept). All 77-position texts of a step (short captions, region
captions, hard negatives) go through the tower in one call, de-duplicated, padded to the longest of them;
under CLIP's causal mask the padding after the first EOS never reaches the pooled token.
"""

from __future__ import annotations

import inspect
from typing import cast

import torch
from transformers.masking_utils import create_causal_mask
from transformers.models.clip.modeling_clip import CLIPTextModel

_HASH_SEED = 20251019


@torch.no_grad()
def stretch_positions(table: torch.Tensor, keep: int, length: int) -> torch.Tensor:
    """(P, C) table -> (length, C): rows < keep copied; each later row i expands to 4 rows interpolating
    towards row i+1 (weights 1, 3/4, 2/4, 1/4); the last row extrapolates with slope (p[-1]-p[-2])/4."""
    p = table.float()
    n = p.shape[0]
    head = p[:keep]  # (keep, C)
    cur, nxt = p[keep : n - 1], p[keep + 1 : n]  # (n-1-keep, C) each
    steps = [cur + (nxt - cur) * (j / 4) for j in range(4)]
    middle = torch.stack(steps, dim=1).reshape(-1, p.shape[1])  # (4 * (n-1-keep), C)
    slope = (p[n - 1] - p[n - 2]) / 4
    tail = torch.stack([p[n - 1] + slope * j for j in range(4)], dim=0)  # (4, C)
    out = torch.cat([head, middle, tail], dim=0)  # (4n - 3 keep, C)
    return out[:length].to(table.dtype)


def first_eos(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the first EOS per row (pad = eos, so later EOS tokens are padding)."""
    return (input_ids == eos_token_id).int().argmax(dim=-1)


_MASK_PARAMS = inspect.signature(create_causal_mask).parameters


def _mask_kwargs(config, hidden: torch.Tensor) -> dict:
    """create_causal_mask's arguments across transformers 5.x (the cache argument was renamed)."""
    kwargs = {"config": config, "inputs_embeds": hidden, "attention_mask": None}
    for name in ("cache", "past_key_values"):
        if name in _MASK_PARAMS:
            kwargs[name] = None
    if "cache_position" in _MASK_PARAMS:
        kwargs["cache_position"] = torch.arange(hidden.shape[1], device=hidden.device)
    return kwargs


def encode_text(
    text_model: CLIPTextModel, input_ids: torch.Tensor, position_table: torch.Tensor
) -> torch.Tensor:
    """Pooled (first-EOS) final-layer-normed states of CLIP's text tower, with the given position table.

    With the tower's own 77-row table this is exactly `CLIPTextModel(...).pooler_output` (a test holds it
    to 1e-5); it exists so long captions can use the stretched table in the same tower.
    """
    length = input_ids.shape[-1]
    if length > position_table.shape[0]:
        raise ValueError(
            f"text of {length} tokens exceeds the position table ({position_table.shape[0]} rows)"
        )
    hidden = text_model.embeddings.token_embedding(input_ids) + position_table[:length].unsqueeze(
        0
    )  # (M, L, C)
    mask = create_causal_mask(**_mask_kwargs(text_model.config, hidden))
    hidden = text_model.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
    hidden = text_model.final_layer_norm(hidden)  # (M, L, C)
    eos_id = cast(int, text_model.config.eos_token_id)  # a CLIP text config holds one eos id
    eos = first_eos(input_ids, eos_id).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]  # (M, C)


_HASH_WEIGHTS: dict[str, torch.Tensor] = {}
_HASH_LENGTH = 256  # the weights of a shorter text are a prefix: keys do not depend on the padding


def _hash_weights(length: int, device: torch.device) -> torch.Tensor:
    """Per-position multipliers of the caption hash, copied to each device once (a copy per step or per
    new text length would be a blocking host-to-device transfer)."""
    key = str(device)
    if key not in _HASH_WEIGHTS or _HASH_WEIGHTS[key].shape[0] < length:
        gen = torch.Generator().manual_seed(_HASH_SEED)
        full = torch.randint(1, 2**31 - 1, (max(length, _HASH_LENGTH),), generator=gen)
        _HASH_WEIGHTS[key] = full.to(device)
    return _HASH_WEIGHTS[key][:length]


def caption_keys(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Integer key per text, equal for equal token sequences whatever the padding (for duplicate masking)."""
    flat = input_ids.reshape(-1, input_ids.shape[-1])  # (M, L)
    length = flat.shape[-1]
    positions = torch.arange(length, device=flat.device)
    live = positions.unsqueeze(0) <= first_eos(flat, eos_token_id).unsqueeze(1)  # (M, L)
    weights = _hash_weights(length, flat.device)  # fixed per position
    keys = ((flat.long() + 1) * weights * live).sum(dim=1)
    return keys.reshape(input_ids.shape[:-1])


def pad_to(ids: torch.Tensor, length: int, pad_id: int) -> torch.Tensor:
    if ids.shape[-1] >= length:
        return ids
    pad = ids.new_full((*ids.shape[:-1], length - ids.shape[-1]), pad_id)
    return torch.cat([ids, pad], dim=-1)
