"""Collate dataset samples into exactly the batch of `fgclip/batch.py`.

Runs on the CPU, in the DataLoader workers, so everything whose size depends on the data is decided here
and the model's step keeps fixed shapes:
- the 77-position texts (short captions, region captions, hard negatives) are de-duplicated by token ids
  into one list `text_input_ids` (U, L), padded to its longest text, with index maps `short_text_index`
  (B,), `region_text_index` (B, R) and `hard_text_index` (B, R, 1 + N) into it;
- regions are padded to `max_boxes_per_sample` slots (zero boxes, `box_mask` False, index 0);
- video frames that were decoded are listed in `frame_rows` (flat indices into B * T).
Long captions keep their own tensor (up to `long_max_length`). Hard negatives: a box with at least N
negatives (N = `num_hard_negatives`) is a hard box, its row is the positive then its first N negatives;
`hard_text_index`/`hard_mask` appear only when some sample has one.
Each region caption also gets its canonical key `region_caption_key` (B, R) and its word hashes
`region_caption_words` (B, R, W) (fgclip/data/caption_key.py): equal keys mark near-duplicate captions, and
a caption whose words all appear in another's is contained in it; the region loss and the memory bank mask
both as false negatives.
"""

from __future__ import annotations

from typing import Any

import torch

from fgclip.data.caption_key import CAPTION_WORDS, caption_key, caption_words
from fgclip.data.tokenizer import SHORT_TEXT_MAX_LENGTH, check_tokenizer, encode_texts


def unique_rows(ids: torch.Tensor, eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows equal up to their first eos are one text: the (U, L) distinct rows in first-seen order
    and (n,) the distinct row of each input row."""
    rows: dict[tuple[int, ...], int] = {}
    keep: list[int] = []  # the first input row of each distinct text
    remap: list[int] = []
    for slot, tokens in enumerate(ids.tolist()):
        end = tokens.index(eos_token_id) + 1 if eos_token_id in tokens else len(tokens)
        key = tuple(tokens[:end])
        if key not in rows:
            rows[key] = len(keep)
            keep.append(slot)
        remap.append(rows[key])
    return ids[keep], torch.tensor(remap, dtype=torch.long)


class TextTable:
    """Unique strings in first-seen order; `add` returns a string's slot."""

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}

    def add(self, text: str) -> int:
        return self.slots.setdefault(text, len(self.slots))

    def encode(self, tokenizer: Any, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, L) token rows, unique by ids (strings the tokenizer maps alike share a row), padded to the
        longest, and the map string slot -> row (S,)."""
        ids = encode_texts(tokenizer, list(self.slots), max_length)  # (S, L)
        return unique_rows(ids, tokenizer.eos_token_id)


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
            "long_input_ids": encode_texts(
                self.tokenizer, [s["long_caption"] for s in samples], self.long_max_length
            ),
        }
        table = TextTable()
        short = torch.tensor([table.add(s["short_caption"]) for s in samples], dtype=torch.long)  # (B,)
        region = torch.zeros((batch_size, slots), dtype=torch.long)  # (B, R) string slots
        near = torch.zeros((batch_size, slots), dtype=torch.long)  # (B, R) canonical keys, padding 0
        words = torch.zeros((batch_size, slots, CAPTION_WORDS), dtype=torch.long)  # (B, R, W) padding 0
        width = 1  # the batch's longest word row: the containment test compares W x W per pair
        box_mask = torch.zeros((batch_size, slots), dtype=torch.bool)
        for b, s in enumerate(samples):
            for r, caption in enumerate(s["region_texts"]):
                region[b, r] = table.add(caption)
                near[b, r] = caption_key(caption)
                hashes = caption_words(caption)
                words[b, r] = torch.tensor(hashes, dtype=torch.long)
                width = max(width, sum(1 for h in hashes if h))
            box_mask[b, : len(s["region_texts"])] = True
        hard = self._hard(samples, table)

        ids, row_of = table.encode(self.tokenizer, self.short_max_length)  # (U, L), (S,)
        batch["text_input_ids"] = ids
        batch["short_text_index"] = row_of[short]
        batch["region_text_index"] = torch.where(box_mask, row_of[region], 0)  # padding slots: row 0
        batch["region_caption_key"] = near
        batch["region_caption_words"] = words[..., :width].contiguous()  # (B, R, W' <= W)
        if hard is not None:
            index, hard_mask = hard
            batch["hard_text_index"] = torch.where(hard_mask.unsqueeze(-1), row_of[index], 0)
            batch["hard_mask"] = hard_mask

        if video:
            self._video(samples, batch, box_mask)
        else:
            boxes = torch.zeros((batch_size, slots, 4))  # (B, R, 4)
            for b, s in enumerate(samples):
                boxes[b, : s["boxes"].shape[0]] = s["boxes"]
            batch["boxes"] = boxes
            batch["box_mask"] = box_mask
        batch["boxes_dropped"] = torch.tensor([int(s["boxes_dropped"]) for s in samples], dtype=torch.long)
        return batch

    def _video(self, samples: list[dict[str, Any]], batch: dict, box_mask: torch.Tensor) -> None:
        batch_size, slots = len(samples), self.max_boxes
        frames = samples[0]["pixel_values"].shape[0]
        boxes = torch.zeros((batch_size, frames, slots, 4))  # (B, T, R, 4)
        frame_box_mask = torch.zeros((batch_size, frames, slots), dtype=torch.bool)  # (B, T, R)
        labels = torch.full((batch_size, slots), -1, dtype=torch.long)  # (B, R)
        for b, s in enumerate(samples):
            count = s["boxes"].shape[1]
            boxes[b, :, :count] = s["boxes"]
            frame_box_mask[b, :, :count] = s["box_frame_mask"]
            labels[b, :count] = s["region_labels"]
        frame_mask = torch.stack([s["frame_mask"] for s in samples])  # (B, T)
        batch["frame_mask"] = frame_mask
        batch["frame_rows"] = frame_mask.reshape(-1).nonzero().squeeze(1)  # (F,) decoded frames
        batch["boxes"] = boxes
        batch["box_frame_mask"] = frame_box_mask
        batch["box_mask"] = box_mask & frame_box_mask.any(dim=1)
        batch["region_labels"] = labels

    def _hard(
        self, samples: list[dict[str, Any]], table: TextTable
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """String slots (B, R, 1 + N) of the hard boxes' texts and hard_mask (B, R); None without any."""
        batch_size, slots, width = len(samples), self.max_boxes, 1 + self.num_negatives
        hard_mask = torch.zeros((batch_size, slots), dtype=torch.bool)
        index = torch.zeros((batch_size, slots, width), dtype=torch.long)
        for b, s in enumerate(samples):
            for r, group in enumerate(s.get("hard_texts") or ()):
                if len(group) >= width:  # fewer negatives than N: not a hard box
                    hard_mask[b, r] = True
                    index[b, r] = torch.tensor([table.add(t) for t in group[:width]], dtype=torch.long)
        if not hard_mask.any():
            return None
        return index, hard_mask


__all__ = ["RegionCollator", "TextTable", "unique_rows"]
