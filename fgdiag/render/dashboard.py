"""The live dashboard: a snapshot of plain data, and a pure function that draws it as a rich renderable.

`watch` builds snapshots from a LogSession; `fgdiag run` can build them from its own state with
`build_snapshot(rows, events, findings, ...)`. `render_dashboard(snapshot)` has no side effects, so it is
tested with a capture console of fixed width and no colour, and the same renderable serves a terminal
(`rich.live.Live`) or plain text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.render.summary import verdict as _verdict

BLOCKS = "▁▂▃▄▅▆▇█"
HISTORY = 120
LOSS_LINES = (
    ("loss", ev.LOSS),
    ("region", ev.head_metric(ev.HEAD_LOSS, "region")),
    ("global", ev.head_metric(ev.HEAD_LOSS, "global")),
    ("hardneg", ev.head_metric(ev.HEAD_LOSS, "hardneg")),
)
VERDICT_STYLE = {"healthy": "green", "warnings": "yellow", "failing": "red", "crashed": "red", "empty": "dim"}
SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


@dataclass(frozen=True)
class Trend:
    """One loss row: latest value, recent history, and the lines it is judged against."""

    label: str
    name: str
    value: float | None
    history: tuple[float, ...]
    chance: float | None = None
    target: str | None = None


@dataclass(frozen=True)
class DashboardSnapshot:
    title: str
    status: str = ""
    last_step: int | None = None
    planned_steps: int | None = None
    steps: int = 0
    trends: tuple[Trend, ...] = ()
    scales: tuple[tuple[str, float, float], ...] = ()  # head, raw, exp
    logits: tuple[
        tuple[str, float | None, float | None, float | None, float | None], ...
    ] = ()  # min max std cos
    memory_bank: Mapping[str, float | None] = field(default_factory=dict)
    optimizer: Mapping[str, float | None] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    not_judged: tuple[str, ...] = ()
    events: tuple[tuple[int, str, str], ...] = ()
    verdict: str = "empty"
    lines: int = 0
    unparsed: int = 0
    formats: tuple[str, ...] = ()


def _latest(rows: Mapping[int, Mapping[str, float | None]], steps: Sequence[int], name: str) -> float | None:
    for step in reversed(steps):
        value = rows[step].get(name)
        if value is not None:
            return value
    return None


def build_snapshot(
    rows: Mapping[int, Mapping[str, float | None]],
    events: Iterable[Mapping[str, Any]] = (),
    findings: Iterable[Finding] = (),
    not_judged: Iterable[Mapping[str, str]] = (),
    *,
    targets: Any = None,
    title: str = "",
    status: str = "",
    planned_steps: int | None = None,
    lines: int = 0,
    unparsed: int = 0,
    formats: Iterable[str] = (),
) -> DashboardSnapshot:
    """Snapshot from plain data: rows by step, event records, findings and not-judged notes."""
    steps = sorted(rows)
    recent = steps[-HISTORY:]
    events, findings = list(events), list(findings)
    chance = _latest(rows, steps, ev.head_metric(ev.CHANCE, "region"))
    trends = []
    for label, name in LOSS_LINES:
        hist = tuple(v for s in recent if (v := rows[s].get(name)) is not None)
        if not hist:
            continue
        target = None
        if targets is not None:
            due = [c for c in targets.points if c.metric == name]
            nxt = next((c for c in due if steps and c.step >= steps[-1]), due[-1] if due else None)
            target = None if nxt is None else f"{'<' if nxt.below else '>'}{nxt.threshold:g}@{nxt.step}"
        trends.append(
            Trend(
                label, name, _latest(rows, steps, name), hist, chance if label == "region" else None, target
            )
        )
    scales = []
    for head in ev.HEADS:
        raw = _latest(rows, steps, ev.head_metric(ev.LOGIT_SCALE, head))
        exp = _latest(rows, steps, ev.head_metric(ev.LOGIT_SCALE_EXP, head))
        if raw is None and exp is not None and exp > 0:
            raw = math.log(exp)
        if raw is not None:
            scales.append((head, raw, exp if exp is not None else (math.exp(raw) if raw < 700 else math.inf)))
    logits = []
    for head in ev.HEADS:
        lo, hi, std, cos = (
            _latest(rows, steps, ev.head_metric(b, head))
            for b in (ev.LOGITS_MIN, ev.LOGITS_MAX, ev.LOGITS_STD, ev.COS_STD)
        )
        if any(v is not None for v in (lo, hi, std, cos)):
            logits.append((head, lo, hi, std, cos))
    bank = {
        k: _latest(rows, steps, n)
        for k, n in (
            ("active", ev.MB_ACTIVE),
            ("fill", ev.MB_FILL),
            ("size", ev.MB_SIZE),
            ("candidates", ev.head_metric(ev.CANDIDATES, "region")),
        )
    }
    enabled = [e for e in events if e.get("kind") == ev.EVENT_MB_ENABLED]
    if enabled:
        bank["enabled_at"] = float(enabled[0].get("step", 0))
        bank["active"] = bank.get("active") or 1.0
    optimizer = {
        "grad_norm": _latest(rows, steps, ev.GRAD_NORM),
        "lr": _latest(rows, steps, ev.LEARNING_RATE),
    }
    point_events = tuple(
        (int(e.get("step", 0)), str(e.get("kind", "")), str(e.get("message", "")))
        for e in events
        if e.get("kind") != ev.EVENT_MB_FULL
    )[-6:]
    return DashboardSnapshot(
        title=title,
        status=status,
        last_step=steps[-1] if steps else None,
        planned_steps=planned_steps,
        steps=len(steps),
        trends=tuple(trends),
        scales=tuple(scales),
        logits=tuple(logits),
        memory_bank={k: v for k, v in bank.items() if v is not None},
        optimizer={k: v for k, v in optimizer.items() if v is not None},
        findings=tuple(findings),
        not_judged=tuple(n["reason"] for n in not_judged),
        events=point_events,
        verdict=_verdict(rows, events, findings),
        lines=lines,
        unparsed=unparsed,
        formats=tuple(formats),
    )


def snapshot_from(read: Any, *, status: str = "") -> DashboardSnapshot:
    """Snapshot of a LogRead (or anything with the same attributes)."""
    notes = [{"code": "", "reason": n} for n in getattr(read, "notes", [])]
    return build_snapshot(
        read.rows,
        read.events,
        read.findings,
        [*read.not_judged, *notes],
        targets=read.targets,
        title=read.path,
        status=status,
        planned_steps=read.run_info.get("planned_steps"),
        lines=read.lines,
        unparsed=read.unparsed,
        formats=read.formats,
    )


def sparkline(
    values: Sequence[float], width: int = 40, lo: float | None = None, hi: float | None = None
) -> str:
    """Block characters for the last `width` finite values; non-finite values draw as `!`."""
    vals = list(values)[-width:]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return "!" * len(vals)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append("!")
        else:
            i = 0 if span <= 0 else int((min(max(v, lo), hi) - lo) / span * (len(BLOCKS) - 1) + 0.5)
            out.append(BLOCKS[i])
    return "".join(out)


def _f(value: float | None, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    return format(value, spec) if math.isfinite(value) else str(value)


def render_dashboard(snap: DashboardSnapshot, *, spark_width: int = 40) -> Any:
    """The whole dashboard as one rich renderable (a Group of tables)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    progress = f"step {snap.last_step if snap.last_step is not None else '-'}"
    if snap.planned_steps:
        progress += f"/{snap.planned_steps}"
    title = Text.assemble(
        (f"fgdiag watch  {snap.title}", "bold"),
        f"  {progress}  ",
        (snap.verdict.upper(), VERDICT_STYLE.get(snap.verdict, "")),
        f"  {snap.status}" if snap.status else "",
    )
    parts: list[Any] = [title]
    if snap.trends:
        t = Table(title="losses", title_justify="left", expand=False, box=None, padding=(0, 1))
        for col in ("", "last", "trend", "chance ln K", "target"):
            t.add_column(col)
        for tr in snap.trends:
            lo = min(
                [v for v in tr.history if math.isfinite(v)] + ([tr.chance] if tr.chance else []), default=None
            )
            hi = max(
                [v for v in tr.history if math.isfinite(v)] + ([tr.chance] if tr.chance else []), default=None
            )
            t.add_row(
                tr.label,
                _f(tr.value),
                sparkline(tr.history, spark_width, lo, hi),
                _f(tr.chance) if tr.chance is not None else "",
                tr.target or "",
            )
        parts.append(t)
    side = Table(box=None, padding=(0, 1), title="scales / logits / memory bank", title_justify="left")
    for col in ("", "value"):
        side.add_column(col)
    for head, raw, exp in snap.scales:
        side.add_row(f"logit_scale {head}", f"{_f(raw, '.6f')} (exp {_f(exp, '.2f')})")
    for head, lo, hi, std, cos in snap.logits:
        side.add_row(
            f"logits {head}",
            f"[{_f(lo, '.2f')}, {_f(hi, '.2f')}] std {_f(std, '.3f')} cos_std {_f(cos, '.4f')}",
        )
    mb = snap.memory_bank
    if mb:
        state = "on" if mb.get("active") else "off"
        fill = f" {_f(mb.get('fill'), '.0f')}/{_f(mb.get('size'), '.0f')}" if "fill" in mb else ""
        at = f" since step {int(mb['enabled_at'] or 0)}" if "enabled_at" in mb else ""
        k = f"  K={_f(mb.get('candidates'), '.0f')}" if "candidates" in mb else ""
        side.add_row("memory bank", f"{state}{fill}{at}{k}")
    if snap.optimizer:
        side.add_row(
            "optimizer",
            f"grad_norm {_f(snap.optimizer.get('grad_norm'), '.4g')}  lr "
            f"{_f(snap.optimizer.get('lr'), '.2e')}",
        )
    if side.row_count:
        parts.append(side)
    if snap.events:
        parts.append(Text("events: " + "; ".join(f"step {s} {k}: {m[:80]}" for s, k, m in snap.events)))
    if snap.findings:
        ft = Table(title=f"findings ({len(snap.findings)})", title_justify="left", box=None, padding=(0, 1))
        for col in ("code", "severity", "step", "message"):
            ft.add_column(col, overflow="fold")
        for f in snap.findings[-12:]:
            ft.add_row(
                f.code,
                Text(f.severity.value, SEVERITY_STYLE.get(f.severity.value, "")),
                "" if f.step is None else str(f.step),
                f.message,
            )
        parts.append(ft)
    else:
        parts.append(Text("findings: none so far"))
    for note in snap.not_judged:
        parts.append(Text(note, style="dim"))
    parts.append(
        Text(
            f"{snap.lines} lines, {snap.unparsed} not recognised, {snap.steps} logging steps; formats: "
            f"{', '.join(snap.formats) or '-'}",
            style="dim",
        )
    )
    return Group(*parts)
