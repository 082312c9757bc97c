"""`write_report(runs, out_dir)`: PNG panels plus report.md and report.html that summarise the findings.

`runs` is one LogRead or a mapping name -> LogRead (several runs are overlaid in every panel, for a later
`--compare`). Only files named by the report are written into `out_dir`; nothing there is deleted.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgdiag.render import panels as P
from fgdiag.render.summary import crash_events, target_table, verdict


@dataclass
class ReportResult:
    out_dir: Path
    markdown: Path
    html: Path
    images: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _runs(runs: Any) -> dict[str, Any]:
    if isinstance(runs, Mapping):
        return dict(runs)
    return {Path(runs.path).stem or "run": runs}


def _run_facts(name: str, read: Any) -> list[tuple[str, str]]:
    last = max(read.rows) if read.rows else None
    crash = crash_events(read.events)
    facts = [
        ("run", name),
        ("source", read.path),
        ("formats", ", ".join(read.formats) or "-"),
        ("logging steps", str(len(read.rows))),
        ("last step", str(last)),
        ("verdict", verdict(read.rows, read.events, read.findings)),
        ("lines", f"{read.lines} ({read.unparsed} not recognised)"),
    ]
    if crash:
        facts.append(("crashed", f"step {crash[0].get('step')}: {crash[0].get('message', '')[:200]}"))
    return facts


def _sections(runs: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) tables shared by the markdown and the HTML writers."""
    out = []
    for name, read in runs.items():
        prefix = f"{name}: " if len(runs) > 1 else ""
        out.append((f"{prefix}run", ["", ""], [list(f) for f in _run_facts(name, read)]))
        out.append(
            (
                f"{prefix}findings",
                ["code", "severity", "step", "message", "fix"],
                [
                    [f.code, f.severity.value, "" if f.step is None else str(f.step), f.message, f.help]
                    for f in read.findings
                ]
                or [["-", "-", "-", "no findings", "-"]],
            )
        )
        if read.targets is not None:
            table = target_table(read.targets, read.target_results, max(read.rows) if read.rows else None)
            out.append(
                (
                    f"{prefix}targets ({read.targets.name})",
                    ["target", "value", "status"],
                    [
                        [t["target"], "-" if t["value"] is None else f"{t['value']:.4f}", t["status"]]
                        for t in table
                    ],
                )
            )
        if read.not_judged:
            out.append(
                (
                    f"{prefix}not judged",
                    ["code", "reason"],
                    [[n["code"], n["reason"]] for n in read.not_judged],
                )
            )
        notable = [e for e in read.events if e.get("kind") != "memory_bank_full"]
        if notable:
            out.append(
                (
                    f"{prefix}events",
                    ["step", "kind", "message"],
                    [
                        [str(e.get("step")), str(e.get("kind")), str(e.get("message", ""))[:200]]
                        for e in notable[:50]
                    ],
                )
            )
    return out


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(title: str, sections: list, images: Sequence[tuple[str, Path]], skipped: Sequence[str]) -> str:
    lines = [f"# {title}", ""]
    for name, header, rows in sections:
        lines += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        lines.append("")
    lines += ["## plots", ""]
    for caption, path in images:
        lines += [f"![{caption}]({path.name})", ""]
    for note in skipped:
        lines.append(f"- skipped {note}")
    return "\n".join(lines) + "\n"


def _html(title: str, sections: list, images: Sequence[tuple[str, Path]], skipped: Sequence[str]) -> str:
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for name, header, rows in sections:
        body.append(f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cls = f' class="{e(row[1])}"' if len(row) > 1 and row[1] in ("error", "warning", "info") else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        body.append("</table>")
    body.append("<h2>plots</h2>")
    for caption, path in images:
        body.append(
            f'<figure><img src="{e(path.name)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption>'
            "</figure>"
        )
    if skipped:
        body.append("<ul>" + "".join(f"<li>skipped {e(n)}</li>" for n in skipped) + "</ul>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em "
        "auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px "
        "6px;text-align:left;vertical-align:top}tr.error td{background:#fdd}tr.warning "
        "td{background:#ffd}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title><style>{style}</style>'
        f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    runs: Any,
    out_dir: str | Path,
    *,
    title: str | None = None,
    targets: Any = None,
    panels: Sequence[str] | None = None,
) -> ReportResult:
    """Write PNG panels, report.md and report.html into out_dir (created). `runs`: a LogRead or a mapping
    name -> LogRead; `panels`: names to draw (default all that the data allows)."""
    runs = _runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn, skipped = P.select(runs, panels)
    images: list[tuple[str, Path]] = []
    for panel in drawn:
        path = out / f"{panel.name}.png"
        P.render_panel(panel, runs, path, targets)
        images.append((panel.title, path))
    title = title or "fgdiag report: " + ", ".join(runs)
    sections = _sections(runs)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(_markdown(title, sections, images, skipped), encoding="utf-8")
    html_path.write_text(_html(title, sections, images, skipped), encoding="utf-8")
    return ReportResult(out, md_path, html_path, [p for _c, p in images], skipped)
