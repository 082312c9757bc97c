"""The embedded default's pretraining stage: a plain CLIP folder at scale ln 100, built once, reused, and
rebuilt (model only) when the recipe changes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from transformers import CLIPModel

from fgclip.config import LN_100
from fgclip.modeling import FGCLIPModel
from fgclip.train.embedded import default_recipe, prepare_embedded
from fgclip.train.pretrain import PretrainRecipe, train_stage

from .conftest import PRETRAIN_STEPS


def _stamp(path: str | Path) -> int:
    return Path(path).stat().st_mtime_ns


def test_cache_built_once_reused_and_rebuilt_on_a_new_recipe(tmp_path):
    root = tmp_path / "home"
    first = prepare_embedded(root, recipe=PretrainRecipe(steps=2))
    weights = Path(first["model_name_or_path"]) / "model.safetensors"
    data, model = _stamp(first["data_path"]), _stamp(weights)
    start = time.monotonic()
    again = prepare_embedded(root, recipe=PretrainRecipe(steps=2))
    assert again == first and _stamp(weights) == model and _stamp(again["data_path"]) == data
    assert time.monotonic() - start < 5  # found, not rebuilt
    marker = json.loads((weights.parent / "PRETRAINED").read_text())
    assert marker["settings"]["recipe"]["steps"] == 2
    for changed in (PretrainRecipe(steps=3), PretrainRecipe(steps=3, version=99)):
        rebuilt = prepare_embedded(root, recipe=changed)
        assert _stamp(weights) != model, changed  # the model is rebuilt ...
        assert _stamp(rebuilt["data_path"]) == data  # ... the data is kept
        model = _stamp(weights)
        assert json.loads((weights.parent / "PRETRAINED").read_text())["settings"]["recipe"] == changed.key()


def test_pretrained_folder_is_a_plain_clip_at_ln_100(embedded):
    folder = Path(embedded["model_name_or_path"])
    clip, info = CLIPModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert clip.logit_scale.item() == pytest.approx(LN_100)
    init = CLIPModel.from_pretrained(embedded["init_model"])
    trained = clip.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in init.state_dict().items() if k != "logit_scale")
    # the fine-tune loads it as a user loads openai/clip-vit-base-patch16: only FG-CLIP's new heads are new
    model = FGCLIPModel.from_pretrained(folder, fgclip_overrides={"region_head": "roi_projection"})
    assert model.loading_report.unexpected_new == []
    assert set(model.loading_report.newly_initialized) == {
        "logit_scale_finegrained",
        "logit_scale_hardneg",
        "long_position_embedding.weight",
        "text_long_projection.weight",
        "roi_projection.weight",
    }
    assert torch.equal(model.roi_projection.weight, clip.visual_projection.weight)
    assert json.loads((folder / "PRETRAINED").read_text())["settings"]["recipe"]["steps"] == PRETRAIN_STEPS


def test_stage_trains_at_its_fixed_scale_and_lowers_its_objective(embedded):
    recipe = PretrainRecipe(steps=12, batch_size=16, warmup_steps=2)
    init = Path(embedded["init_model"])
    model, losses = train_stage(init, embedded["data_path"], embedded["image_root"], recipe)
    for scale in model.logit_scales().values():
        assert scale.item() == pytest.approx(recipe.scale) and not scale.requires_grad
    assert model.memory_bank is None and model.roi_projection is None  # regions through visual_projection
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_recipe_steps_from_the_environment(monkeypatch):
    monkeypatch.setenv("FGCLIP_PRETRAIN_STEPS", "7")
    assert default_recipe().steps == 7 and default_recipe(5).steps == 5
    monkeypatch.setenv("FGCLIP_PRETRAIN_STEPS", "seven")
    with pytest.raises(SystemExit, match="FGCLIP_PRETRAIN_STEPS"):
        default_recipe()
    monkeypatch.delenv("FGCLIP_PRETRAIN_STEPS")
    assert default_recipe().steps == PretrainRecipe().steps == 400
