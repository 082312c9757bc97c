"""Region features: RoIAlign on the value-only grid, box tracks over video frames."""

from __future__ import annotations

import pytest
import torch

from fgclip.modeling import FGCLIPModel
from fgclip.modeling.regions import dense_grid, pool_boxes, track_features, value_only_block

from .conftest import make_ids, make_image_batch


def test_full_box_is_the_grid_mean_and_sub_box_its_quadrant():
    grid = torch.randn(2, 5, 4, 4)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    out = pool_boxes(grid, torch.tensor([1, 1, 0]), boxes)
    assert torch.allclose(out[0], grid[1].mean(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(out[1], grid[1, :, :2, :2].mean(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(out[2], grid[0, :, 2:, 2:].mean(dim=(1, 2)), atol=1e-6)


def test_zero_area_box_pools_zeros():
    grid = torch.randn(1, 3, 4, 4)
    out = pool_boxes(grid, torch.tensor([0]), torch.tensor([[0.5, 0.2, 0.5, 0.8]]))
    assert torch.count_nonzero(out) == 0


def test_tracks_average_only_boxed_frames_and_drop_empty_regions():
    grid = torch.randn(3, 2, 4, 4)  # three encoded frames
    boxes = torch.zeros(1, 4, 2, 4)
    boxes[0, :, 0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    frame_mask = torch.tensor([[True, True, False, True]])
    frame_index = torch.tensor([[0, 1, -1, 2]])
    box_frames = torch.zeros(1, 4, 2, dtype=torch.bool)
    box_frames[0, [0, 2, 3], 0] = True  # frame 2 is padding: must be ignored
    feats, has_box = track_features(grid, boxes, box_frames & frame_mask.unsqueeze(-1), frame_index)
    expected = (grid[0].mean(dim=(1, 2)) + grid[2].mean(dim=(1, 2))) / 2
    assert torch.allclose(feats[0, 0], expected, atol=1e-6)
    assert has_box.tolist() == [[True, False]]
    assert torch.count_nonzero(feats[0, 1]) == 0


def test_value_only_block_keeps_tokens_independent(clip_dir):
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    last = model.vision_model.encoder.layers[-1]
    x = torch.randn(1, 17, 32)
    y = x.clone()
    y[0, 5] += 1.0
    with torch.no_grad():
        a, b = value_only_block(last, x), value_only_block(last, y)
    changed = (a - b).abs().sum(dim=-1)[0]
    assert changed[5] > 0 and torch.count_nonzero(changed) == 1
    assert dense_grid(a).shape == (1, 32, 4, 4)


def test_zero_box_regions_are_excluded_and_counted(clip_dir):
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    batch = make_image_batch()
    batch["boxes"][0, 1] = torch.tensor([0.3, 0.3, 0.3, 0.9])  # zero width
    with torch.no_grad():
        out = model(**batch)
    assert out.stats["regions/zero_norm"].item() == 1
    assert out.stats["regions/valid"].item() == batch["box_mask"].sum().item() - 1
    assert out.region_mask.sum().item() == out.stats["regions/valid"].item()
    assert not out.region_mask[0, 1] and torch.count_nonzero(out.region_embeds[0, 1]) == 0


def video_batch(b=2, t=4, r=2):
    g = torch.Generator().manual_seed(5)
    frame_mask = torch.ones(b, t, dtype=torch.bool)
    frame_mask[1, 2:] = False
    boxes = torch.zeros(b, t, r, 4)
    boxes[:, :, 0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    boxes[:, :, 1] = torch.tensor([0.25, 0.25, 0.75, 0.75])
    box_frame_mask = torch.zeros(b, t, r, dtype=torch.bool)
    box_frame_mask[:, :, 0] = True
    box_frame_mask[0, 1:3, 1] = True  # region 1 of sample 1 never has a box: excluded
    return {
        "pixel_values": torch.randn(b, t, 3, 32, 32, generator=g),
        "frame_mask": frame_mask,
        "long_input_ids": make_ids(b, 30, 1),
        "short_input_ids": make_ids(b, 10, 2),
        "boxes": boxes,
        "box_frame_mask": box_frame_mask & frame_mask.unsqueeze(-1),
        "box_mask": torch.ones(b, r, dtype=torch.bool),
        "region_input_ids": make_ids(b * r, 8, 3).reshape(b, r, 8),
    }


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_video_masked_frames_do_not_matter(clip_dir, pooling):
    model = FGCLIPModel.from_pretrained(
        clip_dir, fgclip_overrides={"temporal_pooling": pooling, "num_frames": 4}
    ).eval()
    batch = video_batch()
    other = dict(batch)
    other["pixel_values"] = batch["pixel_values"].clone()
    other["pixel_values"][1, 2:] = torch.randn(2, 3, 32, 32)  # padding frames change
    with torch.no_grad():
        a, b = model(**batch), model(**other)
    assert torch.allclose(a.image_embeds, b.image_embeds, atol=1e-6)
    assert torch.allclose(a.region_embeds, b.region_embeds, atol=1e-6)
    assert a.region_mask.tolist() == [[True, True], [True, False]]  # region 1 of sample 1 has no box
    assert a.stats["regions/valid"].item() == 3
    assert torch.isfinite(a.loss)
