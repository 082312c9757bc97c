"""FGDiagCallback on real embedded runs: healthy runs raise nothing; each injected fault is flagged with
the right code; switched off, nothing is attached."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from fgclip.train.main import build_trainer, prepare
from fgdiag.callback import FGDiagCallback, callback_factory, parse_switch

STEPS = 40


def args(out: Path, *extra: str) -> list[str]:
    return [
        "--preset",
        "embedded",
        "--output_dir",
        str(out),
        "--max_steps",
        str(STEPS),
        "--per_device_train_batch_size",
        "16",
        "--gradient_accumulation_steps",
        "1",
        "--logging_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--head_learning_rate",
        "1e-3",
        "--memory_bank_warmup_steps",
        "4",
        "--save_steps",
        "1000",
        "--disable_tqdm",
        "true",
        "--dataloader_pin_memory",
        "false",
        "--report_to",
        "none",
        *extra,
    ]


def run(out: Path, *extra: str, mutate=None, callbacks=()) -> tuple[FGDiagCallback, list[dict]]:
    model_args, data_args, train_args, _resume = prepare(args(out, *extra))
    diag = FGDiagCallback(echo=False)
    trainer = build_trainer(model_args, data_args, train_args, callbacks=(diag, *callbacks))
    if mutate is not None:
        mutate(trainer)
    torch.manual_seed(0)
    trainer.train()
    records = [json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()]
    return diag, records


def codes(diag: FGDiagCallback) -> set[str]:
    return {f.code for f in diag.findings}


def wrap_collator(trainer, change) -> None:
    inner = trainer.data_collator

    def collate(samples):
        return change(inner(samples))

    trainer.data_collator = collate


def test_switch_values():
    assert [parse_switch(v) for v in (None, "", "0", "false", "no", "off")] == [None] * 6
    assert [parse_switch(v) for v in ("1", "true", "yes", "5")] == [1, 1, 1, 5]
    with pytest.raises(ValueError, match="ENABLE_RUNTIME_DIAG"):
        parse_switch("maybe")


def test_off_attaches_nothing(embedded, tmp_path, monkeypatch):
    monkeypatch.setenv("ENABLE_RUNTIME_DIAG", "0")
    assert callback_factory(None, None) is None
    model_args, data_args, train_args, _ = prepare(args(tmp_path / "off", "--max_steps", "2"))
    trainer = build_trainer(model_args, data_args, train_args)
    assert not any(isinstance(cb, FGDiagCallback) for cb in trainer.callback_handler.callbacks)
    trainer.train()
    assert not trainer.model._forward_hooks
    assert not (tmp_path / "off" / "fgdiag").exists()
    monkeypatch.setenv("ENABLE_RUNTIME_DIAG", "1")
    model_args, data_args, train_args, _ = prepare(args(tmp_path / "on", "--max_steps", "2"))
    trainer = build_trainer(model_args, data_args, train_args)
    assert sum(isinstance(cb, FGDiagCallback) for cb in trainer.callback_handler.callbacks) == 1


def test_healthy_run_raises_nothing_and_reports_everything(embedded, tmp_path, capsys):
    diag, records = run(tmp_path / "ok")
    assert diag.findings == []
    metrics = [r for r in records if r["type"] == "metrics"]
    assert len(metrics) == STEPS // 2
    last = metrics[-1]["metrics"]
    for key in (
        "logit_scale/region",
        "logit_scale_exp/region",
        "candidates/region",
        "chance/region",
        "logits_min/region",
        "logits_max/region",
        "pos_logit_mean/region",
        "cos_std/region",
        "loss_floor/region",
        "memory_bank/active",
        "memory_bank/fill",
        "region_loss",
        "grad_norm_group/heads_decay",
        "grad_norm_group/towers_decay",
        "regions/valid",
    ):
        assert key in last and last[key] is not None, key
    assert last["memory_bank/active"] == 1.0 and last["memory_bank/activated_step"] == 4
    assert last["candidates/region"] > 100  # in-batch regions + the queue once the bank is on
    assert math.isclose(last["chance/region"], math.log(last["candidates/region"]), rel_tol=1e-5)
    enabled = [r for r in records if r["type"] == "event" and r["kind"] == "memory_bank_enabled"]
    assert len(enabled) == 1 and enabled[0]["step"] == 4


def test_region_scale_at_clip_init_and_frozen(embedded, tmp_path):
    def freeze(trainer):
        trainer.model.logit_scale_finegrained.requires_grad_(False)

    diag, _ = run(tmp_path / "seed", "--finegrained_logit_scale_init", "2.6592", mutate=freeze)
    found = codes(diag)
    assert {"FGD101", "FGD103"} <= found, found
    first = {code: min(f.step for f in diag.findings if f.code == code) for code in found}
    assert first["FGD101"] <= 2 and first["FGD103"] == 0


def test_warmup_beyond_the_planned_steps(embedded, tmp_path):
    diag, _ = run(tmp_path / "late", "--memory_bank_warmup_steps", "1000")
    assert "FGD201" in codes(diag)
    assert min(f.step for f in diag.findings if f.code == "FGD201") <= 12


def test_all_region_boxes_zeroed(embedded, tmp_path):
    def zero_boxes(trainer):
        def change(batch):
            batch["boxes"] = torch.zeros_like(batch["boxes"])
            return batch

        wrap_collator(trainer, change)

    diag, _ = run(tmp_path / "zero", mutate=zero_boxes)
    assert "FGD301" in codes(diag)
    assert min(f.step for f in diag.findings if f.code == "FGD301") <= 2


def test_nan_in_one_loss_part(embedded, tmp_path):
    class NaNRegion(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 10:
                self.handle = model.region_loss.register_forward_hook(
                    lambda m, i, out: ({"region_loss": out[0]["region_loss"] * float("nan")}, out[1])
                )
            elif state.global_step == 11:
                self.handle.remove()

    diag, _ = run(tmp_path / "nan", "--max_steps", "16", callbacks=(NaNRegion(),))
    nonfinite = [f for f in diag.findings if f.code == "FGD701"]
    assert nonfinite and nonfinite[0].step == 12  # the first logging step that saw it


def test_region_captions_shuffled_against_boxes(embedded, tmp_path):
    def shuffle(trainer):
        def change(batch):
            mask = batch["box_mask"]
            valid = batch["region_text_index"][mask]
            batch["region_text_index"][mask] = valid[torch.randperm(valid.shape[0])]
            return batch

        wrap_collator(trainer, change)

    # the bank stays off: a queue of older features is a shortcut that pulls even a shuffled loss below chance
    diag, _ = run(
        tmp_path / "shuffled", "--max_steps", "60", "--memory_bank_warmup_steps", "1000", mutate=shuffle
    )
    assert codes(diag) & {"FGD601", "FGD602"}, codes(diag)


def test_every_caption_identical(embedded, tmp_path):
    def same(trainer):
        def change(batch):
            mask = batch["box_mask"]
            batch["region_text_index"][mask] = batch["region_text_index"][mask][0]
            return batch

        wrap_collator(trainer, change)

    diag, _ = run(tmp_path / "same", mutate=same)
    assert "FGD302" in codes(diag), codes(diag)
