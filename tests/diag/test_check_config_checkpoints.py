"""Checkpoint reading: ours / upstream / fork naming, bf16 scalars, numeric order, compare_checkpoint (the
resume guard's API), non-finite scans (FGD402), missing CLIP keys (FGD403), torch files read only with
weights_only=True, and a malicious pickle that must not run."""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from fgdiag.check import check_paths, compare_checkpoint
from fgdiag.diagnostic import Severity
from fgdiag.facts.checkpoint import round_to
from fgdiag.facts.values import InputError
from fgdiag.static import safetensors_io as sio
from fgdiag.static.checkpoints import list_checkpoints, read_checkpoint

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b


def test_check_config_reads_fork_names_and_bf16(tmp_path: Path) -> None:
    info = read_checkpoint(b.seed_checkpoint(tmp_path / "out", 20))
    assert info.naming == "fork" and info.step == 20
    assert info.scales["logit_scale_finegrained"].key == "logit_scale_finegraind"
    assert info.scales["logit_scale_finegrained"].value == 2.65625  # bf16 of 2.6592
    assert info.scales["logit_scale"].value == 4.59375  # bf16 of ln 100
    assert info.memory_bank_size == 128 and info.forward_passes == 160
    assert round_to(4.6052, "BF16") == 4.59375 and round_to(2.6592, "BF16") == 2.65625


def test_check_config_reads_ours_and_upstream(tmp_path: Path) -> None:
    ours = read_checkpoint(b.fixed_checkpoint(tmp_path / "out", 100))
    assert ours.naming == "fgclip" and ours.memory_bank_size == 128 and ours.memory_bank_warmup_steps == 6
    tensors = b.clip_tensors()
    tensors.update(
        {
            "logit_scale_finegraind": ("F32", np.float32(4.6052)),
            "logit_scale_hardneg": ("F32", np.float32(4.6052)),
            "text_filip_projection.weight": ("F32", np.zeros((4, 8), np.float32)),
            "text_model.embeddings.position_embedding_res.weight": ("F32", np.zeros((32, 8), np.float32)),
        }
    )
    upstream = read_checkpoint(b.model_dir(tmp_path / "fg-clip-base", tensors))
    assert upstream.naming == "upstream"
    assert upstream.scales["logit_scale_finegrained"].value == pytest.approx(4.6052)
    findings, _ = check_paths([upstream.path])
    assert findings == []


def test_check_config_checkpoints_in_numeric_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for step in (900, 1000, 80):
        b.fixed_checkpoint(out, step)
    (out / "checkpoint-best").mkdir()
    assert [p.name for p in list_checkpoints(out)] == [
        "checkpoint-80",
        "checkpoint-900",
        "checkpoint-1000",
        "checkpoint-best",
    ]
    _, summary = check_paths([out])
    assert [row["step"] for row in summary["checkpoints"]] == [80, 900, 1000]


def test_check_config_compare_checkpoint_api(tmp_path: Path) -> None:
    path = b.fixed_checkpoint(tmp_path / "out", 100)
    assert (
        compare_checkpoint(
            path,
            {
                "logit_scale_finegrained": 4.6052,
                "logit_scale_hardneg": 4.6052,
                "memory_bank_size": 128,
                "memory_bank_warmup_steps": 6,
            },
        )
        == []
    )
    stale = compare_checkpoint(
        path,
        {
            "logit_scale_finegrained": 2.6592,
            "memory_bank_size": 256,
            "memory_bank_warmup_steps": 50,
            "source": "cfg.toml",
        },
    )
    assert len(stale) == 1 and stale[0].code == "FGD401" and stale[0].severity is Severity.ERROR
    fields = [d["field"] for d in stale[0].evidence["differences"]]
    assert fields == ["logit_scale_finegrained", "memory_bank_size", "memory_bank_warmup_steps"]
    assert "cfg.toml" in stale[0].message
    # a trained scale may drift by about lr per Adam step: 100 steps x 1e-4 covers 0.005
    moved = b.fixed_checkpoint(tmp_path / "out2", 100, finegrained=4.6002)
    assert compare_checkpoint(moved, {"logit_scale_finegrained": 4.6052})
    assert compare_checkpoint(moved, {"logit_scale_finegrained": 4.6052, "scale_drift_per_step": 1e-4}) == []
    # bf16 checkpoint against fp32 intent: compared at the saved precision
    fork = b.seed_checkpoint(tmp_path / "fork", 20)
    assert compare_checkpoint(fork, {"logit_scale": 4.6052}) != []  # heads carry the bug regardless
    assert [
        d["field"]
        for d in compare_checkpoint(fork, {"logit_scale_finegrained": 2.6592})[0].evidence["differences"]
    ] == ["logit_scale_finegrained", "logit_scale_hardneg"]


def test_check_config_memory_bank_mismatch_is_stale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    b.fixed_checkpoint(out, 100, bank=0)
    cfg = b.write_json_config(tmp_path / "c.json", b.fixed_with())
    findings, _ = check_paths([cfg, out])
    stale = [f for f in findings if f.code == "FGD401"]
    assert stale and "memory bank of 0 entries saved, configured 128" in stale[0].message


def test_check_config_fgd402_nonfinite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = b.clip_tensors()
    weight = tensors["visual_projection.weight"][1].copy()
    weight[0, 0] = np.nan
    tensors["visual_projection.weight"] = ("F32", weight)
    tensors["roi_projection.weight"] = ("BF16", np.array([[np.inf, 0.0]], np.float32))
    bad = b.model_dir(tmp_path / "bad", tensors)
    findings, _ = check_paths([bad])
    hits = [f for f in findings if f.code == "FGD402"]
    assert len(hits) == 1 and hits[0].severity is Severity.ERROR
    assert hits[0].evidence["tensors"] == ["roi_projection.weight", "visual_projection.weight"]
    monkeypatch.setattr(sio, "SLICE_BYTES", 64)  # force the sliced path on every tensor
    assert sio.nonfinite_tensors(
        bad / "model.safetensors", sio.read_header(bad / "model.safetensors")[0]
    ) == ["roi_projection.weight", "visual_projection.weight"]
    good = b.model_dir(tmp_path / "good", b.clip_tensors())
    assert not [f for f in check_paths([good])[0] if f.code == "FGD402"]


def test_check_config_fgd403_missing_and_mismatched(tmp_path: Path) -> None:
    tensors = b.clip_tensors()
    del tensors["text_model.encoder.layers.0.self_attn.q_proj.weight"]
    tensors["vision_model.embeddings.position_embedding.weight"] = ("F32", np.zeros((10, 8), np.float32))
    broken = b.model_dir(tmp_path / "broken", tensors)
    hits = [f for f in check_paths([broken])[0] if f.code == "FGD403"]
    assert len(hits) == 1 and hits[0].severity is Severity.WARNING
    assert hits[0].evidence["missing"] == ["text_model.encoder.layers.0.self_attn.q_proj.weight"]
    assert hits[0].evidence["mismatched"] == ["vision_model.embeddings.position_embedding.weight"]
    # a plain CLIP source misses only the expected new heads: quiet
    clip = b.model_dir(tmp_path / "clip", b.clip_tensors())
    cfg = b.write_json_config(tmp_path / "c.json", b.fixed_with(model_name_or_path=str(clip)))
    assert not [f for f in check_paths([cfg])[0] if f.code == "FGD403"]


def test_check_config_sharded_safetensors(tmp_path: Path) -> None:
    tensors = b.clip_tensors()
    names = sorted(tensors)
    half = len(names) // 2
    folder = tmp_path / "sharded"
    b.write_safetensors(folder / "model-00001-of-00002.safetensors", {n: tensors[n] for n in names[:half]})
    b.write_safetensors(folder / "model-00002-of-00002.safetensors", {n: tensors[n] for n in names[half:]})
    index = {
        "weight_map": {
            n: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, n in enumerate(names)
        }
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(b.TINY_CONFIG))
    info = read_checkpoint(folder)
    assert len(info.weights.files) == 2 and info.scales["logit_scale"].value == pytest.approx(
        4.60517, abs=1e-4
    )


def test_check_config_truncated_safetensors_is_unreadable(tmp_path: Path) -> None:
    path = b.model_dir(tmp_path / "m", b.clip_tensors()) / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(InputError, match="truncated"):
        check_paths([path.parent])


class Exploit:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_check_config_torch_bin_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(np.asarray(v, np.float32).copy()) for k, (_, v) in b.clip_tensors().items()}
    state["logit_scale_finegraind"] = torch.tensor(2.6592, dtype=torch.bfloat16)
    state["logit_scale_hardneg"] = torch.tensor(2.6592, dtype=torch.bfloat16)
    folder = tmp_path / "out" / "checkpoint-30"
    folder.mkdir(parents=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(b.TINY_CONFIG))
    info = read_checkpoint(folder)
    assert info.naming == "upstream" and info.scales["logit_scale_finegrained"].value == 2.65625
    findings, _ = check_paths([tmp_path / "out"])
    assert {f.code for f in findings} == {"FGD401"}


@pytest.mark.parametrize("layout", ["legacy-pickle", "torch-zip"])
def test_check_config_malicious_pickle_never_runs(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "PWNED"
    folder = tmp_path / "out" / "checkpoint-10"
    folder.mkdir(parents=True)
    payload = {"logit_scale": Exploit(marker)}
    if layout == "legacy-pickle":
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch = pytest.importorskip("torch")
        torch.save(payload, folder / "pytorch_model.bin")
    assert not marker.exists()
    with pytest.raises(InputError, match="unsafe") as info:
        check_paths([tmp_path / "out"])
    assert "pytorch_model.bin" in str(info.value)
    assert not marker.exists()
