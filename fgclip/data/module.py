"""One call for the training entry point: dataset + collator (+ the validation report) from data arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgclip.data.boxes import GridSize, check_policy
from fgclip.data.collate import RegionCollator
from fgclip.data.datasets import ImageRegionDataset, VideoRegionDataset
from fgclip.data.reader import detect_format, read_raw_records
from fgclip.data.validate import ValidationReport


@dataclass
class DataModule:
    """What the trainer needs: `train_dataset` and `collator` (a DataLoader collate_fn)."""

    train_dataset: ImageRegionDataset | VideoRegionDataset
    collator: RegionCollator
    data_format: str  # "image" | "video"

    @property
    def report(self) -> ValidationReport:
        return self.train_dataset.report


class RegionSupplyError(ValueError):
    """The data leaves the region losses without regions, or the box policy dropped too large a share."""


def kept_regions(dataset: ImageRegionDataset | VideoRegionDataset) -> int:
    """Regions left to train on after validation and truncation."""
    return sum(len(item.regions) for item in dataset.items)


def check_region_supply(data: DataModule, *, regions_needed: bool, max_dropped_ratio: float) -> None:
    """Raise RegionSupplyError (with the validation counts) when a region loss is on and the data has no
    usable region, or when the policy dropped more than `max_dropped_ratio` of the boxes."""
    if not regions_needed:
        return
    report, kept = data.report, kept_regions(data.train_dataset)
    dropped = sum(report.dropped.values())
    ratio = dropped / report.boxes if report.boxes else 0.0
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.dropped.items())) or "none"
    counts = (
        f"{report.records} records, {report.boxes} boxes, {kept} usable regions; box_policy={report.policy} "
        f"dropped {dropped} ({ratio:.0%}: {reasons})"
    )
    if kept == 0:
        raise RegionSupplyError(f"no usable region for the region losses: {counts}")
    if ratio > max_dropped_ratio:
        raise RegionSupplyError(
            f"the box policy dropped {ratio:.0%} of the boxes, more than max_dropped_box_ratio="
            f"{max_dropped_ratio:g}: {counts}"
        )


def make_dataset(
    data_path: str | Path,
    *,
    image_root: str | Path | None = None,
    data_format: str = "auto",
    box_policy: str = "drop",
    image_size: int = 224,
    max_boxes_per_sample: int | None = 4,
    num_frames: int = 8,
    grid_size: GridSize = None,
    region_text: str = "random",
) -> ImageRegionDataset | VideoRegionDataset:
    """The image or video dataset for `data_path` (format guessed from the first record when "auto")."""
    check_policy(box_policy)
    records = read_raw_records(data_path)
    kind = detect_format(records, data_format)
    common: dict[str, Any] = dict(
        box_policy=box_policy,
        grid_size=grid_size,
        image_size=image_size,
        max_boxes_per_sample=max_boxes_per_sample,
        raw_records=records,
    )
    if kind == "image":
        return ImageRegionDataset(data_path, image_root, region_text=region_text, **common)
    return VideoRegionDataset(data_path, image_root, num_frames=num_frames, **common)


def build_data_module(
    data_path: str | Path,
    *,
    tokenizer: Any,
    image_root: str | Path | None = None,
    data_format: str = "auto",
    box_policy: str = "drop",
    image_size: int = 224,
    max_boxes_per_sample: int = 4,
    num_hard_negatives: int = 10,
    num_frames: int = 8,
    grid_size: GridSize = None,
    long_text_max_positions: int = 248,
    short_text_max_length: int | None = None,
    region_text: str = "random",
) -> DataModule:
    """Dataset and collator that agree on `max_boxes_per_sample`; see `data_kwargs_from_config`."""
    dataset = make_dataset(
        data_path,
        image_root=image_root,
        data_format=data_format,
        box_policy=box_policy,
        image_size=image_size,
        max_boxes_per_sample=max_boxes_per_sample,
        num_frames=num_frames,
        grid_size=grid_size,
        region_text=region_text,
    )
    collator = RegionCollator(
        tokenizer,
        max_boxes_per_sample=max_boxes_per_sample,
        num_hard_negatives=num_hard_negatives,
        long_max_length=long_text_max_positions,
        short_max_length=short_text_max_length or min(77, _text_positions(tokenizer)),
    )
    kind = "video" if isinstance(dataset, VideoRegionDataset) else "image"
    return DataModule(dataset, collator, kind)


def _text_positions(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", 77) or 77
    return int(limit) if limit < 10_000 else 77


def data_kwargs_from_config(config: Any) -> dict[str, Any]:
    """The data arguments an `FGCLIPConfig` fixes: image size, feature grid, boxes, negatives, frames."""
    vision = config.vision_config
    return {
        "image_size": vision.image_size,
        "grid_size": vision.image_size // vision.patch_size,
        "max_boxes_per_sample": config.max_boxes_per_sample,
        "num_hard_negatives": config.num_hard_negatives,
        "num_frames": config.num_frames,
        "long_text_max_positions": config.long_text_max_positions,
        "short_text_max_length": min(77, config.text_config.max_position_embeddings),
    }


__all__ = [
    "DataModule",
    "RegionSupplyError",
    "build_data_module",
    "check_region_supply",
    "data_kwargs_from_config",
    "kept_regions",
    "make_dataset",
]
