"""`fgdiag check-config PATH...`: judge a planned run before step 0 (configs, launch scripts, model and output
directories, checkpoints, data sets, together), optionally moving stale checkpoints aside.

Exit codes: 0 clean (warnings allowed), 1 error findings, 2 usage or unreadable/unsafe input (stderr names
the file and the reason). Heavy imports happen inside the command: the CLI must answer in about a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _interactive() -> bool:
    """Whether a person can answer the quarantine prompt (stdin is a terminal)."""
    return sys.stdin.isatty()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"fgdiag check-config: {message}", err=True)
    return typer.Exit(2)


def _finding_json(finding: Any) -> dict[str, Any]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "message": finding.message,
        "location": finding.location,
        "help": finding.help,
    }


def _render_text(findings: list[Any], summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    for finding in findings:
        line = Text(f"{finding.location}: " if finding.location else "")
        line.append(finding.code, style=STYLE[finding.severity.value])
        line.append(f" {finding.message}")
        console.print(line)
        console.print(Text(f"  help: {finding.help}", style="dim"))
    for note in summary["notes"]:
        console.print(Text(f"note: {note}", style="dim"))
    record = summary.get("quarantine")
    if record:
        for folder in record.get("folders", []):
            console.print(
                Text(
                    f"quarantine: moved {len(folder['moved'])} checkpoint(s) to {folder['folder']} (manifest "
                    f"{folder['manifest']})"
                )
            )
            for failed in folder["failed"]:
                console.print(
                    Text(f"quarantine: could not move {failed} (see the manifest)", style="bold red")
                )
    tally = (
        f"{summary['errors']} error(s), {summary['warnings']} warning(s) in {len(summary['inputs'])} input(s)"
    )
    console.print(Text(tally, style=STYLE["error"] if summary["errors"] else "green"))


def _quarantine(findings: list[Any], yes: bool, summary: dict[str, Any]) -> None:
    """Move the stale checkpoints aside (QuarantineError, an InputError, when the folder cannot be made)."""
    from fgdiag.static.quarantine import candidates, quarantine

    items, skipped = candidates(findings)
    summary["notes"].extend(skipped)
    if not items:
        summary["quarantine"] = {"folders": [], "declined": False, "skipped": skipped}
        summary["notes"].append("--quarantine: no stale checkpoint to move")
        return
    for item in items:
        typer.echo(f"stale: {item.path} ({', '.join(f.code for f in item.findings)})", err=True)
    if not yes and not typer.confirm(
        f"Move {len(items)} stale checkpoint(s) into <output_dir>/quarantine/? Nothing is deleted",
        default=False,
        err=True,
    ):
        summary["quarantine"] = {"folders": [], "declined": True, "skipped": skipped}
        summary["notes"].append("--quarantine declined: nothing moved")
        return
    summary["quarantine"] = {"folders": quarantine(items), "declined": False, "skipped": skipped}


def register(app: typer.Typer) -> None:
    @app.command("check-config")
    def check_config(
        paths: Annotated[
            list[Path],
            typer.Argument(
                help="Configs (.toml/.json, presets applied), launch scripts (.sh), model dirs, output dirs "
                "with checkpoint-* (judged by their own config.json when no config is given), checkpoints, "
                "weight files (OpenAI CLIP .pt archives too), DeepSpeed configs, data sets; judged together"
            ),
        ],
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        select: Annotated[
            list[str] | None,
            typer.Option("--select", help="Only these codes or prefixes (comma-separated, e.g. FGD1,FGD401)"),
        ] = None,
        ignore: Annotated[
            list[str] | None, typer.Option("--ignore", help="Drop these codes or prefixes (comma-separated)")
        ] = None,
        do_quarantine: Annotated[
            bool,
            typer.Option(
                "--quarantine",
                help="Move stale checkpoints (FGD401) into <output_dir>/quarantine/<time>/ with a "
                "MANIFEST.json; never deletes",
            ),
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before quarantining")] = False,
        max_invalid_ratio: Annotated[
            float,
            typer.Option(
                "--max-invalid-ratio", help="FGD301 threshold on the data audit's invalid-box ratio"
            ),
        ] = 0.05,
    ) -> None:
        """Check a training configuration, its launch script, checkpoints and data before step 0."""
        from fgdiag.check import check_paths
        from fgdiag.diagnostic import exit_code
        from fgdiag.facts.values import InputError

        if do_quarantine and not yes and not _interactive():
            raise _fail(
                "--quarantine needs a confirmation: stdin is not a terminal, pass --yes to move stale "
                "checkpoints without asking (nothing is ever deleted)"
            )
        try:
            findings, summary = check_paths(paths, select, ignore, max_invalid_ratio=max_invalid_ratio)
        except InputError as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if do_quarantine:
            try:
                _quarantine(findings, yes, summary)
            except InputError as exc:  # the quarantine folder cannot be made: nothing moved
                raise _fail(str(exc)) from None
        if as_json:
            typer.echo(
                json.dumps({"findings": [_finding_json(f) for f in findings], "summary": summary}, indent=2)
            )
        else:
            _render_text(findings, summary)
        raise typer.Exit(exit_code(findings))
