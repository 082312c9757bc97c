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
        run_id: Annotated[
            str | None,
            typer.Option(
                "--run-id", help="The run to judge in an events file holding several (default: newest)"
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the summary and the written files as JSON")
        ] = False,
    ) -> None:
        """Write the report of a run: which run failed and why, region loss with targets and ln K, logit
        scales, logit ranges, memory bank, gradient norms, the findings; with --compare, the measured
        comparison (runs named by their folders)."""
        import sys

        from fgdiag.cli.watch import load_targets, report_malformed
        from fgdiag.render.naming import run_names
        from fgdiag.render.progress import ProgressBoard, report_progress
        from fgdiag.render.report import write_report
        from fgdiag.render.summary import summary_dict
        from fgdiag.render.terminal import plain_output
        from fgdiag.session import LogReadError, read_log

        profile = load_targets(targets)
        paths = [log, *(compare or [])]
        runs = {}
        try:
            for name, path in zip(run_names(paths), paths, strict=True):
                runs[name] = read_log(
                    path, targets=profile, candidates=candidates, logging_steps=logging_steps, run_id=run_id
                )
        except LogReadError as exc:
            typer.echo(f"fgdiag report: {exc}", err=True)
            raise typer.Exit(2) from None
        main = next(iter(runs.values()))
        report_malformed(main)
        # bars on a terminal, lines on stderr otherwise; none under --json
        board = None if as_json else ProgressBoard(bars=not plain_output(sys.stderr))
        if board is not None:
            board.start()
        try:
            result = write_report(runs, out, title=title, targets=profile, progress=report_progress(board))
        except OSError as exc:
            typer.echo(f"fgdiag report: {out}: cannot write: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            if board is not None:
                board.stop()
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
