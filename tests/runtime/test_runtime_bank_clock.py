"""A stock transformers Trainer on the embedded data with FGDiagCallback: without FGCLIPCallback the memory
bank's optimizer-step clock never moves (nothing calls `optimizer_step_completed`), and the diagnostics say
so (FGD201, "no FGCLIPCallback attached"); with it attached the clock moves and nothing is said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, Trainer, TrainingArguments

from fgclip.data.module import build_data_module, data_kwargs_from_config
from fgclip.modeling import FGCLIPModel
from fgclip.train import FGCLIPCallback
from fgdiag import read_log
from fgdiag.callback import FGDiagCallback

STEPS = 12


def train(embedded, out: Path, attach: bool) -> FGDiagCallback:
    overrides = {"region_head": "roi_projection", "memory_bank_size": 64, "memory_bank_warmup_steps": 4}
    model = FGCLIPModel.from_pretrained(embedded["model_name_or_path"], fgclip_overrides=overrides)
    tokenizer = AutoTokenizer.from_pretrained(embedded["model_name_or_path"])
    data = build_data_module(
        embedded["data_path"],
        tokenizer=tokenizer,
        image_root=embedded["image_root"],
        **data_kwargs_from_config(model.config),
    )
    args = TrainingArguments(
        output_dir=str(out),
        report_to="none",
        per_device_train_batch_size=8,
        max_steps=STEPS,
        logging_steps=2,
        save_steps=1000,
        learning_rate=1e-4,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
    )
    diag = FGDiagCallback(echo=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data.train_dataset,
        data_collator=data.collator,
        callbacks=[diag],
    )
    if attach:
        FGCLIPCallback.attach(trainer)
    trainer.train()
    return diag


@pytest.mark.parametrize("attach", [False, True])
def test_bank_clock_without_and_with_fgclip_callback(embedded, tmp_path, attach):
    out = tmp_path / ("attached" if attach else "stock")
    diag = train(embedded, out, attach)
    clock = [f for f in diag.findings if f.code == "FGD201" and "FGCLIPCallback" in f.message]
    events = out / "fgdiag" / "events.jsonl"
    records = [json.loads(line) for line in events.read_text().splitlines()]
    ticks = [r["metrics"]["memory_bank/optimizer_steps"] for r in records if r["type"] == "metrics"]
    if attach:
        assert clock == [] and ticks == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]  # read in the step's forward
        return
    assert set(ticks) == {0.0}
    assert len(clock) == 1 and "stays at 0 while the run went from step 2 to" in clock[0].message
    again = read_log(events)  # watch on the run's events.jsonl: the callback's finding, once
    assert [f.message for f in again.findings if "FGCLIPCallback" in f.message] == [clock[0].message]
