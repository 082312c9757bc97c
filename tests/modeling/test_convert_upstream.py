"""Upstream FG-CLIP (and fgclip-vad fork) folders into FGCLIPModel; transformers' legacy eos in CLIP
configs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

from fgclip.modeling import FGCLIPModel, load_config
from fgclip.weights import names

from .conftest import TEXT, VISION, make_ids

ORI = "text_model.embeddings.position_embedding_ori.weight"
RES = "text_model.embeddings.position_embedding_res.weight"


@pytest.fixture(scope="module")
def trained(clip_dir):
    """An FGCLIPModel whose heads no longer equal what a plain CLIP load would derive (as after training)."""
    model = FGCLIPModel.from_pretrained(clip_dir).eval()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model.long_position_embedding.weight.copy_(
            torch.randn(model.long_position_embedding.weight.shape, generator=g)
        )
        model.text_long_projection.weight.copy_(
            torch.randn(model.text_long_projection.weight.shape, generator=g)
        )
        model.logit_scale_finegrained.fill_(3.1)
        model.logit_scale_hardneg.fill_(3.3)
    return model


def write_upstream(model: FGCLIPModel, path, extras: dict[str, torch.Tensor] | None = None) -> None:
    """Rename our state to upstream FG-CLIP's names and save it as an HF folder (config.json model_type clip).

    Upstream's text tower reads `_ori` below row 20 and `_res` from row 20 on: the other rows are filled with
    noise here, so a loader taking the wrong rows fails."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    long = state.pop("long_position_embedding.weight")
    g = torch.Generator().manual_seed(5)
    ori, res = torch.randn(long.shape, generator=g), torch.randn(long.shape, generator=g)
    ori[:20], res[20:] = long[:20], long[20:]
    state[ORI], state[RES] = ori, res
    state["text_filip_projection.weight"] = state.pop("text_long_projection.weight")
    state["logit_scale_finegraind"] = state.pop("logit_scale_finegrained")
    state.update(extras or {})
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = CLIPConfig(
        text_config=TEXT, vision_config=VISION, projection_dim=16, logit_scale_init_value=2.6592
    )
    config.architectures = ["FGCLIPModel"]
    config.save_pretrained(path)


def long_and_short(model: FGCLIPModel):
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    short, long = make_ids(3, 15, seed=2), make_ids(3, 120, seed=3)
    with torch.no_grad():
        return (
            model.get_image_features(pixels),
            model.get_text_features(short),
            model.get_text_features(long, long=True),
        )


def test_upstream_folder_loads_with_equal_features(trained, tmp_path):
    write_upstream(trained, tmp_path / "fg-clip")
    model = FGCLIPModel.from_pretrained(tmp_path / "fg-clip")
    for ours, theirs in zip(long_and_short(model), long_and_short(trained), strict=True):
        assert (ours - theirs).abs().max() < 1e-5
    assert torch.equal(model.long_position_embedding.weight, trained.long_position_embedding.weight)
    assert model.logit_scale_finegrained.item() == pytest.approx(3.1)
    assert model.logit_scale_hardneg.item() == pytest.approx(3.3)
    report = model.loading_report
    assert report.layout == "fgclip-upstream" and report.unused_checkpoint_keys == []
    assert report.newly_initialized == [] and report.derived == {}
    assert report.consumed["text_long_projection.weight"] == "text_filip_projection.weight"
    assert ORI in report.consumed["long_position_embedding.weight"]


def test_fork_folder_keeps_its_roi_head_and_names_what_it_cannot_use(trained, tmp_path):
    g = torch.Generator().manual_seed(8)
    extras = {
        "roi_projection.weight": torch.randn(16, 32, generator=g),
        "temporal_transformer.layers.0.linear1.weight": torch.randn(64, 16, generator=g),
        "region_image_queue_normal": torch.randn(16, 64, generator=g),
        "training_steps": torch.tensor(200),
    }
    write_upstream(trained, tmp_path / "fork", extras)
    model = FGCLIPModel.from_pretrained(tmp_path / "fork")
    assert model.config.region_head == "roi_projection"
    assert torch.equal(model.roi_projection.weight, extras["roi_projection.weight"])
    assert model.loading_report.unused_checkpoint_keys == sorted(set(extras) - {"roi_projection.weight"})
    shared = FGCLIPModel.from_pretrained(tmp_path / "fork", fgclip_overrides={"region_head": "shared"})
    assert shared.roi_projection is None
    assert "roi_projection.weight" in shared.loading_report.unused_checkpoint_keys


def test_upstream_coverage_from_names_alone(trained):
    saved = [k for k in trained.state_dict() if k not in ("long_position_embedding.weight",)] + [ORI, RES]
    saved = [
        {"text_long_projection.weight": "text_filip_projection.weight"}.get(k, k)
        for k in saved
        if k != "text_model.encoder.layers.1.self_attn.v_proj.bias"
    ]
    cov = names.coverage(saved)
    assert cov.layout == "fgclip-upstream"
    assert list(cov.uncovered_tower) == ["text_model.encoder.layers.1.self_attn.v_proj.bias"]
    assert cov.uncovered_new == [
        "logit_scale_finegrained"
    ]  # saved as logit_scale_finegrained: not upstream's name
    assert cov.unused == ["logit_scale_finegrained"]


def test_legacy_eos_of_converted_openai_configs_is_corrected(tmp_path):
    """transformers' OpenAI configs say eos 2 and pool at argmax(ids); the long path pools at the first
    eos."""
    text = {**TEXT, "vocab_size": 49408, "eos_token_id": 2, "bos_token_id": 0, "pad_token_id": 1}
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)).eval()
    clip.save_pretrained(tmp_path)
    config = load_config(str(tmp_path))
    tc = config.text_config
    assert (tc.eos_token_id, tc.bos_token_id, tc.pad_token_id) == (49407, 49406, 49407)
    ids = torch.randint(3, 49406, (3, 30))
    ids[:, 0] = 49406
    ids[:, 12:] = 49407  # eos within the 20 rows the long table keeps verbatim
    model = FGCLIPModel.from_pretrained(tmp_path)
    with torch.no_grad():
        expected = clip.get_text_features(input_ids=ids).pooler_output
        assert (model.get_text_features(ids, long=True) - expected).abs().max() < 1e-5
    small = {**TEXT, "eos_token_id": 2}
    CLIPConfig(text_config=small, vision_config=VISION).save_pretrained(tmp_path / "small")
    assert load_config(str(tmp_path / "small")).text_config.eos_token_id == 2  # not CLIP's vocabulary: kept


def test_single_file_in_transformers_layout_asks_for_its_folder(clip_dir, tmp_path):
    (tmp_path / "weights.safetensors").write_bytes((clip_dir / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"no config\.json"):
        FGCLIPModel.from_pretrained(tmp_path / "weights.safetensors")
