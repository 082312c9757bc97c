"""Helpers shared by the data tests: record writers, planted-defect counts, the batch-contract check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fgclip.batch import IMAGE_KEYS, OPTIONAL_KEYS

GRID = 8  # 64 px images, patch 8
DEFECTS = {
    "malformed": 1,
    "non_finite": 2,
    "wrong_space": 1,
    "inverted": 3,
    "zero_area": 2,
    "out_of_range": 2,
    "sub_cell": 1,
    "count_mismatch": 1,
    "clipped": 2,
    "no_keyframe": 2,
    "keyframe_beyond_video": 3,
}


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """A .json array (indented, one field a line) or .jsonl file, by suffix."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


def image_entry(bbox: Any, text: str = "red circle", negatives: int = 0) -> dict[str, Any]:
    return {
        "bbox": bbox,
        "short_expr": text,
        "long_expr": f"a large {text}",
        "flag_short_neg": int(negatives > 0),
        "short_expr_negs": {f"n{k}": f"neg {k} of {text}" for k in range(negatives)},
    }


def image_record(f_path: str, boxes: list[Any], negatives: int = 0) -> dict[str, Any]:
    return {
        "f_path": f_path,
        "caption": "a long caption about the whole picture",
        "short_caption": "a photo of shapes",
        "bbox_info": [image_entry(b, f"shape {i}", negatives) for i, b in enumerate(boxes)],
    }


def assert_batch_contract(
    batch: dict[str, torch.Tensor],
    *,
    video: bool,
    size: int,
    slots: int,
    negatives: int | None = None,
    frames: int | None = None,
) -> None:
    """Keys, shapes and dtypes of fgclip/batch.py."""
    for key in IMAGE_KEYS:
        assert key in batch, key
    assert set(batch) <= set(IMAGE_KEYS) | set(OPTIONAL_KEYS)
    pixels = batch["pixel_values"]
    assert pixels.dtype == torch.float32
    if video:
        assert pixels.dim() == 5 and pixels.shape[:2] == (size, frames) and pixels.shape[2] == 3
        assert batch["frame_mask"].shape == (size, frames) and batch["frame_mask"].dtype == torch.bool
        assert batch["boxes"].shape == (size, frames, slots, 4)
        assert batch["box_frame_mask"].shape == (size, frames, slots)
        assert batch["box_frame_mask"].dtype == torch.bool
        assert batch["region_labels"].shape == (size, slots) and batch["region_labels"].dtype == torch.long
    else:
        assert pixels.dim() == 4 and pixels.shape[:2] == (size, 3)
        assert batch["boxes"].shape == (size, slots, 4)
    assert batch["boxes"].dtype == torch.float32
    assert float(batch["boxes"].min()) >= 0.0 and float(batch["boxes"].max()) <= 1.0
    assert batch["box_mask"].shape == (size, slots) and batch["box_mask"].dtype == torch.bool
    long = batch["long_input_ids"]
    assert long.dtype == torch.long and long.dim() == 2 and long.shape[0] == size and long.shape[1] <= 248
    texts = batch["text_input_ids"]
    assert texts.dtype == torch.long and texts.dim() == 2 and texts.shape[1] <= 77
    assert texts.unique(dim=0).shape[0] == texts.shape[0]  # de-duplicated
    assert batch["short_text_index"].shape == (size,) and batch["short_text_index"].dtype == torch.long
    region = batch["region_text_index"]
    assert region.dtype == torch.long and region.shape == (size, slots)
    if "hard_text_index" in batch:
        assert batch["hard_text_index"].shape == (size, slots, 1 + negatives)
        assert batch["hard_mask"].shape == (size, slots) and batch["hard_mask"].dtype == torch.bool
    for key in ("short_text_index", "region_text_index", "hard_text_index"):
        if key in batch:
            assert int(batch[key].min()) >= 0 and int(batch[key].max()) < texts.shape[0], key
    if video:
        rows = batch["frame_rows"]
        assert rows.dtype == torch.long and torch.equal(rows, batch["frame_mask"].reshape(-1).nonzero()[:, 0])
    assert batch["boxes_dropped"].shape == (size,) and batch["boxes_dropped"].dtype == torch.long


def texts_of(batch: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """The token rows an index map points at: (..., L)."""
    return batch["text_input_ids"][batch[key]]
