"""`fgdiag explain CODE` prints a rule's docs; `fgdiag explain` lists all codes."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain(
        code: Annotated[str | None, typer.Argument(help="Rule code, e.g. FGD101; omit to list all")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> None:
        """Print what a rule checks, why it matters, an example and the fix."""
        from fgdiag.rules.registry import get, load_all

        rules = load_all()
        if code is None:
            if as_json:
                typer.echo(
                    json.dumps(
                        [
                            {"code": r.code, "name": r.name, "severity": r.severity.value, "family": r.family}
                            for r in rules.values()
                        ],
                        indent=2,
                    )
                )
            else:
                for rule in sorted(rules.values(), key=lambda r: r.code):
                    typer.echo(f"{rule.code}  {rule.severity.value:<7}  {rule.name}")
            return
        try:
            rule = get(code)
        except KeyError as exc:
            typer.echo(f"fgdiag explain: {exc.args[0]}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "code": rule.code,
                        "name": rule.name,
                        "severity": rule.severity.value,
                        "family": rule.family,
                        "what": rule.what,
                        "why": rule.why,
                        "example": rule.example,
                        "fix": rule.fix,
                    },
                    indent=2,
                )
            )
        else:
            typer.echo(rule.explain())
