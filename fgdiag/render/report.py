"""`write_report(runs, out_dir)`: PNG panels plus report.md and report.html, from jinja2 templates
(`fgdiag/render/templates/`, HTML autoescaped).

The page is built for a reader who has never seen it: first which run failed and why, in words with the
measured values (`story`), then the panel that shows it (region loss against chance ln K and the targets),
the measured comparison of the runs (`comparison`), the other panels with a caption each, and last the
details of each run (findings, targets, facts of the log, events).

`runs` is one LogRead or a mapping name -> LogRead. Only files named by the report are written into
`out_dir`; nothing there is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fgdiag.render import measures as M
from fgdiag.render import panels as P
from fgdiag.render.comparison import comparison_markdown, comparison_rows
from fgdiag.render.story import build_story
from fgdiag.render.summary import crash_events
from fgdiag.render.terminal import tally

KEY_PANEL = "region_loss"
Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass
class ReportResult:
    out_dir: Path
    markdown: Path
    html: Path
    images: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("fgdiag", "render/templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    return env


def _runs(runs: Any) -> dict[str, Any]:
    if isinstance(runs, Mapping):
        return dict(runs)
    return {Path(runs.path).stem or "run": runs}


def _facts(read: Any) -> list[tuple[str, str]]:
    last = M.last_step(read)
    facts = [
        ("source", str(read.path)),
        ("formats", ", ".join(read.formats) or "-"),
        ("logging steps", str(len(read.rows))),
        ("last step", str(last)),
        ("planned steps", str(read.run_info.get("planned_steps", "-"))),
        ("run id", str(read.run_info.get("run_id", "-"))),
        ("lines", f"{read.lines} ({read.unparsed} not recognised)"),
    ]
    crash = crash_events(read.events)
    if crash:
        facts.append(("crashed", f"step {crash[0].get('step')}: {str(crash[0].get('message', ''))[:200]}"))
    facts += [("note", note) for note in getattr(read, "notes", [])]
    return facts


def _run_view(name: str, read: Any, targets: Any) -> dict[str, Any]:
    findings = [
        {
            "code": f.code,
            "severity": f.severity.value,
            "step": "" if f.step is None else f.step,
            "message": f.message,
            "help": f.help,
        }
        for f in read.findings
    ]
    count = {s: sum(f["severity"] == s for f in findings) for s in ("error", "warning", "info")}
    rows = M.target_rows(read, targets)
    return {
        "name": name,
        "source": str(read.path),
        "findings": findings,
        "tally": tally(count["error"], count["warning"], count["info"]),
        "open": bool(count["error"] or count["warning"]),
        "profile": (targets or read.targets).name if rows else "",
        "targets": [
            {
                "target": t.target,
                "value": "-" if t.value is None else f"{t.value:.3f}",
                "window": f"{t.window[0]}-{t.window[1]}" if t.window else "-",
                "status": t.status,
            }
            for t in rows
        ],
        "facts": _facts(read),
        "not_judged": list(read.not_judged),
        "events": [
            {"step": e.get("step"), "kind": e.get("kind"), "message": str(e.get("message", ""))[:200]}
            for e in read.events
            if e.get("kind") != "memory_bank_full"
        ][:50],
    }


def _cell_class(key: str, text: str) -> str:
    if key == "verdict":
        return text
    if key.startswith("target_"):
        return next((w for w in ("passed", "missed") if w in text.split()), "")
    return ""


def _comparison(runs: Mapping[str, Any], seconds: Mapping[str, float] | None, targets: Any) -> Any:
    if len(runs) < 2:
        return None
    names = list(runs)
    rows = comparison_rows(runs, seconds=seconds, profile=targets)
    groups: dict[str, list[dict[str, Any]]] = {}
    previous = ""
    for row in rows:
        cells = [{"text": c, "cls": _cell_class(row.key, c)} for c in row.cells]
        note = "" if row.note == previous else row.note  # said once for a run of rows of the same kind
        previous = row.note
        groups.setdefault(row.group, []).append({"label": row.label, "cells": cells, "note": note})
    return {
        "names": names,
        "groups": list(groups.items()),
        "rows": rows,
        "markdown": comparison_markdown(names, rows),
    }


def write_report(
    runs: Any,
    out_dir: str | Path,
    *,
    title: str | None = None,
    targets: Any = None,
    panels: Sequence[str] | None = None,
    seconds: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> ReportResult:
    """Write PNG panels, report.md and report.html into out_dir (created). `runs`: a LogRead or a mapping
    name -> LogRead; `panels`: names to draw (default all that the data allows); `seconds`: wall time per
    run for the comparison; `progress(done, total, what)` is called as the panels are drawn."""
    runs = _runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn, skipped = P.select(runs, panels)
    total = len(drawn) + 1
    figures: list[dict[str, Any]] = []
    for i, panel in enumerate(drawn):
        if progress is not None:
            progress(i, total, panel.name)
        path = out / f"{panel.name}.png"
        P.render_panel(panel, runs, path, targets)
        figures.append(
            {
                "name": panel.name,
                "title": panel.title,
                "caption": panel.caption,
                "file": path.name,
                "path": path,
                "width": panel.pixels[0],
            }
        )
    key = next((f for f in figures if f["name"] == KEY_PANEL), None)
    context = {
        "title": title or "fgdiag report: " + ", ".join(runs),
        "runs": [_run_view(name, read, targets) for name, read in runs.items()],
        "story": build_story(runs),
        "key_figure": key,
        "figures": [f for f in figures if f is not key],
        "comparison": _comparison(runs, seconds, targets),
        "skipped": skipped,
    }
    if progress is not None:
        progress(len(drawn), total, "report.md, report.html")
    env = _environment()
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(env.get_template("report.md").render(context), encoding="utf-8")
    html_path.write_text(env.get_template("report.html").render(context), encoding="utf-8")
    if progress is not None:
        progress(total, total, "done")
    return ReportResult(out, md_path, html_path, [f["path"] for f in figures], skipped)
