"""FGD403 on the weights users start from (issue 15 item 2): OpenAI CLIP files (safetensors, a state-dict
.pt, the `clip` package's TorchScript archive, read without running it) and upstream FG-CLIP folders. The
finding lists exactly the tower tensors a loader would leave random; an intact source gives none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fgclip.vocab import CLIP_FROM_SCRATCH_SCALE, LN_100
from fgdiag.check import check_paths
from fgdiag.facts.clip_keys import normalise_keys
from fgdiag.facts.values import InputError
from tests.modeling.openai_reference import clipmodel_to_openai, reference_model, text_ids

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b

QKV = [f"text_model.encoder.layers.1.self_attn.{p}_proj.weight" for p in "kqv"]


def openai_state(drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tiny CLIP of the builders in the clip package's layout (fused in_proj, transposed projections)."""
    ours = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, (_, v) in b.clip_tensors().items()}
    return {k: v for k, v in clipmodel_to_openai(ours).items() if k not in drop}


def fgd403(findings):
    return [f for f in findings if f.code == "FGD403"]


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_openai_files_intact_and_with_q_k_v_missing(tmp_path: Path, kind: str) -> None:
    """Before: an OpenAI file was "no config.json, FGD403 not checked", whatever it lacked."""
    for drop, expected in (((), []), (("transformer.resblocks.1.attn.in_proj_weight",), QKV)):
        path = tmp_path / f"ViT-tiny-{len(drop)}.{kind}"
        state = openai_state(drop)
        save_file(state, str(path)) if kind == "safetensors" else torch.save(state, path)
        findings, summary = check_paths([path])
        found = fgd403(findings)
        if not expected:
            assert found == [] and summary["models"][0]["naming"] == "clip"
            continue
        [finding] = found
        assert finding.evidence["missing"] == expected and finding.location == str(path)
        assert "3 tower tensor(s) missing" in finding.message and "refuses" in finding.message


def test_torchscript_archive_is_read_without_running_it(tmp_path: Path, monkeypatch) -> None:
    """The clip package's download: names, shapes and the logit scale read from the zip; torch.jit never
    runs (it is made to fail here), nothing of the archive's code is executed."""
    model = reference_model(seed=0)
    path = tmp_path / "ViT-tiny.pt"
    traced = torch.jit.trace(model, (torch.randn(2, 3, 32, 32), text_ids(2, 77, seed=1)), check_trace=False)
    torch.jit.save(traced, str(path))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load called"))
    findings, summary = check_paths([path])
    assert fgd403(findings) == [] and summary["models"][0]["tensors"] > 20
    assert summary["models"][0]["logit_scale"]["logit_scale"] == pytest.approx(LN_100, abs=1e-6)
    config = tmp_path / "run.toml"
    config.write_text(
        f'model_name_or_path = "{path}"\nfinegrained_logit_scale_init = {CLIP_FROM_SCRATCH_SCALE}\n'
        "max_steps = 10\n"
    )
    heads = [f for f in check_paths([config])[0] if f.code == "FGD101"]
    assert heads and str(path) in heads[0].message  # the archive's own scale (ln 100) is the reference


def test_hostile_archive_is_refused_naming_it(tmp_path: Path) -> None:
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(Payload()))
        zf.writestr("evil/constants.pkl", pickle.dumps(()))
    with pytest.raises(InputError) as info:
        check_paths([path])
    assert str(info.value).startswith(str(path)) and not Path("PWNED").exists()


def upstream_folder(path: Path, *, ori: bool = True, drop: tuple[str, ...] = ()) -> Path:
    tensors = {k: v for k, v in b.clip_tensors().items() if k not in drop}
    table = ("F32", np.zeros((20, 8), np.float32))
    tensors.update(
        {
            "text_filip_projection.weight": ("F32", np.zeros((4, 8), np.float32)),
            "text_model.embeddings.position_embedding_res.weight": table,
            "logit_scale_finegraind": ("F32", np.float32(LN_100)),
            "logit_scale_hardneg": ("F32", np.float32(LN_100)),
        }
    )
    if ori:
        tensors["text_model.embeddings.position_embedding_ori.weight"] = table
    return b.model_dir(path, tensors)


def test_upstream_fgclip_folder(tmp_path: Path) -> None:
    intact = upstream_folder(tmp_path / "fg-clip")
    findings, summary = check_paths([intact])
    assert fgd403(findings) == [] and summary["models"][0]["naming"] == "upstream"
    broken = upstream_folder(tmp_path / "broken", ori=False, drop=(QKV[0],))
    [finding] = fgd403(check_paths([broken])[0])
    assert finding.evidence["missing"] == [QKV[0]]
    assert "long_position_embedding.weight" in finding.evidence["expected_new"]  # half a table is no table


def test_long_table_needs_both_halves() -> None:
    """Before: `_res` alone was taken for the whole long table (the alias mapped it by itself)."""
    ori = "text_model.embeddings.position_embedding_ori.weight"
    res = "text_model.embeddings.position_embedding_res.weight"
    assert "long_position_embedding.weight" in normalise_keys([ori, res])
    assert "long_position_embedding.weight" not in normalise_keys([res])


def test_config_depth_counts_a_block_the_weights_lack(tmp_path: Path) -> None:
    config = dict(b.TINY_CONFIG, text_config={**b.TINY_CONFIG["text_config"], "num_hidden_layers": 3})
    folder = b.model_dir(tmp_path / "m", b.clip_tensors(), config)
    [finding] = fgd403(check_paths([folder])[0])
    assert (
        all(".layers.2." in k for k in finding.evidence["missing"]) and len(finding.evidence["missing"]) == 16
    )
