"""The machine-readable summary of a judged log (`watch --json`, `report --json`) and the verdict word.

Kept free of rich and pandas: `watch --once --json` must start fast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity, exit_code

VERDICTS = ("empty", "crashed", "failing", "warnings", "healthy")
CRASH_CODE = "FGD702"  # the log ends in a crash


def crash_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in events if e.get("kind") in (ev.EVENT_CRASH, ev.EVENT_OOM)]


def verdict(rows: Mapping[int, Any], events: list[Mapping[str, Any]], findings: list[Finding]) -> str:
    """One word for the run: empty (nothing read), crashed (the log ends in a crash: FGD702), failing (an
    error finding), warnings, healthy. A crash the log trained on after (a retry) does not make the run
    crashed: it is judged by its findings (see `verdict_detail`)."""
    if not rows and not events and not findings:
        return "empty"
    if any(f.code == CRASH_CODE for f in findings):
        return "crashed"
    worst = max((f.severity.rank for f in findings), default=-1)
    if worst >= Severity.ERROR.rank:
        return "failing"
    if worst >= Severity.WARNING.rank:
        return "warnings"
    return "healthy"


def verdict_detail(findings: list[Finding], recoveries: list[Mapping[str, Any]]) -> str:
    """What the verdict word does not say: how the run ended in a crash, or what it recovered from."""
    crash = next((f for f in findings if f.code == CRASH_CODE), None)
    if crash is not None:
        return f"ended in a crash at step {crash.step}"
    if recoveries:
        return "; ".join(f"recovered after {r['after']} at step {r['step']}" for r in recoveries)
    return ""


def _json_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def last_values(rows: Mapping[int, Mapping[str, float | None]]) -> dict[str, float | None]:
    """Latest value of every metric (a non-finite latest value is reported as None, i.e. JSON null)."""
    out: dict[str, float | None] = {}
    for step in sorted(rows):
        for name, value in rows[step].items():
            if value is not None:
                out[name] = _json_number(value)
    return dict(sorted(out.items()))


def target_table(
    targets: Any, results: list[Mapping[str, Any]], last_step: int | None
) -> list[dict[str, Any]]:
    """Each target point of the profile with its status: passed, missed, or pending (the log ends before
    it)."""
    if targets is None:
        return []
    table = []
    for cp in targets.points:
        hit = next((r for r in results if r["step"] == cp.step and r["metric"] == cp.metric), None)
        status = "pending" if hit is None else ("passed" if hit["passed"] else "missed")
        if hit is None and last_step is not None and last_step >= cp.step:
            status = "not judged"
        table.append(
            {
                "metric": cp.metric,
                "step": cp.step,
                "threshold": cp.threshold,
                "below": cp.below,
                "target": cp.describe(),
                "value": None if hit is None else _json_number(hit["value"]),
                "status": status,
            }
        )
    return table


def summary_dict(read: Any) -> dict[str, Any]:
    """JSON-ready summary of a LogRead (keys: steps, last_step, metrics, findings, verdict, not_judged...)."""
    rows = read.rows
    last = max(rows) if rows else None
    crashes = crash_events(read.events)
    return {
        "path": read.path,
        "formats": list(read.formats),
        "lines": read.lines,
        "unparsed": read.unparsed,
        "malformed": [{"line": n, "field": f, "detail": d} for n, f, d in read.malformed],
        "steps": getattr(read, "step_count", 0) or len(rows),
        "last_step": last,
        "planned_steps": read.run_info.get("planned_steps"),
        "metrics": (
            {k: _json_number(v) for k, v in sorted(read.latest.items())}
            if getattr(read, "latest", None)
            else last_values(rows)
        ),
        "findings": [
            {
                "code": f.code,
                "severity": f.severity.value,
                "step": f.step,
                "message": f.message,
                "location": f.location,
                "help": f.help,
            }
            for f in read.findings
        ],
        "not_judged": list(read.not_judged),
        "notes": list(getattr(read, "notes", [])),
        "events": [
            {"step": e.get("step"), "kind": e.get("kind"), "message": e.get("message", "")}
            for e in read.events
        ],
        "crashed": None
        if not crashes
        else {"step": crashes[0].get("step"), "message": crashes[0].get("message")},
        "targets": None
        if read.targets is None
        else {
            "name": read.targets.name,
            "points": target_table(read.targets, read.target_results, last),
        },
        "verdict": verdict(rows, read.events, read.findings),
        "verdict_detail": verdict_detail(read.findings, getattr(read, "recoveries", [])),
        "recovered": bool(getattr(read, "recoveries", [])),
        "exit_code": exit_code(read.findings),
    }
