"""The measured before/after table of several runs (`fgdiag run --compare seed`, `report --compare`): one row
per quantity, one column per run, in three groups (what the run set up, what it learned, how it was judged).

Every value says what it is: a loss "at step N" is the single value logged at that step; a target's value is
the smoothed one FGD604 judges (the mean over a window before the point, the window named). A step past a
run's end shows why it is empty instead of repeating the last value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import CLIP_FROM_SCRATCH_SCALE, LN_100
from fgdiag.render import measures as M

SINGLE = "single value logged at that step"
SMOOTHED = "smoothed: the mean over the steps named, as FGD604 judges the target"


@dataclass(frozen=True)
class Row:
    key: str  # stable, for summary.json
    group: str
    label: str
    cells: tuple[str, ...]  # one per run, in the runs' order
    note: str = ""  # how to read it


def _num(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _scale_cell(read: Any, head: str) -> str:
    start, end = M.scale_exp(read, head, "start"), M.scale_exp(read, head, "end")
    if start is None or end is None:
        return "-"
    if abs(end - start) <= 0.005 * max(start, 1e-9):
        return f"{end:.1f} (stays)"
    return f"{start:.1f} -> {end:.1f}"


def _k_cell(read: Any) -> str:
    end = M.last_step(read)
    k, chance = M.at(read, M.REGION_K, end), M.at(read, M.REGION_CHANCE, end)
    if k is None:
        return "-"
    return f"{k:.0f} (ln K {chance:.2f})" if chance is not None else f"{k:.0f}"


def _logits_cell(read: Any) -> str:
    end = M.last_step(read)
    pos = M.at(read, ev.head_metric(ev.POS_MEAN, "region"), end)
    neg = M.at(read, ev.head_metric(ev.NEG_MEAN, "region"), end)
    lo = M.at(read, ev.head_metric(ev.LOGITS_MIN, "region"), end)
    hi = M.at(read, ev.head_metric(ev.LOGITS_MAX, "region"), end)
    if pos is None and lo is None:
        return "-"
    means = f"{_num(pos, '.1f')} / {_num(neg, '.1f')}" if pos is not None else ""
    span = f"range {_num(lo, '.1f')} .. {_num(hi, '.1f')}" if lo is not None else ""
    return ", ".join(p for p in (means, span) if p)


def _loss_at(read: Any, step: int) -> str:
    end = M.last_step(read)
    if end is None or step > end:
        return f"- (run ended at {end})" if end is not None else "-"
    return _num(M.at(read, M.REGION_LOSS, step))


def _end_loss(read: Any) -> str:
    end = M.last_step(read)
    loss, chance = M.at(read, M.REGION_LOSS, end), M.at(read, M.REGION_CHANCE, end)
    if loss is None:
        return "-"
    if not chance:
        return f"{loss:.3f}"
    return f"{loss:.3f} = {100 * loss / chance:.0f} % of ln K {chance:.2f}"


def _target_cell(row: M.TargetRow | None, end: int | None) -> str:
    if row is None:
        return "-"
    if row.status == "pending":
        return f"not reached (run ended at {end})"
    if row.value is None:
        return row.status
    window = f", steps {row.window[0]}-{row.window[1]}" if row.window else ""
    return f"{row.value:.3f} {row.status}{window}"


def comparison_rows(
    reads: Mapping[str, Any], *, seconds: Mapping[str, float] | None = None, profile: Any = None
) -> list[Row]:
    """The table. `seconds`: wall time per run, when known; `profile`: the target profile (default: each
    run's own)."""
    names = list(reads)
    rows: list[Row] = []

    def add(key: str, group: str, label: str, fn: Any, note: str = "") -> None:
        rows.append(Row(key, group, label, tuple(fn(reads[n]) for n in names), note))

    setup = "what the run set up"
    add(
        "region_scale",
        setup,
        "region head: logit scale exp(s) = 1/temperature",
        lambda r: _scale_cell(r, "region"),
        f"first -> last logged value; CLIP fine-tunes at {math.exp(LN_100):.0f}, a head initialised from "
        f"scratch starts at {math.exp(CLIP_FROM_SCRATCH_SCALE):.1f}",
    )
    add("global_scale", setup, "global head: logit scale exp(s)", lambda r: _scale_cell(r, "global"))
    add(
        "bank_on",
        setup,
        "memory bank joined the loss",
        lambda r: (f"step {M.bank_on(r)}" if M.bank_on(r) is not None else "never") if M.has_bank(r) else "-",
    )
    add("candidates", setup, "candidates K per region query, at the end", _k_cell)
    learned = "what it learned"
    add(
        "region_logits",
        learned,
        "region logits at the end: positive / negative mean",
        _logits_cell,
        "logit = exp(s) x cosine: a low scale squeezes them together",
    )
    for step in M.checkpoint_steps(reads, profile):
        add(
            f"region_loss_at_{step}",
            learned,
            f"region loss at step {step} (single value)",
            lambda r, s=step: _loss_at(r, s),
            SINGLE,
        )
    add("region_loss_end", learned, "region loss at the end, vs chance ln K", _end_loss)
    add(
        "first_below_1",
        learned,
        "first step with region loss < 1.0",
        lambda r: str(M.first_below(r, M.REGION_LOSS, 1.0) or "never"),
    )
    judged = "how it was judged"
    tables = {n: M.target_rows(reads[n], profile) for n in names}
    labels = next((t for t in tables.values() if t), [])
    for i, target in enumerate(labels):
        cells = tuple(
            _target_cell(tables[n][i] if i < len(tables[n]) else None, M.last_step(reads[n])) for n in names
        )
        label = f"target {target.target} (smoothed)"
        rows.append(Row(f"target_{target.step}", judged, label, cells, SMOOTHED))
    add(
        "errors",
        judged,
        "error findings",
        lambda r: ", ".join(sorted({f.code for f in r.findings if f.severity.value == "error"})) or "none",
    )
    add("verdict", judged, "verdict", lambda r: M.verdict(r)[0])
    if seconds:
        rows.append(
            Row("seconds", judged, "wall time (s)", tuple(_num(seconds.get(n), ".0f") for n in names))
        )
    return rows


def comparison_markdown(names: list[str], rows: list[Row]) -> str:
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in rows:
        cells = " | ".join(c.replace("|", "\\|") for c in row.cells)
        lines.append(f"| {row.label} | {cells} |")
    notes = list(dict.fromkeys(row.note for row in rows if row.note))
    return "\n".join([*lines, "", *(f"- {n}" for n in notes)]) + "\n"


def comparison_json(names: list[str], rows: list[Row]) -> dict[str, Any]:
    """`{key: {"label": ..., <run>: cell, ...}}` for summary.json."""
    return {row.key: {"label": row.label, **dict(zip(names, row.cells, strict=True))} for row in rows}
