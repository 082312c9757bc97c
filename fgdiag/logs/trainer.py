"""Handlers for the untagged formats: HF Trainer dict lines (step from the bar or the line count), open_clip
lines, the fork's batch_losses table, and logit-scale lines (ours, the fork's, the seed's). Each takes the
reader and a line and returns False when the line is not what it looked like."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from fgdiag import events as ev
from fgdiag.logs import hf, openclip, vad
from fgdiag.render import lines as ours

if TYPE_CHECKING:
    from fgdiag.logs.reader import LogReader

LOADED_SCALE_RE = re.compile(r"Loaded logit_scale = ([-+\w.]+)")
STEP_NOTE = (
    "Trainer dict lines without a progress bar: steps are logging-line numbers, not optimizer steps "
    "(pass --logging-steps)"
)


def dict_line(r: LogReader, text: str) -> bool:
    """A Trainer dict: metrics at the bar's step (or the counted one), or the train_runtime end line."""
    parsed = hf.parse_dict_line(text)
    if parsed is None:
        return False
    r.formats.add("hf-trainer")
    r._commit_fwd()
    if parsed.metrics:
        r._hf_lines += 1
        step = hf_step(r)
        r._at(step)
        r._hf_last_step = step
        for name, value in parsed.metrics.items():
            r._put(name, float("nan") if value is None else value)
    if parsed.end is not None:
        r._event(ev.event_record(r.step, ev.EVENT_TRAIN_END, "training finished", parsed.end))
    return True


def hf_step(r: LogReader) -> int:
    """The bar's step when it moved since the last dict line; else logging lines x logging_steps (or a count)."""
    every = r.logging_steps
    last = r._hf_last_step
    ours = r._summary_step
    if ours is not None and (last is None or ours > last):
        return ours  # our runtime layer printed `[fgdiag] step N` just before the Trainer's dict line
    if r._bar_n is not None and (last is None or r._bar_n > last):
        n = r._bar_n
        if every and n % every and (n + 1) % every == 0:
            n += 1  # the bar was drawn just before the step it logs
        return n
    if every:
        return (last or 0) + every if last is not None else r._hf_lines * every
    if not r.notes or STEP_NOTE not in r.notes:
        r.notes.append(STEP_NOTE)
    return (last or 0) + 1


def logit_scale(r: LogReader, line: str) -> bool:
    """Inside a [DIAG] block the scale joins the forward group; alone it joins the current step."""
    parsed = SCALE_CACHE.get(line)
    if parsed is None:
        parsed = parse_scale(line)
        if len(SCALE_CACHE) > 4096:
            SCALE_CACHE.clear()
        SCALE_CACHE[line] = parsed
    if isinstance(parsed, str):
        return r._malformed("logit_scale", parsed)
    head, raw, scale = parsed
    if line.startswith("  - ") or r._fwd:
        r._fwd[ev.head_metric(ev.LOGIT_SCALE, head)] = raw
        r._fwd[ev.head_metric(ev.LOGIT_SCALE_EXP, head)] = scale
    else:
        r._add(ev.head_metric(ev.LOGIT_SCALE, head), raw)
        r._add(ev.head_metric(ev.LOGIT_SCALE_EXP, head), scale)
    return True


def loaded_scale(r: LogReader, line: str) -> bool:
    m = LOADED_SCALE_RE.search(line)
    if m is None:
        return False
    try:
        raw = float(m.group(1))
    except ValueError:
        return r._malformed("logit_scale", line)
    r._add(ev.head_metric(ev.LOGIT_SCALE, "global"), raw)
    return True


def openclip_line(r: LogReader, line: str) -> bool:
    pos, metrics = openclip.parse_line(line)
    if pos is None and not metrics:
        return False
    r.formats.add("open_clip")
    if pos is not None:
        r._at(r._oc.step(*pos))
    for name, value in metrics.items():
        r._put(name, value)
    return True


def table_row(r: LogReader, line: str) -> bool:
    cols, cells = r._table or [], line.split()
    if len(cells) != len(cols):
        return False
    row = dict(zip(cols, cells, strict=True))
    try:
        step = int(row["global_step"]) + 1
        values = {name: float(row[col]) for col, name in vad.TABLE_NAMES.items() if col in row}
    except (KeyError, ValueError):
        return r._malformed("batch_losses row", line)
    r._at(step)
    for name, value in values.items():
        if not (name == vad.REGION_LOSS and value == 0.0):
            r._add(name, value)
    return True


SCALE_CACHE: dict[str, Any] = {}


def parse_scale(line: str) -> tuple[str, float, float] | str:
    """(head, raw, exp) of a logit-scale line, or the reason it is malformed."""
    m = ours.LOGIT_SCALE_RE.search(line)
    if m is None:
        return line
    head = ours.LABEL_HEADS.get(m.group(1).lower())
    if head is None:
        return f"unknown head {m.group(1)!r}"
    try:
        raw = float(m.group(2))
        return head, raw, float(m.group(3)) if m.group(3) else math.exp(raw)
    except (ValueError, OverflowError):
        return line
