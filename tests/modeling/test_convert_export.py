"""Export to a plain transformers CLIPModel folder: our checkpoints, live models, OpenAI files; the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer, CLIPModel

from fgclip.data.tokenizer import build_tokenizer
from fgclip.modeling import FGCLIPModel
from fgclip.train.embedded import IMAGE_SIZE, build_tiny_clip
from fgclip.weights.export import MANIFEST, export_clip

from .openai_reference import IMAGE, reference_model, text_ids

CAPTIONS = ["a red car parked near a tree", "two people walking a dog", "a man opens the door of a shop"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fine-tuned-looking FGCLIPModel checkpoint with its tokenizer, as training leaves it."""
    root = tmp_path_factory.mktemp("export")
    tokenizer = build_tokenizer(root / "tokenizer", CAPTIONS * 20, vocab_size=600)
    build_tiny_clip(root / "clip", tokenizer)
    model = FGCLIPModel.from_pretrained(root / "clip", fgclip_overrides={"memory_bank_size": 4})
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # move every tower weight, as training would
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    return root / "ckpt", tokenizer


def image_and_text(model, tokenizer, size: int):
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = tokenizer(CAPTIONS, padding=True, return_tensors="pt").input_ids
    with torch.no_grad():
        if isinstance(model, CLIPModel):
            return (
                model.get_image_features(pixel_values=pixels).pooler_output,
                model.get_text_features(input_ids=ids).pooler_output,
            )
        return model.get_image_features(pixels), model.get_text_features(ids)


def test_exported_clipmodel_gives_our_features(checkpoint, tmp_path):
    src, tokenizer = checkpoint
    result = export_clip(src, tmp_path / "clip")
    ours = FGCLIPModel.from_pretrained(src).eval()
    clip = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    for a, b in zip(
        image_and_text(ours, tokenizer, IMAGE_SIZE), image_and_text(clip, tokenizer, IMAGE_SIZE), strict=True
    ):
        assert (a - b).abs().max() < 1e-5
    assert clip.logit_scale.item() == pytest.approx(ours.logit_scale.item())
    exported = AutoTokenizer.from_pretrained(tmp_path / "clip")
    assert exported(CAPTIONS).input_ids == tokenizer(CAPTIONS).input_ids
    manifest = json.loads((tmp_path / "clip" / MANIFEST).read_text())
    assert manifest["dropped"] == result.dropped
    assert {
        "long_position_embedding.weight",
        "text_long_projection.weight",
        "logit_scale_finegrained",
    } <= set(result.dropped)
    assert any(k.startswith("memory_bank.") for k in result.dropped)
    assert result.kept == len(clip.state_dict())


def test_live_model_export_and_a_non_empty_destination_is_refused(checkpoint, tmp_path):
    src, tokenizer = checkpoint
    model = FGCLIPModel.from_pretrained(src).eval()
    export_clip(model, tmp_path / "live", tokenizer=src)
    clip = CLIPModel.from_pretrained(tmp_path / "live").eval()
    for a, b in zip(
        image_and_text(model, tokenizer, IMAGE_SIZE), image_and_text(clip, tokenizer, IMAGE_SIZE), strict=True
    ):
        assert (a - b).abs().max() < 1e-5
    before = (tmp_path / "live" / "config.json").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        export_clip(model, tmp_path / "live")
    assert (tmp_path / "live" / "config.json").read_bytes() == before


def test_openai_file_exports_to_a_clipmodel_with_its_features(tmp_path):
    reference = reference_model(seed=2)
    torch.save(reference.state_dict(), tmp_path / "ViT-tiny.pt")
    export_clip(tmp_path / "ViT-tiny.pt", tmp_path / "clip")
    clip = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    pixels, ids = torch.randn(2, 3, IMAGE, IMAGE), text_ids(3, 20, seed=4)
    with torch.no_grad():
        assert (
            clip.get_image_features(pixel_values=pixels).pooler_output - reference.encode_image(pixels)
        ).abs().max() < 1e-5
        assert (
            clip.get_text_features(input_ids=ids).pooler_output - reference.encode_text(ids)
        ).abs().max() < 1e-5


def test_export_cli(checkpoint, tmp_path):
    src, _ = checkpoint
    run = [sys.executable, "-m", "fgclip.export"]
    ok = subprocess.run([*run, str(src), str(tmp_path / "out")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and "tokenizer" in ok.stdout
    assert CLIPModel.from_pretrained(tmp_path / "out") is not None
    missing = subprocess.run(
        [*run, str(tmp_path / "nowhere"), str(tmp_path / "o2")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "nowhere" in missing.stderr
