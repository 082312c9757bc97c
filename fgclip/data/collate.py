"""Collate dataset samples into exactly the batch of `fgclip/batch.py`.

Regions are padded to `max_boxes_per_sample` (padding rows: zero boxes, bos+eos texts, `box_mask` False).
Each text group is padded to its longest text in the batch (long captions up to `long_max_length`, the others
up to 77). Hard negatives: a box with at least N negatives (N = `num_hard_negatives`) is a hard box, its row is
the positive then its first N negatives; `hard_input_ids`/`hard_mask` appear only when some sample has one.
"""

from __future__ import annotations

from typing import Any

import torch

from fgclip.data.tokenizer import SHORT_TEXT_MAX_LENGTH, check_tokenizer, encode_texts


class RegionCollator:
    """samples (from ImageRegionDataset or VideoRegionDataset) -> dict of tensors (see fgclip/batch.py)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_boxes_per_sample: int = 4,
        num_hard_negatives: int = 10,
        long_max_length: int = 248,
        short_max_length: int = SHORT_TEXT_MAX_LENGTH,
    ) -> None:
        check_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.max_boxes = max_boxes_per_sample
        self.num_negatives = num_hard_negatives
        self.long_max_length = long_max_length
        self.short_max_length = short_max_length

    def _encode(self, texts: list[str], max_length: int) -> torch.Tensor:
        return encode_texts(self.tokenizer, texts, max_length)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch_size, slots = len(samples), self.max_boxes
        for s in samples:
            if len(s["region_texts"]) > slots:
                raise ValueError(
                    f"sample {s.get('index')} has {len(s['region_texts'])} regions but max_boxes_per_sample="
                    f"{slots}; build the dataset with the same max_boxes_per_sample so the surplus is counted"
                )
        video = samples[0]["pixel_values"].dim() == 4
        batch: dict[str, torch.Tensor] = {
            "pixel_values": torch.stack([s["pixel_values"] for s in samples]),  # (B, [T,] 3, H, W)
            "long_input_ids": self._encode([s["long_caption"] for s in samples], self.long_max_length),
            "short_input_ids": self._encode([s["short_caption"] for s in samples], self.short_max_length),
        }
        region_texts = [""] * (batch_size * slots)
        box_mask = torch.zeros((batch_size, slots), dtype=torch.bool)
        for b, s in enumerate(samples):
            count = len(s["region_texts"])
            region_texts[b * slots : b * slots + count] = s["region_texts"]
            box_mask[b, :count] = True
        region_ids = self._encode(region_texts, self.short_max_length)  # (B*R, L)
        batch["region_input_ids"] = region_ids.view(batch_size, slots, -1)  # (B, R, L)

        if video:
            frames = samples[0]["pixel_values"].shape[0]
            boxes = torch.zeros((batch_size, frames, slots, 4))  # (B, T, R, 4)
            frame_box_mask = torch.zeros((batch_size, frames, slots), dtype=torch.bool)  # (B, T, R)
            labels = torch.full((batch_size, slots), -1, dtype=torch.long)  # (B, R)
            for b, s in enumerate(samples):
                count = s["boxes"].shape[1]
                boxes[b, :, :count] = s["boxes"]
                frame_box_mask[b, :, :count] = s["box_frame_mask"]
                labels[b, :count] = s["region_labels"]
            batch["frame_mask"] = torch.stack([s["frame_mask"] for s in samples])  # (B, T)
            batch["boxes"] = boxes
            batch["box_frame_mask"] = frame_box_mask
            batch["box_mask"] = box_mask & frame_box_mask.any(dim=1)
            batch["region_labels"] = labels
        else:
            boxes = torch.zeros((batch_size, slots, 4))  # (B, R, 4)
            for b, s in enumerate(samples):
                boxes[b, : s["boxes"].shape[0]] = s["boxes"]
            batch["boxes"] = boxes
            batch["box_mask"] = box_mask

        hard = self._hard(samples)
        if hard is not None:
            batch["hard_input_ids"], batch["hard_mask"] = hard
        batch["boxes_dropped"] = torch.tensor([int(s["boxes_dropped"]) for s in samples], dtype=torch.long)
        return batch

    def _hard(self, samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor] | None:
        batch_size, slots, width = len(samples), self.max_boxes, 1 + self.num_negatives
        hard_mask = torch.zeros((batch_size, slots), dtype=torch.bool)
        texts = [""] * (batch_size * slots * width)
        for b, s in enumerate(samples):
            for r, group in enumerate(s.get("hard_texts") or ()):
                if len(group) >= width:  # fewer negatives than N: not a hard box
                    hard_mask[b, r] = True
                    start = (b * slots + r) * width
                    texts[start : start + width] = list(group[:width])
        if not hard_mask.any():
            return None
        ids = self._encode(texts, self.short_max_length)  # (B*R*(1+N), L)
        return ids.view(batch_size, slots, width, -1), hard_mask  # (B, R, 1+N, L), (B, R)


__all__ = ["RegionCollator"]
