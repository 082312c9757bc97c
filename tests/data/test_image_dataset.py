"""Image records through ImageRegionDataset and RegionCollator, checked against fgclip/batch.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from fgclip.data.collate import RegionCollator
from fgclip.data.datasets import ImageRegionDataset
from fgclip.data.errors import BoxValidationError, DataFormatError
from fgclip.data.module import build_data_module, data_kwargs_from_config

from .data_helpers import GRID, assert_batch_contract, image_record, texts_of, write_records


@pytest.mark.parametrize("name", ["images_json", "images_jsonl"])
def test_round_trip_through_dataloader(embedded, tokenizer, name):
    module = build_data_module(
        getattr(embedded, name),
        tokenizer=tokenizer,
        image_size=64,
        grid_size=GRID,
        max_boxes_per_sample=4,
        num_hard_negatives=10,
    )
    assert module.data_format == "image" and len(module.train_dataset) == 24
    assert module.report.invalid_total == 0 and module.report.clipped == 0
    loader = DataLoader(module.train_dataset, batch_size=6, collate_fn=module.collator)
    batch = next(iter(loader))
    assert_batch_contract(batch, video=False, size=6, slots=4, negatives=10)
    assert batch["pixel_values"].shape == (6, 3, 64, 64)
    counts = batch["box_mask"].sum(dim=1)
    assert counts.min() >= 2 and counts.max() <= 4
    assert (batch["boxes"][~batch["box_mask"]] == 0).all()
    assert (batch["region_text_index"][~batch["box_mask"]] == 0).all()  # padding slots point at row 0
    assert batch["hard_mask"].any() and not (batch["hard_mask"] & ~batch["box_mask"]).any()
    assert (batch["boxes_dropped"] == 0).all()


def test_boxes_and_texts_match_the_annotation(embedded, tokenizer):
    dataset = ImageRegionDataset(embedded.images_json, image_size=64, grid_size=GRID, region_text="short")
    record = dataset.items[0].record
    sample = dataset[0]
    expected = torch.tensor([r.bbox for r in record.regions])
    assert torch.allclose(sample["boxes"], expected)
    assert sample["region_texts"] == [r.short_expr for r in record.regions]
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4, num_hard_negatives=10)([sample])
    first = texts_of(batch, "hard_text_index")[0, 0]  # (1+N, L): positive first, then negatives in order
    decoded = [tokenizer.decode(row, skip_special_tokens=True) for row in first]
    assert decoded == [record.regions[0].short_expr, *record.regions[0].negatives[:10]]
    long_dataset = ImageRegionDataset(embedded.images_json, image_size=64, region_text="long")
    assert long_dataset[0]["region_texts"] == [r.long_expr for r in record.regions]


def test_squash_resize_and_clip_normalisation(tmp_path, tokenizer):
    Image.new("RGB", (96, 48), (255, 0, 0)).save(tmp_path / "wide.png")
    write_records(tmp_path / "d.json", [image_record("wide.png", [[0.5, 0.0, 1.0, 1.0]])])
    sample = ImageRegionDataset(tmp_path / "d.json", image_size=32)[0]
    assert sample["pixel_values"].shape == (3, 32, 32)  # squashed, not cropped
    expected = [
        (v - m) / s for v, m, s in zip((1.0, 0.0, 0.0), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, strict=True)
    ]
    assert torch.allclose(sample["pixel_values"].mean(dim=(1, 2)), torch.tensor(expected), atol=1e-3)
    assert sample["boxes"].tolist() == [[0.5, 0.0, 1.0, 1.0]]  # normalised boxes survive the squash


def test_hard_boxes_need_n_negatives_and_are_optional(tmp_path, one_image, tokenizer):
    records = [
        image_record(one_image, [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]], negatives=3),
        image_record(one_image, [[0.1, 0.1, 0.5, 0.5]], negatives=0),
    ]
    dataset = ImageRegionDataset(write_records(tmp_path / "d.jsonl", records), image_size=32)
    collate = RegionCollator(tokenizer, max_boxes_per_sample=3, num_hard_negatives=3)
    batch = collate([dataset[0], dataset[1]])
    assert_batch_contract(batch, video=False, size=2, slots=3, negatives=3)
    assert batch["hard_mask"].tolist() == [[True, True, False], [False, False, False]]
    assert (batch["hard_text_index"][1] == 0).all()  # non-hard slots point at row 0
    strict = RegionCollator(tokenizer, max_boxes_per_sample=3, num_hard_negatives=4)  # 3 < 4: no hard box
    batch = strict([dataset[0], dataset[1]])
    assert "hard_text_index" not in batch and "hard_mask" not in batch


def test_dropped_boxes_are_counted_per_sample(tmp_path, one_image, tokenizer):
    records = [
        image_record(one_image, [[0.1, 0.1, 0.5, 0.5], [0.6, 0.1, 0.2, 0.5], [0.1, 0.1, 0.5, 1.3]]),
        image_record(one_image, [[0.1, 0.1, 0.5, 0.5]]),
    ]
    path = write_records(tmp_path / "d.json", records)
    drop = ImageRegionDataset(path, image_size=32, grid_size=GRID)
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4)([drop[0], drop[1]])
    assert batch["boxes_dropped"].tolist() == [2, 0]
    assert batch["box_mask"].sum(dim=1).tolist() == [1, 1]
    clip = ImageRegionDataset(path, image_size=32, grid_size=GRID, box_policy="clip")
    assert clip[0]["boxes"].tolist()[-1] == pytest.approx([0.1, 0.1, 0.5, 1.0])
    assert clip[0]["boxes_dropped"] == 1 and clip.report.repaired == 1
    with pytest.raises(
        BoxValidationError, match=r"d.json:\d+ \(record 0\) bbox_info\[1\]\.bbox: invalid box: inverted"
    ):
        ImageRegionDataset(path, image_size=32, box_policy="error")


def test_truncation_to_max_boxes_is_counted(tmp_path, one_image, tokenizer):
    boxes = [[0.1 * i, 0.1, 0.1 * i + 0.3, 0.5] for i in range(6)]
    path = write_records(tmp_path / "d.json", [image_record(one_image, boxes)])
    dataset = ImageRegionDataset(path, image_size=32, max_boxes_per_sample=4)
    assert len(dataset[0]["region_texts"]) == 4 and dataset.report.truncated_regions == 2
    unlimited = ImageRegionDataset(path, image_size=32)
    with pytest.raises(ValueError, match="max_boxes_per_sample=4"):
        RegionCollator(tokenizer, max_boxes_per_sample=4)([unlimited[0]])


def test_missing_image_and_upstream_prefix(tmp_path, one_image):
    path = write_records(tmp_path / "d.json", [image_record("grit-20m/data-12m/" + one_image, [])])
    assert ImageRegionDataset(path, image_size=32).paths[0] == tmp_path / one_image
    write_records(path, [image_record("nowhere.png", [])])
    with pytest.raises(
        DataFormatError, match=r"d.json:\d+ \(record 0\) f_path: image file .* does not exist"
    ):
        ImageRegionDataset(path, image_size=32)


def test_sample_without_boxes(tmp_path, one_image, tokenizer):
    path = write_records(tmp_path / "d.json", [image_record(one_image, [])])
    batch = RegionCollator(tokenizer, max_boxes_per_sample=2)([ImageRegionDataset(path, image_size=32)[0]])
    assert_batch_contract(batch, video=False, size=1, slots=2)
    assert not batch["box_mask"].any() and "hard_mask" not in batch


def test_data_kwargs_from_config():
    from transformers import CLIPTextConfig, CLIPVisionConfig

    from fgclip.config import FGCLIPConfig

    config = FGCLIPConfig(
        text_config=CLIPTextConfig(max_position_embeddings=77).to_dict(),
        vision_config=CLIPVisionConfig(image_size=64, patch_size=8).to_dict(),
        max_boxes_per_sample=3,
        num_hard_negatives=5,
        num_frames=4,
    )
    kwargs = data_kwargs_from_config(config)
    assert kwargs["grid_size"] == 8 and kwargs["image_size"] == 64 and kwargs["max_boxes_per_sample"] == 3
    assert kwargs["num_hard_negatives"] == 5 and kwargs["num_frames"] == 4
