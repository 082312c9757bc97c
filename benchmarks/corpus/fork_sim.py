"""A run of the fgclip-vad fork, line by line: micro-batches, the memory bank's fill, tqdm redraws, the
`[DIAG]` blocks, the loss lines of its four layouts and the HF dicts, in the order the fork prints them.

What happens in the run (losses, logits, region counts, gradient norms) is given by a `Spec`'s `micro` and
`grad_norm` functions; this module only lays it out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import fork_lines as fl
from common import bf16, half, tqdm_bar, warmup_cosine

from fgclip.config import LN_100


@dataclass
class Micro:
    """One forward: the unweighted global and region losses and what the `[DIAG]` block would show."""

    glob: float
    region: float
    valid: int
    zero: int = 0
    logits: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    row0: tuple[float, ...] = ()


@dataclass
class Spec:
    batch: int
    ga: int
    steps: int
    micro: Callable[[random.Random, int, int, int], Micro]  # (rng, forward, optimizer step, queued) -> Micro
    grad_norm: Callable[[random.Random, int], float]  # (rng, optimizer step) -> grad norm
    layout: str = "head"  # head | legacy | loss-only | table
    logging: int = 10
    weight: float = 0.5
    lr: float = 5e-6
    diag_every: int | None = None
    bank_at: int | None = 200  # forward count at which the bank switches on; None: never
    scale: float = bf16(LN_100)  # 4.593750: ln 100 stored in bf16, as the fork prints it
    sec_per_it: float = 40.0
    stats_every: int | None = 10
    epochs: float = 4.98  # epochs the planned steps cover (the HF dict prints step / steps * epochs)
    start: int = 1  # first forward printed (a restart whose first lines were lost)


class ForkRun:
    """Lays out a `Spec` into the lines the fork prints (returned by `run()`)."""

    def __init__(self, spec: Spec, seed: int):
        self.s = spec
        self.rng = random.Random(seed)
        self.out: list[str] = []
        self.queued = 0
        self.bank_on = False
        self.first_full = False
        self.window: list[float] = []
        self.last10: list[float] = []
        self.totals: list[float] = []
        self.pending = ""
        self.ptr = 0  # write position of the legacy 128-entry queue (wraps once full)

    def emit(self, *lines: str) -> None:
        """Append lines; a pending tqdm redraw goes in front of the first one (same physical line)."""
        for line in lines:
            self.out.append(self.pending + line)
            self.pending = ""

    def lr(self, step: int) -> float:
        s = self.s
        return warmup_cosine(step, s.steps, s.lr, max(1, s.steps // 10))

    def bar(self, n: int, redraw: bool = False) -> str:
        text = tqdm_bar(n, self.s.steps, self.s.sec_per_it * self.rng.uniform(0.9, 1.1))
        return f"\r{text}\r{' ' * 50}\r\r{text}" if redraw else f"\r{text}"

    def enqueue(self, valid: int) -> None:
        if not self.bank_on:
            return
        before = self.queued
        self.ptr = (self.ptr + valid) % 128
        self.queued = min(128, self.queued + valid)
        if self.s.layout != "table":
            for mark in (32, 64, 96):
                if before < mark <= self.queued:
                    self.emit(fl.bank_accumulating(mark))
            if self.queued >= 128 and not self.first_full:
                self.first_full = True
                self.emit(fl.bank_first_full(126, (before + valid) % 128, before))
                if self.s.layout == "head":
                    self.emit(fl.queue_full("Normal"))

    def forward(self, b: int) -> None:
        s = self.s
        opt = (b - 1) // s.ga
        if s.bank_at is not None and b == s.bank_at:
            self.bank_on = True
            if s.layout != "table":
                self.emit(*fl.bank_enabled(b, s.layout == "head"))
                self.emit(fl.bank_accumulating(0))
        m = s.micro(self.rng, b, opt, self.queued)
        glob, region = half(m.glob), half(m.region) if m.valid else 0.0
        total = glob + s.weight * region
        self.totals.append(total)
        self.window.append(total)
        self.last10.append(total)
        if s.layout == "table":
            self.emit(fl.table_row(opt, b, (total, glob, region), self.lr(opt), self.time()))
            self.enqueue(m.valid)
            return
        if s.diag_every and m.valid and b % s.diag_every == 0:
            bank = (self.ptr, self.queued >= 128) if s.layout != "head" else (self.queued, False)
            self.emit(*fl.diag_block(fl.Diag(m.valid, m.zero, m.logits, s.scale, bank, m.row0), s.layout))
        if self.bank_on and self.queued and self.queued % 32 == 0 and self.queued < 128:
            self.emit(fl.mb_forward(self.queued, m.valid))
        if s.layout in ("legacy", "loss-only"):
            self.emit(fl.loss_line(total, glob, region))
        elif b % 8 == 0:
            recent = self.totals[-8:]
            self.emit(fl.accumulated_model_line(sum(recent) / len(recent), glob, region))
        self.enqueue(m.valid)
        mb = fl.mb_status(self.queued) if self.bank_on else ""
        parts = (total, glob, region)
        lr = self.lr(opt)  # the scheduler has not stepped yet for this micro-batch
        if b % s.ga == 0 and s.layout in ("legacy", "head"):  # tqdm redraws before the step's last line
            self.pending = self.bar(b // s.ga, redraw=(b // s.ga) % s.logging == 0)
        if s.layout == "legacy":
            self.emit(fl.batch_line("legacy", opt, b, parts, mb, lr, self.time()))
        elif s.layout == "head":
            self.emit(fl.batch_line("head", b // s.ga, b, parts, mb, lr, self.time()))
        if s.stats_every and s.layout != "loss-only" and b % s.stats_every == 0:
            self.emit(*fl.stats_block(sum(self.last10) / len(self.last10)))
            self.last10 = []

    def time(self) -> float:
        return round(self.rng.uniform(0.74, 0.82), 2)

    def step_end(self, step: int) -> None:
        """After optimizer step `step` (1-based): the HF dict on logging steps."""
        s = self.s
        if step % s.logging:
            return
        loss = sum(self.window) / len(self.window)
        self.window = []
        gn = bf16(s.grad_norm(self.rng, step))
        line = fl.hf_dict(loss, gn, self.lr(step), step / s.steps * s.epochs)
        if s.layout == "loss-only":
            line = self.bar(step, redraw=True) + line
        self.emit(line)

    def run(self) -> list[str]:
        s = self.s
        for b in range(1, s.steps * s.ga + 1):
            if b < s.start:
                self.bank_on = self.bank_on or (s.bank_at is not None and b >= s.bank_at)
                continue
            if s.layout == "loss-only" and b > 1 and (b - 1) % s.ga == 0:
                self.pending = self.bar((b - 1) // s.ga)  # the bar and the next [LOSS] share a line
            self.forward(b)
            if b % s.ga == 0:
                self.step_end(b // s.ga)
        return self.out

    def train_end(self, runtime: float) -> list[str]:
        s = self.s
        total = f"{tqdm_bar(s.steps, s.steps, runtime / s.steps)}"
        train_loss = sum(self.totals) / len(self.totals)
        return [
            f"\r{total}",
            fl.hf_end(
                runtime,
                round(s.steps * s.batch * s.ga / runtime, 3),
                round(s.steps / runtime, 3),
                train_loss,
                s.epochs,
            ),
        ]
