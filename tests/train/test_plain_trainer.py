"""fgclip in a stock transformers Trainer, built as the README shows: default `remove_unused_columns=True`,
`report_to="tensorboard"`, FGCLIPCallback for the scale clamp, the memory-bank clock and the loss parts,
FGDiagCallback for the runtime diagnostics, both attached before the report_to integrations."""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
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
    from fgdiag.callback import FGDiagCallback

    model = FGCLIPModel.from_pretrained(model_path, fgclip_overrides=overrides)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_data_module(
        data_path, tokenizer=tokenizer, image_root=image_root, **data_kwargs_from_config(model.config)
    )
    args = TrainingArguments(output_dir=output_dir, report_to="tensorboard", **training)
    trainer = Trainer(model=model, args=args, train_dataset=data.train_dataset, data_collator=data.collator)
    FGCLIPCallback.attach(trainer)  # clamp + bank clock each optimizer step; loss parts before report_to
    FGDiagCallback.attach(trainer)  # fgdiag/... metrics before report_to, after FGCLIPCallback's parts
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
    # fgdiag's measurements reach TensorBoard, equal to what its events file holds for the same step
    records = [json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()]
    metrics = {r["step"]: r["metrics"] for r in records if r["type"] == "metrics"}
    assert sorted(metrics) == [4, 8, 12, 16, 20, 24]
    assert len({r["run_id"] for r in records}) == 1
    fgdiag_tags = {t for t in tb if t.startswith("train/fgdiag/")}
    for name in ("logit_scale/region", "chance/region", "head_loss/region", "memory_bank/active"):
        logged = tb[f"train/fgdiag/{name}"]
        assert sorted(logged) == sorted(metrics), name
        assert logged[24] == pytest.approx(metrics[24][name], rel=1e-5, abs=1e-6), name
    assert tb["train/fgdiag/memory_bank/active"][24] == 1.0
    assert len(fgdiag_tags) >= 40, sorted(fgdiag_tags)


def test_diag_callback_in_callbacks_list_says_why_tensorboard_misses_its_tags(embedded, tmp_path, caplog):
    from fgdiag.callback import FGDiagCallback

    out = tmp_path / "listed-diag"
    trainer = _trainer(embedded, out, max_steps=4)
    trainer.remove_callback(FGDiagCallback)
    trainer.add_callback(FGDiagCallback())  # where callbacks=[FGDiagCallback()] puts it
    with caplog.at_level(logging.WARNING, logger="fgdiag"):
        trainer.train()
    assert "FGDiagCallback.attach(trainer)" in caplog.text and "tensorboard" in caplog.text
    assert (out / "fgdiag" / "events.jsonl").is_file()  # it still measures and writes its events
    assert not [t for t in _scalars(out) if t.startswith("train/fgdiag/")]


def test_readme_quotes_the_tested_snippet():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    source = inspect.getsource(build_plain_trainer)
    assert any(source in block for block in blocks), "README must quote build_plain_trainer verbatim"


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


def test_attach_order_does_not_matter_and_a_misplaced_callback_is_named(tmp_path):
    """FGDiagCallback ends up after FGCLIPCallback (whose parts it reads) and before the integrations,
    whichever is attached first; placed by callbacks=[...], it says why TensorBoard misses its tags."""
    from transformers import Trainer, TrainingArguments
    from transformers.integrations import TensorBoardCallback

    from fgclip.train import FGCLIPCallback
    from fgdiag.callback import FGDiagCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to="tensorboard", use_cpu=True)
    for first, second in ((FGDiagCallback, FGCLIPCallback), (FGCLIPCallback, FGDiagCallback)):
        trainer = Trainer(model=torch.nn.Linear(2, 2), args=args)
        first.attach(trainer)
        second.attach(trainer)
        kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
        assert kinds.index(FGCLIPCallback) < kinds.index(FGDiagCallback) < kinds.index(TensorBoardCallback)
        diag = trainer.callback_handler.callbacks[kinds.index(FGDiagCallback)]
        assert diag.placement_problem(args) is None
    listed = FGDiagCallback()
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=args, callbacks=[listed])
    assert "FGDiagCallback.attach(trainer)" in listed.placement_problem(args)
    late = FGDiagCallback.attach(trainer)
    trainer.callback_handler.callbacks.append(FGCLIPCallback())  # added after: its parts come too late
    assert "runs before FGCLIPCallback" in late.placement_problem(args)
