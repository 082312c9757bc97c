"""Run facts from a log's header lines: the batch per device, the gradient accumulation, the world size, the
gradient-clipping threshold and the planned steps, as the transformers Trainer, the fgclip-vad fork,
open_clip, argument dumps and printed command lines state them.

The rules derive the candidates K of an in-batch contrastive loss (chance level ln K) from them when no line
prints K, and compare grad_norm with max_grad_norm; each fact keeps the line it came from (`facts_from` in
the run info), so a finding can say where its K came from. Only lines no other parser recognised reach
here, and a few substring tests reject the others before any regex runs.
"""

from __future__ import annotations

import re
from typing import Any

from fgdiag.logs.decode import demojibake

PER_DEVICE = "per_device_train_batch_size"
TOTAL_BATCH = "total_train_batch_size"
ACCUMULATION = "gradient_accumulation_steps"
WORLD = "world_size"
MAX_GRAD_NORM = "max_grad_norm"
PLANNED = "planned_steps"
FACTS_FROM = "facts_from"  # run-info key: fact name -> "line N: <text>"

_N = r"(\d[\d,]*)"
_F = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
# (substring that must be in the line, pattern, fact); the first group is the value
PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (mark, re.compile(pattern), fact)
    for mark, pattern, fact in (
        ("per device", rf"(?:Instantaneous )?[Bb]atch size per device\s*=\s*{_N}", PER_DEVICE),  # Trainer
        ("Total train batch", rf"Total train batch size[^=]*=\s*{_N}", TOTAL_BATCH),
        ("Accumulation steps", rf"Gradient Accumulation steps\s*=\s*{_N}", ACCUMULATION),
        ("optimization steps", rf"Total optimization steps\s*=\s*{_N}", PLANNED),
        ("per_device_train_batch_size", rf"per_device_train_batch_size['\"]?\s*[=: ]\s*{_N}", PER_DEVICE),
        ("gradient_accumulation_steps", rf"gradient_accumulation_steps['\"]?\s*[=: ]\s*{_N}", ACCUMULATION),
        ("max_grad_norm", rf"max_grad_norm['\"]?\s*[=: ]\s*{_F}", MAX_GRAD_NORM),
        ("world_size", rf"world_size['\"]?\s*[=: ]\s*{_N}", WORLD),
        ("nproc", rf"nproc[_-]per[_-]node['\"]?\s*[=: ]\s*{_N}", WORLD),
        ("Num processes", rf"Num processes\s*[:=]\s*{_N}", WORLD),  # accelerate
        ("single process", r"Running with a (single) process", WORLD),  # open_clip
        ("multiple processes", rf"multiple processes.*?total\s+{_N}", WORLD),
        ("Effective", rf"Effective [Bb]atch [Ss]ize\s*[:=]\s*{_N}", TOTAL_BATCH),  # the fork's headers
        ("有效", rf"有效\s*(?:[Bb]atch|批次)\s*[:：=]\s*{_N}", TOTAL_BATCH),
        ("Accumulation", rf"Gradient Accumulation(?: [Ss]teps)?\s*[:=]\s*{_N}", ACCUMULATION),
        ("梯度累积", rf"梯度累积\s*[:：=]\s*{_N}", ACCUMULATION),
        ("批次大", rf"批次大.?\s*[:：=]\s*{_N}", PER_DEVICE),  # 小 loses a byte when double-encoded
        ("Batch Size", rf"(?<![\w ])\s*(?:- )?Batch Size(?: \(per device\))?\s*[:=]\s*{_N}", PER_DEVICE),
        ("batch", rf"(?:^|[\s|-])(?:--)?batch[_-]size['\"]?\s*[=: ]\s*{_N}", PER_DEVICE),  # open_clip, MoCo
    )
)
MARKS = tuple({mark for mark, _, _ in PATTERNS})
CJK_MARKS = ("有效", "梯度累积", "批次大")


def read_facts(line: str) -> dict[str, tuple[float, str]]:
    """fact -> (value, the words that state it), for the facts one line states (empty for almost every
    line)."""
    if not any(mark in line for mark in MARKS):
        if line.isascii() or not any(m in (text := demojibake(line)) for m in CJK_MARKS):
            return {}
        line = text
    out: dict[str, tuple[float, str]] = {}
    for mark, pattern, fact in PATTERNS:
        if fact in out or mark not in line:
            continue
        m = pattern.search(line)
        if m is None:
            continue
        raw = m.group(1)
        said = m.group(0).strip(" -|")
        if raw == "single":
            out[fact] = (1.0, said)
            continue
        try:
            value = float(raw.replace(",", ""))
        except ValueError:
            continue
        if value > 0:
            out[fact] = (value, said)
    return out


def record(run_info: dict[str, Any], facts: dict[str, tuple[float, str]], lineno: int) -> None:
    """Store facts in the run info (the latest statement wins: a retry prints its own) with their line."""
    where = dict(run_info.get(FACTS_FROM) or {})
    for fact, (value, said) in facts.items():
        run_info[fact] = int(value) if fact != MAX_GRAD_NORM and value == int(value) else value
        where[fact] = f"log line {lineno}: {said[:80]!r}"
    run_info[FACTS_FROM] = where  # a new dict: the engine sees the run info change
