"""The embedded data is learnable: a tiny CLIP's region loss falls clearly below chance within ~100 steps.

Uses transformers' plain CLIPModel (not fgclip.modeling) so the check is about the data alone: patch features
-> visual_projection -> roi_align on the 8x8 grid, symmetric InfoNCE against the region captions.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.ops import roi_align
from transformers import CLIPConfig, CLIPModel

from fgclip.data import build_data_module, build_tokenizer, generate_embedded, tokenizer_ids


def _region_loss(model: CLIPModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
    tokens = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state[:, 1:]  # (B, 64, D)
    features = model.visual_projection(model.vision_model.post_layernorm(tokens))  # (B, 64, P)
    size = features.shape[0]
    grid = features.transpose(1, 2).reshape(size, -1, 8, 8)  # (B, P, 8, 8)
    mask = batch["box_mask"]
    rois = [batch["boxes"][b][mask[b]] * 8 for b in range(size)]
    regions = roi_align(grid, rois, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    regions = F.normalize(regions.flatten(1), dim=-1)  # (N, P)
    texts = model.get_text_features(input_ids=batch["text_input_ids"][batch["region_text_index"][mask]])
    texts = F.normalize(getattr(texts, "pooler_output", texts), dim=-1)  # (N, P)
    logits = 20.0 * regions @ texts.t()
    target = torch.arange(len(regions))
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    return loss, math.log(len(regions))


@pytest.mark.slow
def test_region_loss_falls_below_chance(tmp_path):
    torch.manual_seed(0)
    data = generate_embedded(tmp_path / "data", seed=0, n_images=128, n_videos=0)
    tokenizer = build_tokenizer(tmp_path / "tokenizer", data.texts())
    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config={**tiny, "max_position_embeddings": 77, **tokenizer_ids(tokenizer)},
        vision_config={**tiny, "image_size": 64, "patch_size": 8},
        projection_dim=64,
    )
    model = CLIPModel(config)
    module = build_data_module(
        data.images_json,
        tokenizer=tokenizer,
        image_size=64,
        grid_size=8,
        long_text_max_positions=77,
        region_text="short",
    )
    loader = DataLoader(
        module.train_dataset, batch_size=16, shuffle=True, collate_fn=module.collator, drop_last=True
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses, chances = [], []
    while len(losses) < 100:
        for batch in loader:
            loss, chance = _region_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            chances.append(chance)
            if len(losses) == 100:
                break
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    chance = sum(chances[-20:]) / 20
    assert first > 0.8 * chance  # starts near chance ...
    assert last < 0.6 * chance, (first, last, chance)  # ... and ends clearly below it
