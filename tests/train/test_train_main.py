"""The training entry point on the embedded data: a real Trainer run, parts logged, bank, clamp, guards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fgclip.modeling import FGCLIPModel
from fgclip.train.args import parse_args
from fgclip.train.errors import TrainingRefused
from fgclip.train.main import main
from fgclip.train.optim import build_param_groups, describe_param_groups
from fgclip.train.resume import checkpoints

from .conftest import tiny_args


def log_history(out: Path) -> list[dict]:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def test_embedded_run_trains_with_every_part(embedded, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(out)) == 0
    logs = [entry for entry in log_history(out) if "loss" in entry]
    assert len(logs) == 6  # every 2 of 12 optimizer steps
    for part in ("global_long_loss", "global_short_loss", "region_loss", "hard_negative_loss"):
        assert all(math.isfinite(entry[part]) for entry in logs), part
    assert logs[-1]["region_loss"] < logs[0]["region_loss"]
    model = FGCLIPModel.from_pretrained(out)
    bank = model.memory_bank
    assert bank.optimizer_steps.item() == 12  # counted per optimizer step, with accumulation 2
    assert bank.activated_step.item() == 4
    assert bank.fill.item() > 0
    for scale in model.logit_scales().values():
        assert scale.item() <= math.log(100) + 1e-6  # clamped after every step
    assert json.loads((out / "memory_bank_ranks.json").read_text())["identical"] is True


def test_param_groups_never_decay_scales_and_give_heads_their_lr(embedded):
    model = FGCLIPModel.from_pretrained(
        embedded["model_name_or_path"], fgclip_overrides={"region_head": "roi_projection"}
    )
    groups = {
        g["name"]: g
        for g in build_param_groups(model, 1e-4, 0.1, head_learning_rate=1e-3, logit_scale_learning_rate=5e-4)
    }
    assert set(groups["logit_scales"]["param_names"]) == {
        "logit_scale",
        "logit_scale_finegrained",
        "logit_scale_hardneg",
    }
    assert groups["logit_scales"]["weight_decay"] == 0.0 and groups["logit_scales"]["lr"] == 5e-4
    assert "roi_projection.weight" in groups["heads_decay"]["param_names"]
    assert groups["heads_decay"]["lr"] == 1e-3 and groups["towers_decay"]["lr"] == 1e-4
    for name in groups["towers_decay"]["param_names"] + groups["heads_decay"]["param_names"]:
        assert not name.endswith("bias") and "norm" not in name and "embedding" not in name, name
    every = [n for g in groups.values() for n in g["param_names"]]
    assert len(every) == len(set(every)) == sum(1 for p in model.parameters() if p.requires_grad)
    line = describe_param_groups(list(groups.values()))
    assert "\n" not in line and "logit_scales(3 tensors" in line


def test_fp16_is_refused_with_the_reason(embedded, tmp_path, capsys):
    assert main(tiny_args(tmp_path / "run", "--fp16", "true")) == 2
    assert "fp16 is refused" in capsys.readouterr().err


def test_config_file_layers_under_the_command_line(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\nmemory_bank_size = 16\n[training]\nmax_steps = 7\nlogging_steps = 3\n")
    model_args, _, train_args = parse_args(
        [
            "--preset",
            "embedded",
            "--config",
            str(cfg),
            "--max_steps",
            "5",
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    assert train_args.max_steps == 5  # command line wins
    assert train_args.logging_steps == 3 and model_args.memory_bank_size == 16  # file beats preset
    assert model_args.memory_bank_warmup_steps == 20  # preset value
    bad = tmp_path / "fork.json"
    bad.write_text(json.dumps({"memory_bank_warmup_forward_passes": 400}))
    with pytest.raises(TrainingRefused, match="optimizer steps"):
        parse_args(["--config", str(bad), "--output_dir", str(tmp_path / "o")])


def _stale_checkpoint(embedded, out: Path, step: int) -> Path:
    model = FGCLIPModel.from_pretrained(
        embedded["model_name_or_path"],
        fgclip_overrides={
            "finegrained_logit_scale_init": 2.6592,
            "memory_bank_size": 128,
            "memory_bank_warmup_steps": 20,
            "region_head": "roi_projection",
        },
    )
    ckpt = out / f"checkpoint-{step}"
    model.save_pretrained(ckpt)
    return ckpt


def test_resume_guard_refuses_stale_checkpoints_and_deletes_nothing(embedded, tmp_path, capsys):
    out = tmp_path / "run"
    for step in (200, 1000):
        _stale_checkpoint(embedded, out, step)
    assert [p.name for p in checkpoints(out)] == ["checkpoint-200", "checkpoint-1000"]
    assert main(tiny_args(out)) == 2
    message = capsys.readouterr().err
    assert "checkpoint-200" in message and "checkpoint-1000" in message and "2.6592" in message
    assert "--resume_policy ignore" in message and "fgdiag check-config --quarantine" in message
    before = sorted(p.name for p in (out / "checkpoint-200").iterdir())
    assert main(tiny_args(out, "--resume_policy", "ignore", "--max_steps", "2")) == 0
    assert sorted(p.name for p in (out / "checkpoint-200").iterdir()) == before
    fresh = [p for p in out.iterdir() if p.name.startswith("fresh-")]
    assert len(fresh) == 1 and (fresh[0] / "model.safetensors").exists()
    saved = FGCLIPModel.from_pretrained(out / "checkpoint-200")
    assert saved.logit_scale_finegrained.item() == pytest.approx(2.6592, abs=1e-4)
    assert torch.isfinite(saved.logit_scale).all()


def test_video_records_train_end_to_end(embedded, tmp_path):
    """UCF-style video records (PyAV-decoded clips, keyframe tracks) through the same entry point."""
    videos = str(Path(embedded["data_path"]).with_name("videos.json"))
    out = tmp_path / "video"
    assert (
        main(
            [
                "--preset",
                "embedded",
                "--output_dir",
                str(out),
                "--data_path",
                videos,
                "--data_format",
                "video",
                "--num_frames",
                "4",
                "--temporal_pooling",
                "attention",
                "--max_steps",
                "4",
                "--per_device_train_batch_size",
                "4",
                "--gradient_accumulation_steps",
                "1",
                "--logging_steps",
                "2",
                "--memory_bank_warmup_steps",
                "2",
                "--save_steps",
                "1000",
                "--disable_tqdm",
                "true",
                "--dataloader_pin_memory",
                "false",
            ]
        )
        == 0
    )
    logs = [e for e in log_history(out) if "loss" in e]
    assert len(logs) == 2 and all(math.isfinite(e["region_loss"]) for e in logs)
    model = FGCLIPModel.from_pretrained(out)
    assert model.temporal_pool is not None and model.memory_bank.activated_step.item() == 2
