"""The `fgdiag` command: composes one typer sub-app per command module, nothing else.

Command modules must not import torch at module level: `watch` and `report` only read logs and must start
fast; they import heavy things inside the command function.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="fgdiag",
    help="Diagnostics for fine-grained CLIP training: check-config before step 0, runtime probes during the "
    "run, watch/report from any log afterwards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """fgdiag: find the silent failures of FG-CLIP-style training."""


# each module defines `register(app: typer.Typer) -> None`
COMMAND_MODULES = ("explain", "data_audit", "check_config", "watch", "report", "targets", "run", "schema")

for _name in COMMAND_MODULES:
    importlib.import_module(f"fgdiag.cli.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
