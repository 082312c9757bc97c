"""Synthetic fgclip batches for the step benchmarks: this collator's layout and upstream FG-CLIP's.

Token ids are random but CLIP-shaped (bos ... eos, padded with eos); region captions and hard negatives are
drawn from a pool of phrases, so they repeat the way real region captions and attribute-swapped negatives do.
`layout="indexed"` is what `RegionCollator` produces (one de-duplicated text list + index maps, padded to
its longest text); `layout="upstream"` is upstream's four text tensors padded to 77 / 248 positions.
"""

from __future__ import annotations

import torch

from fgclip.config import LN_100, FGCLIPConfig
from fgclip.data.collate import unique_rows
from fgclip.modeling.text import pad_to

BOS, EOS = 49406, 49407
VIT_B16_VISION = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=224,
    patch_size=16,
)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def model_config(tiny: bool = False, image_size: int = 224, **fields) -> FGCLIPConfig:
    """ViT-B/16-sized towers (CLIP's default text tower), or 1-layer towers for smoke runs on the CPU."""
    text = dict(eos_token_id=EOS, bos_token_id=BOS, pad_token_id=EOS, **(TINY if tiny else {}))
    vision = (
        dict(TINY, image_size=image_size, patch_size=32)
        if tiny
        else dict(VIT_B16_VISION, image_size=image_size)
    )
    defaults = dict(region_head="roi_projection", memory_bank_size=128, memory_bank_warmup_steps=0)
    return FGCLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=16 if tiny else 512,
        logit_scale_init_value=LN_100,
        **(defaults | fields),
    )


def token_rows(n: int, length: int, g: torch.Generator, full: bool = False) -> torch.Tensor:
    """n rows bos ... eos, eos-padded to `length`; the eos between length / 2 and length, or last (full)."""
    rows = torch.randint(1, BOS, (n, length), generator=g)
    rows[:, 0] = BOS
    ends = torch.randint(max(2, length // 2), length, (n,), generator=g)
    if full:
        ends.fill_(length - 1)
    rows[torch.arange(length).unsqueeze(0) >= ends.unsqueeze(1)] = EOS
    return rows


def step_batch(
    size: int,
    layout: str = "indexed",
    *,
    regions: int = 4,
    negatives: int = 10,
    image_size: int = 224,
    phrases: int | None = 400,
    text_length: int = 24,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """One image batch on the CPU: `size` images, `regions` boxes each with 1 + `negatives` hard texts.

    Region texts and negatives are drawn from `phrases` distinct phrases (None: every text distinct, the
    worst case for de-duplication); short captions end by `text_length` tokens; `text_length=77` makes every
    text 77 tokens long (long captions 248), the memory worst case.
    """
    if layout not in ("indexed", "upstream"):
        raise ValueError(f"layout={layout!r}: 'indexed' or 'upstream'")
    g = torch.Generator().manual_seed(seed)
    full = text_length >= 77
    phrase_length = 77 if full else 12
    n_region, n_hard = size * regions, size * regions * (1 + negatives)
    if phrases is None:  # every region text and negative distinct
        texts = token_rows(n_region + n_hard, phrase_length, g, full)
        region, hard = texts[:n_region], texts[n_region:]
    else:  # drawn from a pool: they repeat
        pool = token_rows(phrases, phrase_length, g, full)
        region = pool[torch.randint(0, phrases, (n_region,), generator=g)]  # (B * R, l)
        hard = pool[torch.randint(0, phrases, (n_hard,), generator=g)]  # (B * R * (1 + N), l)
    short = token_rows(size, 77 if full else text_length, g, full)  # (B, l)
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.6]).repeat(size, regions, 1)
    batch = {
        "pixel_values": torch.randn(size, 3, image_size, image_size, generator=g),
        "long_input_ids": token_rows(size, 248 if full else 150, g, full),
        "boxes": boxes + 0.05 * torch.rand(size, regions, 4, generator=g),
        "box_mask": torch.ones(size, regions, dtype=torch.bool),
        "hard_mask": torch.ones(size, regions, dtype=torch.bool),
    }
    if layout == "upstream":
        batch["long_input_ids"] = pad_to(batch["long_input_ids"], 248, EOS)
        batch["short_input_ids"] = pad_to(short, 77, EOS)
        batch["region_input_ids"] = pad_to(region, 77, EOS).reshape(size, regions, 77)
        batch["hard_input_ids"] = pad_to(hard, 77, EOS).reshape(size, regions, 1 + negatives, 77)
        return batch
    length = max(short.shape[1], region.shape[1])
    rows, index = unique_rows(torch.cat([pad_to(t, length, EOS) for t in (short, region, hard)]), EOS)
    longest = int((rows != EOS).sum(dim=1).max()) + 1
    batch["text_input_ids"] = rows[:, :longest]  # padded to the longest text, as the collator does
    batch["short_text_index"] = index[:size]
    batch["region_text_index"] = index[size : size + n_region].reshape(size, regions)
    batch["hard_text_index"] = index[size + n_region :].reshape(size, regions, 1 + negatives)
    return batch


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


__all__ = ["BOS", "EOS", "model_config", "step_batch", "to_device", "token_rows"]
