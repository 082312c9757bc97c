"""fgclip in a stock transformers Trainer, built as the README shows: default `remove_unused_columns=True`,
`report_to="tensorboard"`, FGCLIPCallback for the scale clamp, the memory-bank clock and the loss parts."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")

WARMUP = 5  # optimizer steps before the bank switches on
CLAMP = 4.0  # below the tiny CLIP's saved global scale (ln 100): only the clamp can bring it here
OVERRIDES = {
    "region_head": "roi_projection",
    "memory_bank_size": 64,
    "memory_bank_warmup_steps": WARMUP,
    "logit_scale_max": CLAMP,
    "finegrained_logit_scale_init": CLAMP,
    "hardneg_logit_scale_init": CLAMP,
}
TRAINING = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 2,
    "learning_rate": 1e-3,  # Adam moves a scale ~lr per step: 24 steps cannot walk 4.6052 down to 4.0
    "logging_steps": 4,
    "save_steps": 12,
    "seed": 0,
    "use_cpu": True,
    "disable_tqdm": True,
    "dataloader_pin_memory": False,
}


def build_plain_trainer(model_path, data_path, image_root, output_dir, overrides, **training):
    """The README snippet, up to `trainer.train()` (the README fills in `overrides` and `training`)."""
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from fgclip.data.module import build_data_module, data_kwargs_from_config
    from fgclip.modeling import FGCLIPModel
    from fgclip.train import FGCLIPCallback

    model = FGCLIPModel.from_pretrained(model_path, fgclip_overrides=overrides)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_data_module(
        data_path, tokenizer=tokenizer, image_root=image_root, **data_kwargs_from_config(model.config)
    )
    args = TrainingArguments(output_dir=output_dir, report_to="tensorboard", **training)
    trainer = Trainer(model=model, args=args, train_dataset=data.train_dataset, data_collator=data.collator)
    FGCLIPCallback.attach(trainer)  # clamp + bank clock each optimizer step; loss parts before report_to
    return trainer


def _trainer(embedded, out: Path, **extra):
    return build_plain_trainer(
        embedded["model_name_or_path"],
        embedded["data_path"],
        embedded["image_root"],
        str(out),
        OVERRIDES,
        **{**TRAINING, **extra},
    )


def _scalars(out: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (logdir,) = {p.parent for p in out.glob("runs/*/events.out.tfevents.*")}
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_stock_trainer_readme_snippet(embedded, tmp_path):
    out = tmp_path / "plain"
    trainer = _trainer(embedded, out, max_steps=24)
    trainer.train()
    assert trainer.args.remove_unused_columns is True  # the Trainer default, kept
    model = trainer.model
    bank = model.memory_bank
    assert bank.optimizer_steps.item() == 24  # one tick per optimizer step, accumulation 2
    assert bank.activated_step.item() == WARMUP and bank.fill.item() > 0
    scales = {head: p.item() for head, p in model.logit_scales().items()}
    assert all(v <= CLAMP + 1e-6 for v in scales.values()), scales
    history = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in history] == [4, 8, 12, 16, 20, 24]
    parts = ("global_long_loss", "global_short_loss", "region_loss", "hard_negative_loss")
    assert all(math.isfinite(e[p]) for e in history for p in parts)
    tb = _scalars(out)
    for part in parts:
        logged = tb[f"train/{part}"]
        assert sorted(logged) == [4, 8, 12, 16, 20, 24], part
        for entry in history:
            assert logged[entry["step"]] == pytest.approx(entry[part], rel=1e-5, abs=1e-6), part
    # the parts sum to the logged total (each is already weighted)
    assert history[-1]["loss"] == pytest.approx(sum(history[-1][p] for p in parts), rel=1e-3)


def test_stock_trainer_resume_continues_the_clock_exactly(embedded, tmp_path):
    """Stop at a checkpoint, resume in a new Trainer: bank and scales equal an uninterrupted run."""
    whole = _trainer(embedded, tmp_path / "whole", max_steps=16, save_steps=8)
    whole.train()
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-8", cut / "checkpoint-8")
    again = _trainer(embedded, cut, max_steps=16, save_steps=8)
    again.train(resume_from_checkpoint=str(cut / "checkpoint-8"))
    whole, resumed = whole.model, again.model
    assert resumed.memory_bank.optimizer_steps.item() == 16
    assert resumed.memory_bank.activated_step.item() == WARMUP
    for name in ("image_queue", "text_queue", "ptr", "fill", "entry_step"):
        a, b = getattr(whole.memory_bank, name), getattr(resumed.memory_bank, name)
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    for head, scale in whole.logit_scales().items():
        assert resumed.logit_scales()[head].item() == pytest.approx(scale.item(), abs=1e-6), head


def test_callback_in_callbacks_list_still_trains_and_says_why_tensorboard_misses_parts(
    embedded, tmp_path, caplog
):
    from fgclip.train import FGCLIPCallback

    out = tmp_path / "listed"
    trainer = _trainer(embedded, out, max_steps=8)
    trainer.remove_callback(FGCLIPCallback)
    trainer.add_callback(
        FGCLIPCallback()
    )  # where callbacks=[FGCLIPCallback()] puts it: after the integrations
    with caplog.at_level(logging.WARNING, logger="fgclip.train"):
        trainer.train()
    assert trainer.model.memory_bank.activated_step.item() == WARMUP
    assert "FGCLIPCallback.attach(trainer)" in caplog.text
    history = [e for e in trainer.state.log_history if "loss" in e]
    assert all("region_loss" in e for e in history)  # log_history still gets them
    assert "train/region_loss" not in _scalars(out)  # tensorboard ran before the callback
