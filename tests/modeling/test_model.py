"""FGCLIPModel against transformers' CLIPModel, loading, gradients and the text path."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from fgclip.config import FGCLIPConfig, FGCLIPConfigError
from fgclip.modeling import FGCLIPModel
from fgclip.modeling.text import caption_keys, encode_text, stretch_positions
from fgclip.weights.errors import MissingWeightsError

from .conftest import EOS, TEXT, VISION, make_ids, make_image_batch


def test_global_path_matches_clipmodel(clip_dir):
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    pixels = torch.randn(4, 3, 32, 32)
    ids = make_ids(4, 15, seed=7)
    with torch.no_grad():
        ref_img = clip.get_image_features(pixel_values=pixels).pooler_output
        ref_txt = clip.get_text_features(input_ids=ids).pooler_output
        img = model.get_image_features(pixels)
        txt = model.get_text_features(ids)
        via_table = model.text_projection(
            encode_text(model.text_model, ids, model.text_model.embeddings.position_embedding.weight)
        )
    assert (img - ref_img).abs().max() < 1e-5
    assert (txt - ref_txt).abs().max() < 1e-5
    assert (via_table - ref_txt).abs().max() < 1e-5


def test_padding_to_batch_longest_is_exact(clip_dir):
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    ids = make_ids(3, 10, seed=3, eos_at=6)
    padded = torch.cat([ids, torch.full((3, 67), EOS)], dim=1)  # to 77 like upstream
    with torch.no_grad():
        assert (model.get_text_features(ids) - model.get_text_features(padded)).abs().max() < 1e-5


def test_plain_clip_load_reports_exactly_the_new_heads(clip_dir):
    model = FGCLIPModel.from_pretrained(
        clip_dir, fgclip_overrides={"region_head": "roi_projection", "memory_bank_size": 8}
    )
    report = model.loading_report
    assert report.unexpected_new == []
    assert {
        "long_position_embedding.weight",
        "text_long_projection.weight",
        "roi_projection.weight",
        "logit_scale_finegrained",
        "logit_scale_hardneg",
    } <= set(report.newly_initialized)
    assert all(
        k.startswith(("long_", "text_long", "roi_", "logit_scale_", "memory_bank."))
        for k in report.newly_initialized
    )
    assert "logit_scale" not in report.newly_initialized
    assert torch.equal(model.text_long_projection.weight, model.text_projection.weight)
    assert torch.equal(model.roi_projection.weight, model.visual_projection.weight)
    assert model.logit_scale.item() == pytest.approx(4.6052, abs=1e-4)
    assert model.logit_scale_finegrained.item() == pytest.approx(math.log(100), abs=1e-5)
    short = model.text_model.embeddings.position_embedding.weight
    long = model.long_position_embedding.weight
    assert long.shape[0] == 248
    assert torch.equal(long[:20], short[:20])
    assert torch.allclose(long[21], 0.75 * short[20] + 0.25 * short[21], atol=1e-6)
    assert torch.allclose(long[247], short[76] + 3 * (short[76] - short[75]) / 4, atol=1e-6)


def test_missing_attention_weights_are_reported(clip_dir, tmp_path):
    state = load_file(clip_dir / "model.safetensors")
    dropped = [k for k in state if "self_attn.q_proj" in k]
    save_file(
        {k: v for k, v in state.items() if k not in dropped},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    (tmp_path / "config.json").write_text((clip_dir / "config.json").read_text())
    with pytest.raises(MissingWeightsError, match="q_proj"):  # an error, not a warning
        FGCLIPModel.from_pretrained(tmp_path)
    model = FGCLIPModel.from_pretrained(tmp_path, strict_towers=False)
    assert sorted(model.loading_report.unexpected_new) == sorted(dropped)
    assert "q_proj" in model.loading_report.summary()


def test_own_checkpoint_round_trip_restores_everything(clip_dir, tmp_path):
    model = FGCLIPModel.from_pretrained(
        clip_dir, fgclip_overrides={"memory_bank_size": 6, "region_head": "roi_projection"}
    )
    with torch.no_grad():
        model.logit_scale_finegrained.fill_(3.1)
        model.logit_scale_hardneg.fill_(3.3)
    model.train()
    model(**make_image_batch())  # fills the queue
    model.optimizer_step_completed()
    model.save_pretrained(tmp_path)
    again = FGCLIPModel.from_pretrained(tmp_path)
    assert again.loading_report.newly_initialized == []
    before, after = model.state_dict(), again.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert again.logit_scale_finegrained.item() == pytest.approx(3.1)
    assert again.memory_bank.fill.item() > 0


def test_gradients_reach_every_trainable_parameter(clip_dir):
    model = FGCLIPModel.from_pretrained(
        clip_dir,
        fgclip_overrides={
            "region_head": "roi_projection",
            "memory_bank_size": 16,
            "memory_bank_warmup_steps": 1,
            "temporal_pooling": "mean",
        },
    ).train()
    batch = make_image_batch()
    model(**batch)  # fill the queue, then activate it
    model.optimizer_step_completed()
    model.zero_grad()
    out = model(**batch)
    assert set(out.losses) == {"global_long_loss", "global_short_loss", "region_loss", "hard_negative_loss"}
    assert out.stats["memory_bank/active"].item() == 1.0
    out.loss.backward()
    dead = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    # rows of the long table beyond the longest caption never get gradient; everything else must
    assert dead == [] or dead == ["long_position_embedding.weight"][: len(dead)], dead
    for name in (
        "logit_scale",
        "logit_scale_finegrained",
        "logit_scale_hardneg",
        "roi_projection.weight",
        "text_long_projection.weight",
    ):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_loss_weights_scale_the_parts(clip_dir):
    batch = make_image_batch()
    base = FGCLIPModel.from_pretrained(clip_dir).eval()
    heavy = FGCLIPModel.from_pretrained(clip_dir, fgclip_overrides={"region_loss_weight": 0.2}).eval()
    with torch.no_grad():
        a, b = base(**batch).losses, heavy(**batch).losses
    assert b["region_loss"].item() == pytest.approx(2 * a["region_loss"].item(), rel=1e-5)
    assert b["global_long_loss"].item() == pytest.approx(a["global_long_loss"].item(), rel=1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(FGCLIPConfigError, match="finegrained_logit_scale_init"):
        FGCLIPConfig(finegrained_logit_scale_init=0.07).check()
    with pytest.raises(FGCLIPConfigError, match="above the clamp"):
        FGCLIPConfig(hardneg_logit_scale_init=5.0).check()
    with pytest.raises(FGCLIPConfigError, match="memory_bank_warmup_steps"):
        FGCLIPConfig(memory_bank_warmup_steps=-1).check()
    with pytest.raises(FGCLIPConfigError, match="region_head"):
        FGCLIPConfig(text_config=TEXT, vision_config=VISION, region_head="dense").check()
    assert FGCLIPConfig().finegrained_logit_scale_init == pytest.approx(4.6052, abs=1e-4)


def test_stretch_positions_length_and_caption_keys():
    table = torch.randn(77, 8)
    assert stretch_positions(table, 20, 248).shape == (248, 8)
    assert stretch_positions(table, 20, 200).shape == (200, 8)
    a = make_ids(2, 8, seed=1, eos_at=5)
    b = torch.cat([a, torch.full((2, 5), EOS)], dim=1)
    assert torch.equal(caption_keys(a, EOS), caption_keys(b, EOS))
    assert caption_keys(a, EOS)[0] != caption_keys(a, EOS)[1]


def test_text_tower_runs_once_for_all_short_texts(clip_dir):
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    calls = []
    handle = model.text_model.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        model(**make_image_batch())
    handle.remove()
    assert len(calls) == 1  # the long captions go through encode_text, all 77-position texts in one call


def test_fused_text_path_equals_separate_calls(clip_dir):
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    batch = make_image_batch()
    with torch.no_grad():
        fused = model(**batch)
        model.text_path = "separate"
        separate = model(**batch)
    for name, value in fused.losses.items():
        assert abs(value.item() - separate.losses[name].item()) < 1e-5, name
