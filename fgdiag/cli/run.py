"""`fgdiag run [CONFIG]`: check-config, then a training run with the runtime diagnostics on, with progress
bars (and a live dashboard) on a terminal or progress lines elsewhere, then the report. `--compare seed`
adds the seed's settings as the user's run had them, trained from the same checkpoint, and a measured table;
the two arms train side by side when the machine has a core for each.

Runs are never mixed: `--out DIR` must be empty (earlier runs moved aside into `DIR/previous/` do not
count), unless `--resume` continues the run in it (same arguments; each arm resumes from its newest
checkpoint and appends to its events under its own run id) or `--overwrite` moves that run into
`DIR/previous/<stamp>/` first, with a manifest; nothing is deleted.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer


def _preset_config(path: Path) -> Path:
    """The embedded preset written as a TOML file, so check-config can judge exactly what will run."""
    import tomli_w

    from fgclip.train.presets import EMBEDDED

    path.write_text(tomli_w.dumps({"preset": "embedded", **EMBEDDED}), encoding="utf-8")
    return path


def _say(line: str) -> None:
    """Progress lines go to stderr, also under --json (stdout then carries the JSON only)."""
    typer.echo(line, err=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"fgdiag run: {message}", err=True)
    return typer.Exit(code)


def _out_dir_plan(
    out: Path, config: str | None, compare: str | None, extra: list[str], resume: bool, overwrite: bool
) -> Any:
    """The run plan for `out`: a new one (after moving an earlier run aside with --overwrite) or, with
    --resume, the one already there. Refuses (exit 2) a non-empty folder without either option."""
    from fgdiag import runs as R

    if resume and overwrite:
        raise _fail("--resume and --overwrite exclude each other")
    there = R.existing_entries(out)
    if resume:
        if not there:
            raise _fail(f"--resume: {out} holds no run to resume")
        try:
            plan = R.RunPlan.load(out)
        except ValueError as exc:
            raise _fail(f"--resume: {exc}") from None
        changed = plan.differences(config, compare, extra)
        if changed:
            raise _fail(
                f"--resume: {out} holds a run started with other arguments ({'; '.join(changed)}): resume it "
                "with the same ones, or start anew with --overwrite"
            )
        return plan
    if there:
        if not overwrite:
            raise _fail(
                f"{out} already holds a run ({R.describe_entries(there)}); runs are never mixed: pass "
                f"--resume to continue it, --overwrite to move it into {out / R.PREVIOUS}/<stamp>/ (nothing "
                "is deleted), or choose another --out"
            )
        moved = R.move_run_aside(out)
        _say(
            f"[fgdiag run] the earlier run in {out} moved to {moved} (MANIFEST.json says how to move it back)"
        )
    plan = R.RunPlan.new(config, compare, extra)
    plan.save(out)
    return plan


def register(app: typer.Typer) -> None:
    @app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def run(
        ctx: typer.Context,
        config: Annotated[
            str | None, typer.Argument(help="training config (TOML/JSON); default: embedded")
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="output folder, empty or new (runs, report)")] = Path(
            "runs/fgdiag-run"
        ),
        compare: Annotated[
            str | None,
            typer.Option("--compare", help="'seed': also run the seed's broken settings and compare"),
        ] = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="continue the run already in --out (same arguments)")
        ] = False,
        overwrite: Annotated[
            bool,
            typer.Option("--overwrite", help="move the run already in --out into --out/previous/<stamp>/"),
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="train even if check-config finds errors")
        ] = False,
        targets: Annotated[
            str | None, typer.Option("--targets", help="target profile (name or path)")
        ] = None,
        live: Annotated[
            bool, typer.Option("--live/--no-live", help="live dashboard below the progress bars (terminal)")
        ] = True,
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
            float, typer.Option("--every", min=1.0, help="seconds between progress lines (not a terminal)")
        ] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
    ) -> None:
        """Diagnostic training run; extra arguments after `--` go to fgclip.train (-- --max_steps 100)."""
        from fgdiag import runs as R
        from fgdiag.check import check_paths
        from fgdiag.events import RUN_ID_ENV
        from fgdiag.facts.values import InputError
        from fgdiag.render.progress import ProgressBoard, report_progress
        from fgdiag.render.run_view import RunView
        from fgdiag.render.terminal import finding_line, plain_output

        extra = list(ctx.args)
        if config is not None and config.startswith("-"):  # `fgdiag run -- --max_steps 50`: no config given
            extra, config = [config, *extra], None
        if compare not in (None, "seed"):
            raise _fail(f"--compare {compare!r}: only 'seed' is known")
        if config is not None and not Path(config).is_file():
            raise _fail(f"{config}: no such config file")
        if targets is None and config is None:
            from fgdiag.targets import builtin_profiles

            targets = "embedded" if "embedded" in builtin_profiles() else None

        # 1. check-config before step 0 (before touching --out: a refused config changes nothing)
        with tempfile.TemporaryDirectory() as tmp:
            checked = Path(config) if config else _preset_config(Path(tmp) / "embedded.toml")
            try:
                findings, _ = check_paths([str(checked)])
            except InputError as exc:
                raise _fail(str(exc)) from None
        errors = [f for f in findings if f.severity.value == "error"]
        if not as_json:
            for f in findings:
                _say(f"check-config: {finding_line(f, where='')}")
        if errors and not force:
            raise _fail(f"check-config found {len(errors)} error(s); fix them or pass --force", 1)
        plan = _out_dir_plan(out, config, compare, extra, resume, overwrite)

        # 2. the embedded default (data + pretrained tiny CLIP, once per machine), then training
        if threads is None:
            from fgclip.train.threads import choose_threads

            threads = choose_threads()[0]  # $FGCLIP_NUM_THREADS, $OMP_NUM_THREADS, else 1
        if config is None:
            _say("[fgdiag run] embedded default: data and pretrained tiny CLIP (built once per machine)")
            try:
                R.prepare_embedded_default(out / "prepare.log", R.child_env(threads), _say, append=resume)
            except RuntimeError as exc:
                raise _fail(str(exc), 1) from None
        arms = [("fixed", R.train_command(config, out / "fixed", extra))]
        if compare == "seed":
            arms.append(("seed", R.train_command(config, out / "seed", [*extra, *R.SEED_SETTINGS])))
        side_by_side = R.plan_parallel(len(arms), threads) if parallel is None else parallel
        terminal = not as_json and not plain_output(sys.stderr)
        view = RunView(terminal=terminal, live=live, targets=targets, every=every, say=_say)
        env = R.child_env(threads, targets)
        results = {}
        try:
            for batch in [arms] if side_by_side else [[a] for a in arms]:
                running = []
                for name, cmd in batch:
                    arm_env = {**env, RUN_ID_ENV: plan.arms[name]}
                    running.append(R.start_training(name, cmd, out / name, arm_env, resume=resume))
                    view.announce(name, out / name / "training.log", threads, side_by_side, resume)
                for name, result in R.wait_all(running, live=view.update).items():
                    view.finished(name, result.events_path, result.returncode, result.seconds)
                    if result.returncode != 0:
                        log = result.log_path.read_text(encoding="utf-8", errors="replace")
                        tail = "\n".join(log.splitlines()[-15:])
                        why = f"training '{name}' failed (exit {result.returncode}); log: {result.log_path}"
                        raise _fail(f"{why}\n{tail}", 1)
                    results[name] = R.judge(result, targets)
        finally:
            view.stop()

        # 3. report (+ comparison)
        board = None if as_json else ProgressBoard(bars=terminal, echo=_say)
        if board is not None:
            board.start()
        try:
            report_dir, summary = R.write_outputs(results, out, targets, report_progress(board))
        finally:
            if board is not None:
                board.stop()
        bad = [f for f in results["fixed"].findings if f.severity.value == "error"]
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            for name, r in results.items():
                codes = (
                    ", ".join(sorted({f"{f.severity.value} {f.code}" for f in r.findings})) or "no findings"
                )
                typer.echo(f"{name}: {r.seconds:.0f} s, {codes}")
            if len(results) > 1:
                typer.echo(R.comparison_markdown(results))
            typer.echo(f"report: {report_dir / 'report.html'}")
        raise typer.Exit(1 if bad else 0)
