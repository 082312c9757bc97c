"""A step that does not log never makes the host wait for the device: zero sync ops, diagnostics off or on.

Counted with `HostSyncCounter` (a TorchDispatchMode, fgclip/modeling/host_sync.py) over real steps:
forward, backward, the fused AdamW step, the scale clamp and the memory bank's clock, on real batches of the
embedded data (images with hard negatives, videos with padding frames), the bank active, near-duplicate
captions masked by canonical key and text-embedding cosine; and over the
non-logging steps of a real FGCLIPTrainer run with FGDiagCallback attached.
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers import TrainerCallback

from fgclip.modeling.host_sync import HostSyncCounter
from fgclip.train.main import build_trainer, prepare
from fgdiag.callback import FGDiagCallback


def test_counter_sees_every_kind_of_wait():
    x, mask, idx = torch.arange(6.0), torch.tensor([True, False] * 3), torch.tensor([0, 2])
    cases = [  # (what the code does, the op the counter must report)
        (lambda: x.sum().item(), "_local_scalar_dense"),
        (lambda: bool(x.any()), "_local_scalar_dense"),
        (lambda: torch.equal(x, x), "equal"),
        (lambda: x.nonzero(), "nonzero"),
        (lambda: torch.unique(x), "_unique2"),
        (lambda: x[mask], "index"),
        (lambda: x.clone().__setitem__(mask, 0.0), "index_put_"),
        (lambda: x.masked_select(mask), "masked_select"),
        (lambda: torch.repeat_interleave(x, idx.repeat(3)), "repeat_interleave"),
        (lambda: torch.tensor([1.0, 2.0]), "lift_fresh"),
        (lambda: x.tolist(), "Tensor.tolist"),
        (lambda: x.numpy(), "Tensor.numpy"),
    ]
    for run, op in cases:
        with HostSyncCounter() as syncs:
            run()
        assert op in syncs.counts(), (op, syncs.events)
    with HostSyncCounter() as syncs:  # the fixed-shape equivalents the step uses
        torch.where(mask, x, 0.0).sum()
        x.index_select(0, idx)
        x[idx]
        torch.repeat_interleave(x, idx.repeat(3), output_size=6)
        torch.full((), 2.0) * x
    assert syncs.events == []


def run_step(model, optimizer, batch) -> None:
    """What the trainer does for one optimizer step (no logging)."""
    out = model(**batch)
    out.loss.backward()
    optimizer.step()
    model.clamp_logit_scales()
    model.optimizer_step_completed()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("diagnostics", [False, True])
@pytest.mark.parametrize("kind", ["image", "video"])
def test_training_steps_make_no_host_sync(embedded, kind, diagnostics):
    frames = 20 if kind == "video" else 1  # 16-frame clips in 20 slots: padding frames
    batches = [embedded.batch(kind, size=3, frames=frames, start=3 * i) for i in range(4)]
    overrides = {"temporal_pooling": "attention"} if kind == "video" else {}
    model = embedded.model(  # near-duplicates masked by canonical key (default) and by text cosine
        region_head="roi_projection",
        memory_bank_size=16,
        memory_bank_warmup_steps=1,
        near_duplicate_cosine=0.99,
        **overrides,
    ).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # the Trainer's default
    probe = FGDiagCallback(echo=False).model_probe  # what the callback attaches; it reads on logging only
    if diagnostics:
        probe.attach(model)
    run_step(model, optimizer, batches[0])  # warm-up: optimizer state, caches made once per device
    with HostSyncCounter() as syncs:
        for batch in batches[1:]:  # new batches: other text lengths, other region counts
            run_step(model, optimizer, batch)
    probe.detach()
    assert syncs.events == [], syncs.by_origin()
    assert model.memory_bank.active.item() and model.memory_bank.fill.item() > 0
    assert (probe.forwards == 4) == diagnostics


class StepWindows(TrainerCallback):
    """Counts sync ops between on_step_begin and on_step_end of every optimizer step."""

    def __init__(self) -> None:
        self.per_step: dict[int, HostSyncCounter] = {}
        self._counter: HostSyncCounter | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._counter = HostSyncCounter().__enter__()
        self.per_step[state.global_step + 1] = self._counter

    def on_step_end(self, args, state, control, **kwargs):
        self._counter.__exit__(None, None, None)


def trainer_run(embedded, out, diagnostics: bool, *extra: str) -> dict[int, HostSyncCounter]:
    argv = [
        *("--model_name_or_path", str(embedded.clip_dir), "--data_path", str(embedded.data.images_json)),
        *("--output_dir", str(out), "--max_steps", "6", "--logging_steps", "3", "--save_steps", "1000"),
        *("--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1"),
        *("--memory_bank_size", "32", "--memory_bank_warmup_steps", "1", "--region_head", "roi_projection"),
        *("--report_to", "none", "--disable_tqdm", "true", "--dataloader_pin_memory", "false"),
        *extra,
    ]
    windows = StepWindows()
    callbacks = [FGDiagCallback(echo=False)] if diagnostics else []
    trainer = build_trainer(*prepare(argv)[:3], callbacks=[*callbacks, windows])
    trainer.train()
    return windows.per_step


@pytest.mark.parametrize("diagnostics", [False, True])
def test_trainer_non_logging_steps_make_no_host_sync(embedded, tmp_path, monkeypatch, diagnostics):
    monkeypatch.delenv("ENABLE_RUNTIME_DIAG", raising=False)
    steps = trainer_run(embedded, tmp_path / "run", diagnostics, "--logging_nan_inf_filter", "false")
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    for step in (1, 2, 4, 5):  # steps 3 and 6 log: the callback reads its probes there, once
        assert steps[step].events == [], (step, steps[step].by_origin())
    if diagnostics:
        assert os.path.exists(tmp_path / "run" / "fgdiag" / "events.jsonl")


def test_trainer_nan_filter_is_the_trainers_own_sync(embedded, tmp_path, monkeypatch):
    """With transformers' default `logging_nan_inf_filter`, the Trainer itself reads each micro-batch's
    loss on the host (`torch.isnan(loss) or ...`); nothing from fgclip or fgdiag waits."""
    monkeypatch.delenv("ENABLE_RUNTIME_DIAG", raising=False)
    steps = trainer_run(embedded, tmp_path / "run", True)
    for step in (1, 2, 4, 5):
        origins = {event.origin.split(":")[0] for event in steps[step].events}
        assert origins == {"transformers.trainer"}, steps[step].by_origin()
