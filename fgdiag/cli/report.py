"""`fgdiag report LOG_OR_EVENTS --out DIR`: PNG panels, report.md and report.html for one run (or several
with --compare). Exit codes as watch: 0 clean, 1 error findings or a missed target, 2 unreadable input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        log: Annotated[
            Path, typer.Argument(help="Training log, events.jsonl, trainer_state.json or a run directory")
        ],
        out: Annotated[
            Path,
            typer.Option(
                "--out", help="Output folder (created; existing files of the same name are replaced)"
            ),
        ],
        targets: Annotated[
            str | None, typer.Option("--targets", help="Target profile name or TOML path")
        ] = None,
        candidates: Annotated[
            float | None, typer.Option("--candidates", help="K when the log does not show it")
        ] = None,
        logging_steps: Annotated[
            int | None, typer.Option("--logging-steps", help="Trainer logging_steps")
        ] = None,
        compare: Annotated[
            list[Path] | None, typer.Option("--compare", help="Another run to overlay (repeatable)")
        ] = None,
        title: Annotated[str | None, typer.Option("--title", help="Report title")] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the summary and the written files as JSON")
        ] = False,
    ) -> None:
        """Write the report of a run: region loss with targets and ln K, logit scales, logit ranges, memory
        bank, gradient norms, and the findings."""
        from fgdiag.cli.watch import load_targets, report_malformed
        from fgdiag.render.report import write_report
        from fgdiag.render.summary import summary_dict
        from fgdiag.session import LogReadError, read_log

        profile = load_targets(targets)
        runs = {}
        try:
            main = read_log(log, targets=profile, candidates=candidates, logging_steps=logging_steps)
            runs[log.stem or str(log)] = main
            for other in compare or []:
                name = other.stem or str(other)
                while name in runs:
                    name += "'"
                runs[name] = read_log(
                    other, targets=profile, candidates=candidates, logging_steps=logging_steps
                )
        except LogReadError as exc:
            typer.echo(f"fgdiag report: {exc}", err=True)
            raise typer.Exit(2) from None
        report_malformed(main)
        try:
            result = write_report(runs, out, title=title)
        except OSError as exc:
            typer.echo(f"fgdiag report: {out}: cannot write: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        summary = summary_dict(main)
        if as_json:
            summary["report"] = {
                "markdown": str(result.markdown),
                "html": str(result.html),
                "images": [str(p) for p in result.images],
                "skipped": result.skipped,
            }
            typer.echo(json.dumps(summary, indent=2, allow_nan=False))
        else:
            typer.echo(f"wrote {result.html} and {result.markdown} ({len(result.images)} plots)")
            for note in result.skipped:
                typer.echo(f"  skipped: {note}")
            typer.echo(f"verdict: {summary['verdict']}")
        raise typer.Exit(summary["exit_code"])
