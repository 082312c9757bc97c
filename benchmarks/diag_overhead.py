"""Runtime diagnostics on vs off on the embedded preset (CPU), measured in one process.

Runs the same short training several times, alternating off/on, and reports the median step time of each
and their ratio (goal <= 1.03 on 2 CPU cores). It also counts host reads (`Tensor.item`, `.tolist`, `.cpu`)
issued from fgdiag code per optimizer step: on steps that do not log the count must be 0.

    python benchmarks/diag_overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter

import torch
from transformers import TrainerCallback

from fgclip.train.main import build_trainer, prepare
from fgdiag.callback import FGDiagCallback

READS = ("item", "tolist", "cpu")


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.step = 0  # the optimizer step host reads belong to (logging happens after on_step_end)
        self._t = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step + 1
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)
        self.step = state.global_step


def count_fgdiag_reads(clock: StepClock) -> tuple[Counter, callable]:
    """Wrap Tensor read methods; count calls whose caller lives in the fgdiag package, per step."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name):
        original = originals[name]

        def reader(self, *a, **k):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("fgdiag"):
                counts[clock.step] += 1
            return original(self, *a, **k)

        return reader

    for name in READS:
        setattr(torch.Tensor, name, wrap(name))

    def restore():
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)

    return counts, restore


def one_run(out: str, steps: int, logging_steps: int, diag: bool):
    argv = [
        "--preset",
        "embedded",
        "--output_dir",
        out,
        "--max_steps",
        str(steps),
        "--logging_steps",
        str(logging_steps),
        "--save_steps",
        "100000",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
        "--dataloader_pin_memory",
        "false",
    ]
    model_args, data_args, train_args, _ = prepare(argv)
    clock = StepClock()
    callbacks = [clock] + ([FGDiagCallback(echo=False)] if diag else [])
    trainer = build_trainer(model_args, data_args, train_args, callbacks=callbacks)
    counts, restore = count_fgdiag_reads(clock) if diag else (Counter(), lambda: None)
    try:
        trainer.train()
    finally:
        restore()
    times = clock.times[5:]  # skip warm-up steps
    return statistics.median(times), counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("ENABLE_RUNTIME_DIAG", None)  # the plugin stays off; the benchmark attaches the callback
    off, on = [], []
    reads_on_silent_steps = 0
    reads_on_logging_steps = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            off.append(one_run(os.path.join(tmp, f"off{r}"), args.steps, args.logging_steps, False)[0])
            t, counts = one_run(os.path.join(tmp, f"on{r}"), args.steps, args.logging_steps, True)
            on.append(t)
            for step in range(1, args.steps + 1):
                if step % args.logging_steps:
                    reads_on_silent_steps += counts.get(step, 0)
                else:
                    reads_on_logging_steps.append(counts.get(step, 0))
    t_off, t_on = statistics.median(off), statistics.median(on)
    print(f"median step time, diagnostics off: {t_off * 1000:.1f} ms  {[round(x * 1000, 1) for x in off]}")
    print(f"median step time, diagnostics on:  {t_on * 1000:.1f} ms  {[round(x * 1000, 1) for x in on]}")
    print(f"ratio on/off: {t_on / t_off:.3f} (goal <= 1.03)")
    print(f"host reads from fgdiag on non-logging steps: {reads_on_silent_steps} (must be 0)")
    print(f"host reads from fgdiag per logging step: {sorted(set(reads_on_logging_steps))}")


if __name__ == "__main__":
    main()
