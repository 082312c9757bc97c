"""`fgdiag schema [events]`: the events.jsonl record schema as JSON Schema, for other tools reading our
events. `--out FILE` writes it; `--check` exits 1 when FILE differs from what this version writes (CI keeps
docs/events.schema.json current)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

SCHEMAS = ("events",)


def schema_text(what: str = "events") -> str:
    from fgdiag.events import json_schema

    return json.dumps(json_schema(), indent=2) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema(
        what: Annotated[str, typer.Argument(help="which schema: events")] = "events",
        out: Annotated[Path | None, typer.Option("--out", help="write it to this file")] = None,
        check: Annotated[
            bool, typer.Option("--check", help="with --out: exit 1 if the file is not current")
        ] = False,
    ) -> None:
        """Print (or write) a JSON Schema of fgdiag's files."""
        if what not in SCHEMAS:
            typer.echo(f"fgdiag schema: unknown schema {what!r}; known: {', '.join(SCHEMAS)}", err=True)
            raise typer.Exit(2)
        text = schema_text(what)
        if out is None:
            if check:
                typer.echo("fgdiag schema: --check needs --out FILE", err=True)
                raise typer.Exit(2)
            typer.echo(text, nl=False)
            return
        if check:
            try:
                current = out.read_text(encoding="utf-8")
            except OSError as exc:
                typer.echo(f"fgdiag schema: {out}: cannot read: {exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
            if current != text:
                typer.echo(f"{out} is not current: run `fgdiag schema {what} --out {out}`", err=True)
                raise typer.Exit(1)
            typer.echo(f"{out} is current")
            return
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
