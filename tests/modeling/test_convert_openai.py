"""OpenAI CLIP files (safetensors, state-dict .pt, the clip package's TorchScript archive) into
FGCLIPModel."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import zipfile

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

from fgclip.modeling import FGCLIPModel
from fgclip.weights import names
from fgclip.weights.archive import TorchScriptArchive, is_torchscript_archive
from fgclip.weights.errors import MissingWeightsError, UnsafeArchiveError, WeightsFileError

from .openai_reference import (
    IMAGE,
    TEXT_LAYERS,
    VISION_LAYERS,
    clipmodel_to_openai,
    reference_model,
    text_ids,
)

JIT_WARNINGS = pytest.mark.filterwarnings(
    "ignore:`torch.jit:FutureWarning", "ignore::torch.jit.TracerWarning"
)


def save_archive(model: torch.nn.Module, path, half: bool = False) -> None:
    """What the clip package ships: a traced module saved by torch.jit.save (of a copy: tracing shares the
    parameters, and .half() would convert the caller's model too)."""
    traced = torch.jit.trace(copy.deepcopy(model), (torch.randn(2, 3, IMAGE, IMAGE), text_ids(2, 77, seed=1)))
    if half:
        traced = traced.half()
    torch.jit.save(traced, str(path))


def write(state: dict[str, torch.Tensor], path, kind: str) -> None:
    if kind == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


def features(model, pixels, ids):
    with torch.no_grad():
        if isinstance(model, FGCLIPModel):
            return model.get_image_features(pixels), model.get_text_features(ids)
        if isinstance(model, CLIPModel):
            return (
                model.get_image_features(pixel_values=pixels).pooler_output,
                model.get_text_features(input_ids=ids).pooler_output,
            )
        return model.encode_image(pixels), model.encode_text(ids)


def assert_same_features(a, b, tol: float = 1e-5) -> None:
    pixels, ids = torch.randn(3, 3, IMAGE, IMAGE), text_ids(4, 24, seed=5)
    (ia, ta), (ib, tb) = features(a, pixels, ids), features(b, pixels, ids)
    assert (ia - ib).abs().max() < tol
    assert (ta - tb).abs().max() < tol


@pytest.fixture(scope="module")
def reference():
    return reference_model(seed=0)


@JIT_WARNINGS
@pytest.mark.parametrize("kind", ["safetensors", "pt", "torchscript"])
def test_openai_file_loads_with_the_reference_features(reference, tmp_path, kind, monkeypatch):
    path = tmp_path / ("ViT-tiny.safetensors" if kind == "safetensors" else "ViT-tiny.pt")
    if kind == "torchscript":
        save_archive(reference, path)
        assert is_torchscript_archive(path)

        def refuse(*args, **kwargs):
            raise AssertionError("torch.jit.load was called")

        monkeypatch.setattr(torch.jit, "load", refuse)
    else:
        write(reference.state_dict(), path, kind)
    model = FGCLIPModel.from_pretrained(path)
    assert_same_features(model, reference)
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.num_attention_heads, vision.num_attention_heads) == (1, 2)  # width / 64
    assert (text.num_hidden_layers, vision.num_hidden_layers) == (TEXT_LAYERS, VISION_LAYERS)
    assert (vision.patch_size, vision.image_size, model.config.projection_dim) == (8, IMAGE, 16)
    assert (text.eos_token_id, text.vocab_size, text.max_position_embeddings) == (99, 100, 77)
    report = model.loading_report
    assert report.layout == "openai" and report.unexpected_new == [] and report.unused_checkpoint_keys == []
    assert sorted(report.metadata_keys) == ["context_length", "input_resolution", "vocab_size"]
    # every tensor accounted for exactly once
    assert set(report.consumed) | set(report.newly_initialized) == set(model.state_dict())
    assert not set(report.consumed) & set(report.newly_initialized)
    assert "in_proj_weight (q third" in report.consumed["text_model.encoder.layers.1.self_attn.q_proj.weight"]
    assert report.consumed["visual_projection.weight"] == "visual.proj (transposed)"
    assert set(report.derived) >= {"long_position_embedding.weight", "text_long_projection.weight"}
    assert torch.equal(model.text_long_projection.weight, model.text_projection.weight)
    assert model.logit_scale.item() == pytest.approx(reference.logit_scale.item())


@JIT_WARNINGS
def test_half_precision_archive_reads_the_same_tensors(reference, tmp_path):
    path = tmp_path / "ViT-half.pt"
    save_archive(reference, path, half=True)  # the clip package's archives hold fp16 weights
    archive = TorchScriptArchive(path)
    state = reference.state_dict()
    assert set(archive.tensors) == set(state)
    for name, value in state.items():
        got = archive.tensor(name)
        expected = value.half() if value.is_floating_point() else value
        assert got.dtype == expected.dtype and torch.equal(got, expected), name
    rounded = reference_model(seed=0)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())
    assert_same_features(FGCLIPModel.from_pretrained(path), rounded)


def test_tiny_clipmodel_written_in_openai_layout_loads_equal(tmp_path):
    torch.manual_seed(3)
    config = CLIPConfig(
        text_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=1, intermediate_size=256,
                         vocab_size=100, eos_token_id=99, bos_token_id=98, pad_token_id=99),
        vision_config=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                           image_size=IMAGE, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    clip = CLIPModel(config).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "openai.pt"
    torch.save(clipmodel_to_openai(clip.state_dict()), path)
    model = FGCLIPModel.from_pretrained(path)
    assert_same_features(model, clip)
    assert model.logit_scale.item() == pytest.approx(clip.logit_scale.item())


def test_missing_qkv_is_an_error_naming_the_tensors(reference, tmp_path):
    state = dict(reference.state_dict())
    gone = "visual.transformer.resblocks.1.attn.in_proj_weight"
    del state[gone]
    path = tmp_path / "broken.safetensors"
    write(state, path, "safetensors")
    ours = [f"vision_model.encoder.layers.1.self_attn.{p}_proj.weight" for p in "kqv"]
    assert names.uncovered(state) == sorted(ours)
    with pytest.raises(MissingWeightsError) as err:
        FGCLIPModel.from_pretrained(path)
    message = str(err.value)
    assert all(name in message for name in ours) and gone in message and str(path) in message
    lenient = FGCLIPModel.from_pretrained(path, strict_towers=False)
    assert sorted(lenient.loading_report.unexpected_new) == sorted(ours)
    assert lenient.loading_report.missing_sources[ours[0]] == [gone]


def test_archive_facts_must_match_the_shapes(reference, tmp_path):
    state = dict(reference.state_dict())
    state["input_resolution"] = torch.tensor(224)
    write(state, tmp_path / "odd.pt", "pt")
    with pytest.raises(ValueError, match=r"input_resolution = 224.*image_size = 32"):
        FGCLIPModel.from_pretrained(tmp_path / "odd.pt")


def test_a_missing_norm_or_projection_is_an_error_too(reference, tmp_path):
    state = {k: v for k, v in reference.state_dict().items() if k not in ("ln_final.bias", "visual.proj")}
    path = tmp_path / "broken.pt"
    write(state, path, "pt")
    with pytest.raises(MissingWeightsError, match=r"text_model\.final_layer_norm\.bias.*visual_projection|"
                       r"visual_projection.*text_model\.final_layer_norm\.bias"):  # fmt: skip
        FGCLIPModel.from_pretrained(path)


class Payload:
    """Pickles to a call of os.system: what a hostile checkpoint would run on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def hostile_archive(path, data_pkl: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ViT-B-32/data.pkl", data_pkl)
        zf.writestr("ViT-B-32/constants.pkl", pickle.dumps(()))
        zf.writestr("ViT-B-32/version", "3\n")
        zf.writestr("ViT-B-32/code/__torch__/model.py", "def forward(self): pass\n")


def test_hostile_archives_are_refused_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    cases = {
        "os.system": pickle.dumps(Payload(marker), protocol=2),
        "builtins.eval": b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R.",
        # a __torch__ object whose state is not an attribute dict (a __setstate__ payload)
        "custom state": b"\x80\x02c__torch__\nM\n)\x81X\x03\x00\x00\x00abcb.",
        # a storage id that is not a storage
        "persistent id": b"\x80\x02X\x03\x00\x00\x00abcQ.",
        # BUILD on an allowed function: would rewrite the reader's own objects
        "build on a global": b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00aK\x01sb.",
        # a checked tensor whose size BUILD would then rewrite
        "build on a tensor": (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
            b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\n"
            b"OrderedDict\n)RtR}X\x04\x00\x00\x00sizeK\x63\x85sb."
        ),
    }
    for label, data in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.pt"
        hostile_archive(path, data)
        assert is_torchscript_archive(path)
        with pytest.raises(UnsafeArchiveError) as err:
            TorchScriptArchive(path)
        assert str(path) in str(err.value), label
        with pytest.raises(UnsafeArchiveError):
            FGCLIPModel.from_pretrained(path)
    with pytest.raises(UnsafeArchiveError, match=r"asks for (posix|os|nt)\.system"):
        TorchScriptArchive(tmp_path / "os.system.pt")
    assert not marker.exists()


def test_hostile_state_dict_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "state.pt"
    torch.save({"visual.proj": Payload(marker)}, path)
    with pytest.raises(WeightsFileError, match="weights_only"):
        FGCLIPModel.from_pretrained(path)
    assert not marker.exists()


@JIT_WARNINGS
def test_name_maps_and_archive_names_need_no_torch(reference, tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    save_archive(reference, path)
    code = (
        "import sys\nfrom fgclip.weights import names, arch\n"
        "from fgclip.weights.archive import TorchScriptArchive\n"
        f"keys = TorchScriptArchive({str(path)!r}).shapes()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(len(names.openai_rules(12, 12)), len(keys), len(names.uncovered(keys)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["398", str(len(reference.state_dict())), "0"]  # ViT-B: 4 + 7 + 3 + 16 x 24


def test_coverage_counts_every_tensor(reference):
    cov = names.coverage(reference.state_dict())
    assert cov.layout == "openai" and cov.uncovered_tower == {} and cov.unused == []
    assert len(cov.rules) == len(names.tower_keys(TEXT_LAYERS, VISION_LAYERS))
    assert len({s for r in cov.rules for s in r.sources}) == len(reference.state_dict()) - 3  # 3 metadata
    # depths from a config.json show a block the source lacks entirely
    assert len(names.uncovered(reference.state_dict(), TEXT_LAYERS + 1, VISION_LAYERS)) == 16
