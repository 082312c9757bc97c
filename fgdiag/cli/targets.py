"""`fgdiag targets [--json]`: list the built-in convergence-target profiles (every *.toml in
fgdiag/targets/)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("targets")
    def targets(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        path: Annotated[str | None, typer.Argument(help="Show one profile (a name or a TOML path)")] = None,
    ) -> None:
        """List the target profiles that watch/report can judge a run against (--targets NAME|PATH)."""
        from fgdiag.targets import TargetError, builtin_profiles, get_profile

        try:
            profiles = [get_profile(path)] if path else list(builtin_profiles().values())
        except TargetError as exc:
            typer.echo(f"fgdiag targets: {exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
            return
        for p in profiles:
            typer.echo(f"{p.name}  ({p.source})")
            if p.description:
                typer.echo(f"  {p.description}")
            if p.logit_scale is not None:
                typer.echo(f"  logit scale {p.logit_scale:g} +- {p.logit_scale_tolerance:g}")
            if p.memory_bank_active_by is not None:
                typer.echo(f"  memory bank active by step {p.memory_bank_active_by}")
            for c in p.points:
                typer.echo(f"  {c.describe()}")
