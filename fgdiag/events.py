"""The JSONL event schema: the single interface between a run (or a parsed log) and watch / report / rules.

One JSON object per line, each with a `type` and the `run_id` of the training run that wrote it (one events
file per run: a new run moves an earlier run's file aside, a resumed run appends under its own id):

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

The record types are msgspec Structs (`RECORD_TYPES`): readers decode and check a line in one call
(`decode_record`, 5.8x faster than json.loads plus hand checks, benchmarks/schema_speed.py), and
`json_schema()` exports the same definitions as JSON Schema (docs/events.schema.json, `fgdiag schema`).
This module must stay importable without torch: watch and report use it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

import msgspec

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
EVENT_RUN_START = "run_start"  # a reader's marker: records of another run id follow (never written)
RUN_ID_ENV = "FGDIAG_RUN_ID"  # a parent (fgdiag run) names the run it starts

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


# --- the schema: what a reader accepts (and docs/events.schema.json describes) ---------------------------
RunId = str | None
METRIC_NAMES = (
    "fgclip's statistics keys and the trainer's: plain names (loss, grad_norm, memory_bank/fill, ...), "
    "'<metric>/<head>' with head in global, region, hardneg (head_loss/region, logit_scale/region, "
    "chance/region, ...), and 'grad_norm_group/<param group>'. null: not finite (the name is then listed in "
    "nonfinite)."
)


class MetricsRecord(msgspec.Struct, tag_field="type", tag="metrics", kw_only=True):
    """One logging step: every measurement of that optimizer step."""

    step: int
    metrics: dict[str, float | None]
    time: float | None = None
    nonfinite: list[str] = msgspec.field(default_factory=list)
    run_id: RunId = None


class EventRecord(msgspec.Struct, tag_field="type", tag="event", kw_only=True):
    """A point event: memory_bank_enabled (data: candidates_before, candidates_after), crash, oom, resume,
    train_end, memory_bank_full (data: queue)."""

    kind: str = "event"
    step: int | None = None
    message: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    run_id: RunId = None


class RunRecord(msgspec.Struct, tag_field="type", tag="run", kw_only=True):
    """The run's facts the rules need: planned_steps, gradient_accumulation_steps, world_size,
    memory_bank_size, memory_bank_warmup_steps, logit_scale_max, targets (profile name), source."""

    info: dict[str, Any] = msgspec.field(default_factory=dict)
    step: int = 0
    run_id: RunId = None


class FindingBody(msgspec.Struct, kw_only=True):
    """fgdiag.diagnostic.Finding.to_dict()."""

    code: str
    severity: Literal["info", "warning", "error"] = "warning"
    message: str = ""
    location: str = ""
    help: str = ""
    step: int | None = None
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)


class FindingRecord(msgspec.Struct, tag_field="type", tag="finding", kw_only=True):
    """A finding the live rules made during the run."""

    finding: FindingBody
    step: int | None = None
    run_id: RunId = None


Record = MetricsRecord | EventRecord | RunRecord | FindingRecord
RECORD_TYPES = (MetricsRecord, EventRecord, RunRecord, FindingRecord)
_DECODER = msgspec.json.Decoder(Record)
RecordError = msgspec.DecodeError  # ValidationError is a subclass: the message names the field ($.step)


def decode_record(line: str | bytes) -> Record:
    """One JSONL line, decoded and checked against the schema; raises RecordError naming the field."""
    return _DECODER.decode(line)


def json_schema() -> dict[str, Any]:
    """The record schema as JSON Schema (draft 2020-12), for other tools reading our events."""
    schema = msgspec.json.schema(Record)
    metrics = schema["$defs"]["MetricsRecord"]["properties"]["metrics"]
    metrics["description"] = METRIC_NAMES
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fgdiag events.jsonl record",
        "description": "One JSON object per line of <output_dir>/fgdiag/events.jsonl; see fgdiag/events.py.",
        **schema,
    }


def new_run_id(now: float | None = None) -> str:
    """`<UTC stamp>-<6 hex>`: sortable by start time, unique across machines."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


def first_run_id(path: str | Path) -> str | None:
    """The run id of a file's first record (the file's run: one file per run), None if none."""
    try:
        with Path(path).open("rb") as fh:
            line = fh.readline(1 << 20)
    except OSError:
        return None
    try:
        return decode_record(line).run_id
    except RecordError:
        return None


class EventWriter:
    """Writes one run's records to `<dir>/events.jsonl`, each stamped with the run id and flushed at once
    so `watch` sees it.

    A file holding another run (or records without an id) is first moved aside to
    `events.<its run id>.jsonl` beside it (renamed, never deleted; `moved_aside` says where). `resume=True`
    continues the run already in the file: its id is kept (unless `run_id` names another run) and records
    are appended."""

    def __init__(self, path: str | Path, run_id: str | None = None, *, resume: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.moved_aside: Path | None = None
        existing = first_run_id(self.path) if self.path.exists() and self.path.stat().st_size else None
        if resume and existing is not None and run_id in (None, existing):
            run_id = existing
        elif self.path.exists() and self.path.stat().st_size:
            self.moved_aside = self._move_aside(existing)
        self.run_id = run_id or new_run_id()
        self._fh: TextIO | None = self.path.open("a", encoding="utf-8")

    def _move_aside(self, old_id: str | None) -> Path:
        stamp = old_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.path.stat().st_mtime))
        target = self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.stem}.{stamp}-{n}{self.path.suffix}")
        os.rename(self.path, target)
        return target

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._fh.write(json.dumps({**record, "run_id": self.run_id}, allow_nan=False) + "\n")
        self._fh.flush()

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield well-formed records as dicts; malformed lines are skipped (watch counts them via its own
    parser)."""
    with Path(path).open("rb") as fh:
        for line in fh:
            if not line.lstrip().startswith(b"{"):
                continue
            try:
                record = decode_record(line)
            except RecordError:
                continue
            yield msgspec.to_builtins(record)


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
    "EVENT_RUN_START",
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
    "RECORD_TYPES",
    "REGIONS_NONFINITE",
    "REGIONS_VALID",
    "REGIONS_ZERO_NORM",
    "RUN_ID_ENV",
    "SKIPPED_STEPS",
    "EventRecord",
    "EventWriter",
    "FindingRecord",
    "MetricsRecord",
    "Record",
    "RecordError",
    "RunRecord",
    "decode_record",
    "event_record",
    "finding_record",
    "first_run_id",
    "head_metric",
    "is_metric_name",
    "json_schema",
    "metrics_record",
    "new_run_id",
    "read_events",
    "run_record",
]
