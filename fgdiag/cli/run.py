"""`fgdiag run [CONFIG]`: check-config, then a training run with the runtime diagnostics on and a live
dashboard, then the report. `--compare seed` adds the seed's broken configuration and a measured table."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer


def _preset_config(path: Path) -> Path:
    """The embedded preset written as a TOML file, so check-config can judge exactly what will run."""
    from fgclip.train.presets import EMBEDDED

    lines = ['preset = "embedded"']
    for key, value in EMBEDDED.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def register(app: typer.Typer) -> None:
    @app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def run(
        ctx: typer.Context,
        config: Annotated[
            str | None, typer.Argument(help="training config (TOML/JSON); default: embedded")
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="output folder (runs, report)")] = Path(
            "runs/fgdiag-run"
        ),
        compare: Annotated[
            str | None,
            typer.Option("--compare", help="'seed': also run the seed's broken settings and compare"),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="train even if check-config finds errors")
        ] = False,
        targets: Annotated[
            str | None, typer.Option("--targets", help="target profile (name or path)")
        ] = None,
        live: Annotated[bool, typer.Option("--live/--no-live", help="live dashboard on a terminal")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
    ) -> None:
        """Diagnostic training run; extra arguments after `--` go to fgclip.train (-- --max_steps 100)."""
        from fgdiag import runs as R
        from fgdiag.check import check_paths
        from fgdiag.facts.values import InputError

        err = typer.echo
        extra = list(ctx.args)
        if config is not None and config.startswith("-"):  # `fgdiag run -- --max_steps 50`: no config given
            extra, config = [config, *extra], None
        if compare not in (None, "seed"):
            err(f"fgdiag run: --compare {compare!r}: only 'seed' is known", err=True)
            raise typer.Exit(2)
        if config is not None and not Path(config).is_file():
            err(f"fgdiag run: {config}: no such config file", err=True)
            raise typer.Exit(2)
        if targets is None and config is None:
            from fgdiag.targets import builtin_profiles

            targets = "embedded" if "embedded" in builtin_profiles() else None
        out.mkdir(parents=True, exist_ok=True)

        # 1. check-config before step 0
        with tempfile.TemporaryDirectory() as tmp:
            checked = Path(config) if config else _preset_config(Path(tmp) / "embedded.toml")
            try:
                findings, _ = check_paths([str(checked)])
            except InputError as exc:
                err(f"fgdiag run: {exc}", err=True)
                raise typer.Exit(2) from None
        errors = [f for f in findings if f.severity.value == "error"]
        if not as_json:
            for f in findings:
                err(f"check-config: {f.code} {f.severity.value}: {f.message}", err=True)
        if errors and not force:
            err(f"fgdiag run: check-config found {len(errors)} error(s); fix them or pass --force", err=True)
            raise typer.Exit(1)

        # 2. training, with a live view
        show = _live_view(live and sys.stdout.isatty() and not as_json, targets)
        plan = [("fixed", R.train_command(config, out / "fixed", extra))]
        if compare == "seed":
            plan.append(("seed", R.train_command(config, out / "seed", [*extra, *R.SEED_SETTINGS])))
        results = {}
        try:
            for name, cmd in plan:
                result = R.run_training(name, cmd, out / name, live=show.update, targets=targets)
                if result.returncode != 0:
                    tail = result.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                    err(
                        f"fgdiag run: training '{name}' failed (exit {result.returncode}); "
                        f"log: {result.log_path}\n" + "\n".join(tail),
                        err=True,
                    )
                    raise typer.Exit(1)
                results[name] = R.judge(result, targets)
        finally:
            show.stop()

        # 3. report (+ comparison)
        report_dir = R.write_outputs(results, out, targets)
        fixed = results["fixed"]
        bad = [f for f in fixed.findings if f.severity.value == "error"]
        if as_json:
            typer.echo(json.dumps(R.summary_json(results, report_dir), indent=2))
        else:
            for name, r in results.items():
                codes = ", ".join(f"{f.code}@{f.step}" for f in r.findings) or "no findings"
                typer.echo(f"{name}: {r.seconds:.0f} s, {codes}")
            if len(results) > 1:
                typer.echo(R.comparison_markdown(results))
            typer.echo(f"report: {report_dir / 'report.html'}")
        raise typer.Exit(1 if bad else 0)


class _live_view:
    """A rich Live dashboard fed from the run's events.jsonl, or quiet progress lines on stderr.

    Each run's file is followed incrementally (a Follower feeding one LogSession): a poll reads only what
    was appended since the last one.
    """

    def __init__(self, enabled: bool, targets: str | None):
        self.enabled = enabled
        self.targets = targets
        self._live: Any = None
        self._last_print = 0.0
        self._runs: dict[str, tuple] = {}

    def _read(self, name: str, events_path: Path):
        from fgdiag.logs.follow import Follower
        from fgdiag.session import LogSession
        from fgdiag.targets import get_profile

        if name not in self._runs:
            profile = get_profile(self.targets) if self.targets else None
            self._runs[name] = (Follower(events_path), LogSession(str(events_path), targets=profile))
        follower, session = self._runs[name]
        for kind, data in follower.poll():
            if kind == "reset":
                session.reset_partial()
            else:
                session.feed(data)
        session.flush(False)
        return session.result()

    def update(self, name: str, events_path: Path, seconds: float) -> None:
        if not events_path.exists():
            return
        read = self._read(name, events_path)
        if self.enabled:
            from rich.live import Live

            from fgdiag.render.dashboard import render_dashboard, snapshot_from

            frame = render_dashboard(snapshot_from(read, status=f"{name}: training, {seconds:.0f} s"))
            if self._live is None:
                self._live = Live(frame, refresh_per_second=2, transient=False)
                self._live.start()
            else:
                self._live.update(frame)
        elif seconds - self._last_print >= 15 and read.rows:
            self._last_print = seconds
            step = max(read.rows)
            region = read.rows[step].get("head_loss/region")
            typer.echo(
                f"[fgdiag run] {name}: step {step}, region loss "
                f"{region if region is None else round(region, 4)}, {seconds:.0f} s",
                err=True,
            )

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        for follower, _ in self._runs.values():
            follower.close()
