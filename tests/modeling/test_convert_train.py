"""`python -m fgclip.train --model_name_or_path FILE` with an OpenAI-layout file, on the embedded data."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel

from fgclip.modeling import FGCLIPModel
from fgclip.train.embedded import prepare_embedded
from fgclip.train.main import main

from .openai_reference import clipmodel_to_openai


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory):
    """The embedded data, and its tiny CLIP written as an OpenAI state dict (the file users start from)."""
    paths = prepare_embedded(tmp_path_factory.mktemp("embedded"))
    clip = CLIPModel.from_pretrained(paths["model_name_or_path"])
    path = tmp_path_factory.mktemp("openai") / "ViT-tiny.pt"
    torch.save(clipmodel_to_openai(clip.state_dict()), path)
    return paths, path


def run_args(paths, model: str, out, *extra: str) -> list[str]:
    return [
        *(
            "--model_name_or_path",
            model,
            "--data_path",
            paths["data_path"],
            "--image_root",
            paths["image_root"],
        ),
        *("--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4"),
        *("--logging_steps", "1", "--save_steps", "1000", "--disable_tqdm", "true", "--report_to", "none"),
        *("--dataloader_pin_memory", "false", *extra),
    ]


def test_training_starts_from_an_openai_file(openai_file, tmp_path, caplog):
    paths, path = openai_file
    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="fgclip"):
        assert (
            main(run_args(paths, str(path), out, "--tokenizer_name_or_path", paths["model_name_or_path"]))
            == 0
        )
    assert f"loaded {path} (openai)" in caplog.text
    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(logs) == 2 and all(torch.isfinite(torch.tensor(e["loss"])) for e in logs)
    trained = FGCLIPModel.from_pretrained(out)
    assert trained.loading_report.newly_initialized == []
    assert trained.config.text_config.eos_token_id == trained.config.text_config.vocab_size - 1


def test_a_weights_file_without_a_tokenizer_is_refused_by_name(openai_file, tmp_path, capsys):
    paths, path = openai_file
    assert main(run_args(paths, str(path), tmp_path / "run")) == 2
    assert "--tokenizer_name_or_path" in capsys.readouterr().err
