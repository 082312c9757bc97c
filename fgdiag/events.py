"""The JSONL event schema: the single interface between a run (or a parsed log) and watch / report / rules.

One JSON object per line, each with a `type`:

    {"type": "run", "step": 0, "info": {...}}
        Run facts the rules need: planned_steps, gradient_accumulation_steps, world_size,
        memory_bank_size, memory_bank_warmup_steps, logit_scale_max, targets (profile name), source; a log's
        header lines add per_device_train_batch_size, total_train_batch_size, max_grad_norm and
        facts_from (fact -> the line that stated it).
    {"type": "metrics", "step": N, "time": unix_seconds, "metrics": {name: float | null}}
        One record per logging step. Names are fgclip's statistics keys (`fgclip.vocab`, re-exported by
        `fgdiag.facts`) plus the trainer's and the callback's below; per-head names use `<metric>/<head>` with
        head in HEADS. Non-finite values are written as null plus the name in "nonfinite": [...] (JSON has
        no NaN).
    {"type": "finding", "step": N, "finding": Finding.to_dict()}
        One record per finding (see fgdiag.diagnostic).
    {"type": "event", "step": N, "kind": KIND, "message": str, "data": {...}}
        Point events: memory_bank_enabled (data: candidates_before, candidates_after), crash, oom,
        resume, train_end, memory_bank_full (data: queue).

This module must stay importable without torch: watch and report use it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from fgdiag.facts import (
    BOXES_DROPPED,
    CANDIDATES,
    CHANCE,
    COS_STD,
    HARDEST_GAP,
    HEAD_LOSS,
    HEAD_STATS,
    HEADS,
    LOGIT_SCALE,
    LOGIT_SCALE_EXP,
    LOGITS_MAX,
    LOGITS_MEAN,
    LOGITS_MIN,
    LOGITS_STD,
    LOSS_AT_MAX_SCALE,
    LOSS_FLOOR,
    LOSS_PARTS,
    MB_ACTIVATED_STEP,
    MB_ACTIVE,
    MB_DUP_SHARE,
    MB_FILL,
    MB_KEY_NORM_MAX,
    MB_KEY_NORM_MIN,
    MB_OLDEST_AGE,
    MB_OPTIMIZER_STEPS,
    MB_PTR,
    MB_SIZE,
    NEG_MEAN,
    POS_MEAN,
    REGIONS_NONFINITE,
    REGIONS_VALID,
    REGIONS_ZERO_NORM,
    head_metric,
)

# loss parts as the model names them (already weighted), plus the trainer's total
LOSS = "loss"
# per head (suffix /<head>): fgclip's statistics keys plus what the callback derives from them
LOSS_OVER_CHANCE = "loss_over_chance"  # unweighted head loss / ln K
# optimisation
GRAD_NORM = "grad_norm"
GRAD_NORM_GROUP = "grad_norm_group"  # suffix /<param group name>
LEARNING_RATE = "learning_rate"
EPOCH = "epoch"
# mixed precision: optimizer steps the loss scaler skipped so far (cumulative), and its current scale
SKIPPED_STEPS = "skipped_steps"
LOSS_SCALE = "loss_scale"


# point-event kinds (records of type "event")
EVENT_MB_ENABLED = "memory_bank_enabled"
EVENT_MB_FULL = "memory_bank_full"
EVENT_CRASH = "crash"
EVENT_OOM = "oom"
EVENT_RESUME = "resume"
EVENT_TRAIN_END = "train_end"

PER_HEAD = (*HEAD_STATS, LOSS_OVER_CHANCE)
GLOBAL_METRICS = frozenset(
    (
        LOSS,
        *LOSS_PARTS,
        MB_ACTIVE,
        MB_ACTIVATED_STEP,
        MB_FILL,
        MB_PTR,
        MB_OLDEST_AGE,
        MB_OPTIMIZER_STEPS,
        MB_DUP_SHARE,
        MB_KEY_NORM_MIN,
        MB_KEY_NORM_MAX,
        MB_SIZE,
        REGIONS_VALID,
        REGIONS_ZERO_NORM,
        REGIONS_NONFINITE,
        BOXES_DROPPED,
        GRAD_NORM,
        LEARNING_RATE,
        EPOCH,
        SKIPPED_STEPS,
        LOSS_SCALE,
    )
)


def is_metric_name(name: str) -> bool:
    """True for the names this schema defines: plain metrics, `<per-head metric>/<head>` and
    `grad_norm_group/<group>`. Parsers use it to drop foreign keys instead of inventing columns."""
    if name in GLOBAL_METRICS:
        return True
    base, _, suffix = name.partition("/")
    if not suffix:
        return False
    if base == GRAD_NORM_GROUP:
        return True
    return base in PER_HEAD and suffix in HEADS


def _clean(metrics: dict[str, Any]) -> tuple[dict[str, float | None], list[str]]:
    out: dict[str, float | None] = {}
    nonfinite: list[str] = []
    for name, value in metrics.items():
        if value is None:
            out[name] = None
            continue
        value = float(value)
        if math.isfinite(value):
            out[name] = value
        else:
            out[name] = None
            nonfinite.append(name)
    return out, nonfinite


def metrics_record(step: int, metrics: dict[str, Any], when: float | None = None) -> dict[str, Any]:
    clean, nonfinite = _clean(metrics)
    record: dict[str, Any] = {
        "type": "metrics",
        "step": int(step),
        "time": when or time.time(),
        "metrics": clean,
    }
    if nonfinite:
        record["nonfinite"] = nonfinite
    return record


def finding_record(finding: Any) -> dict[str, Any]:
    return {"type": "finding", "step": finding.step, "finding": finding.to_dict()}


def event_record(step: int, kind: str, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "event", "step": int(step), "kind": kind, "message": message, "data": data or {}}


def run_record(info: dict[str, Any]) -> dict[str, Any]:
    return {"type": "run", "step": 0, "info": info}


class EventWriter:
    """Appends records to `<dir>/events.jsonl`, flushing each line so `watch` sees it at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO | None = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield well-formed records; malformed lines are skipped (watch counts them via its own parser)."""
    with Path(path).open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "type" in record:
                yield record


__all__ = [  # fgclip's names re-exported, so readers of the schema find them all here
    "BOXES_DROPPED",
    "CANDIDATES",
    "CHANCE",
    "COS_STD",
    "EPOCH",
    "EVENT_CRASH",
    "EVENT_MB_ENABLED",
    "EVENT_MB_FULL",
    "EVENT_OOM",
    "EVENT_RESUME",
    "EVENT_TRAIN_END",
    "GLOBAL_METRICS",
    "GRAD_NORM",
    "GRAD_NORM_GROUP",
    "HARDEST_GAP",
    "HEADS",
    "HEAD_LOSS",
    "HEAD_STATS",
    "LEARNING_RATE",
    "LOGITS_MAX",
    "LOGITS_MEAN",
    "LOGITS_MIN",
    "LOGITS_STD",
    "LOGIT_SCALE",
    "LOGIT_SCALE_EXP",
    "LOSS",
    "LOSS_AT_MAX_SCALE",
    "LOSS_FLOOR",
    "LOSS_OVER_CHANCE",
    "LOSS_PARTS",
    "LOSS_SCALE",
    "MB_ACTIVATED_STEP",
    "MB_ACTIVE",
    "MB_DUP_SHARE",
    "MB_FILL",
    "MB_KEY_NORM_MAX",
    "MB_KEY_NORM_MIN",
    "MB_OLDEST_AGE",
    "MB_OPTIMIZER_STEPS",
    "MB_PTR",
    "MB_SIZE",
    "NEG_MEAN",
    "PER_HEAD",
    "POS_MEAN",
    "REGIONS_NONFINITE",
    "REGIONS_VALID",
    "REGIONS_ZERO_NORM",
    "SKIPPED_STEPS",
    "EventWriter",
    "event_record",
    "finding_record",
    "head_metric",
    "is_metric_name",
    "metrics_record",
    "read_events",
    "run_record",
]
