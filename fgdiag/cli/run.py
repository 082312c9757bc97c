"""`fgdiag run [CONFIG]`: check-config, then a training run with the runtime diagnostics on and a live
dashboard (or progress lines), then the report. `--compare seed` adds the seed's settings as the user's run
had them, trained from the same checkpoint, and a measured table; the two arms train side by side when the
machine has a core for each."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from dataclasses import dataclass
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
        threads: Annotated[
            int | None,
            typer.Option(
                "--threads", min=1, help="torch threads per training (default: $FGCLIP_NUM_THREADS or 1)"
            ),
        ] = None,
        parallel: Annotated[
            bool | None,
            typer.Option("--parallel/--sequential", help="arms side by side (default: when a core each)"),
        ] = None,
        every: Annotated[
            float, typer.Option("--every", min=1.0, help="seconds between progress lines")
        ] = 10.0,
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

        # 2. the embedded default (data + pretrained tiny CLIP, once per machine), then training
        if threads is None:
            from fgclip.train.threads import choose_threads

            threads = choose_threads()[0]  # $FGCLIP_NUM_THREADS, $OMP_NUM_THREADS, else 1
        say = _say
        if config is None:
            say("[fgdiag run] embedded default: data and pretrained tiny CLIP (built once per machine)")
            try:
                R.prepare_embedded_default(out / "prepare.log", R.child_env(threads), say)
            except RuntimeError as exc:
                err(f"fgdiag run: {exc}", err=True)
                raise typer.Exit(1) from None
        plan = [("fixed", R.train_command(config, out / "fixed", extra))]
        if compare == "seed":
            plan.append(("seed", R.train_command(config, out / "seed", [*extra, *R.SEED_SETTINGS])))
        side_by_side = R.plan_parallel(len(plan), threads) if parallel is None else parallel
        show = _live_view(live and sys.stdout.isatty() and not as_json, targets, every, say)
        env = R.child_env(threads, targets)
        results = {}
        try:
            batches = [plan] if side_by_side else [[p] for p in plan]
            for batch in batches:
                running = []
                for name, cmd in batch:
                    moved = R.move_previous(out / name)
                    if moved is not None:
                        say(f"[fgdiag run] {name}: the previous run's folder moved to {moved}")
                    running.append(R.start_training(name, cmd, out / name, env))
                    show.announce(name, out / name / "training.log", threads, side_by_side)
                for name, result in R.wait_all(running, live=show.update).items():
                    show.finished(name, result.events_path, result.returncode, result.seconds)
                    if result.returncode != 0:
                        tail = result.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[
                            -15:
                        ]
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


def _say(line: str) -> None:
    """Progress lines go to stderr, also under --json (stdout then carries the JSON only)."""
    typer.echo(line, err=True)


@dataclass
class _Progress:
    """One run's progress-line state: each run prints on its own cadence and never repeats a step."""

    last_print: float = -math.inf
    last_step: int | None = None


class _live_view:
    """A rich Live dashboard fed from the runs' events.jsonl (one panel per run), or progress lines.

    Each run's file is followed incrementally (a Follower feeding one LogSession): a poll reads only what
    was appended since the last one.
    """

    def __init__(self, enabled: bool, targets: str | None, every: float = 10.0, say=None):
        self.enabled = enabled
        self.targets = targets
        self.every = every
        self.say = say or _say
        self._live: Any = None
        self._frames: dict[str, Any] = {}
        self._progress: dict[str, _Progress] = {}
        self._runs: dict[str, tuple] = {}

    def announce(self, name: str, log_path: Path, threads: int, parallel: bool) -> None:
        how = "side by side with the other arm" if parallel else "alone"
        self._progress[name] = _Progress()
        self.say(f"[fgdiag run] {name}: training started ({threads} thread(s), {how}); log {log_path}")

    def finished(self, name: str, events_path: Path, returncode: int, seconds: float) -> None:
        self.update(name, events_path, seconds, force=True)  # the last step, whatever the cadence
        state = self._progress.get(name, _Progress())
        step = f", last logged step {state.last_step}" if state.last_step is not None else ""
        self.say(f"[fgdiag run] {name}: finished in {seconds:.0f} s (exit {returncode}){step}")

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

    def update(self, name: str, events_path: Path, seconds: float, force: bool = False) -> None:
        if not events_path.exists():
            return
        read = self._read(name, events_path)
        if self.enabled:
            from rich.console import Group
            from rich.live import Live

            from fgdiag.render.dashboard import render_dashboard, snapshot_from

            status = f"{name}: training, {seconds:.0f} s"
            self._frames[name] = render_dashboard(snapshot_from(read, status=status))
            frame = Group(*self._frames.values())
            if self._live is None:
                self._live = Live(frame, refresh_per_second=2, transient=False)
                self._live.start()
            else:
                self._live.update(frame)
            return
        state = self._progress.setdefault(name, _Progress())
        if not read.rows:
            return
        step = max(read.rows)
        if step == state.last_step or (seconds - state.last_print < self.every and not force):
            return
        state.last_print, state.last_step = seconds, step
        row = read.rows[step]
        region, chance = row.get("head_loss/region"), row.get("chance/region")
        text = "-" if region is None else f"{region:.3f}"
        if chance is not None:
            text += f" (chance ln K {chance:.2f})"
        self.say(f"[fgdiag run] {name}: step {step}, region loss {text}, {seconds:.0f} s")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        for follower, _ in self._runs.values():
            follower.close()
