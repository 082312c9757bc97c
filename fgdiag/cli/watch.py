"""`fgdiag watch LOG`: follow a training log (any supported format), judge it as it grows, show a dashboard.

Exit codes: 0 clean (warnings allowed), 1 an error finding or a missed target, 2 unreadable input or bad
options. `--once` reads what is there and exits; `--json` prints the summary instead of the dashboard.
Heavy imports (rich) happen inside the command, and `--json` never imports rich or pandas.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer


def load_targets(spec: str | None) -> Any:
    """A target profile from `--targets` (name or path), or None; exits 2 with the reason on error."""
    if spec is None:
        return None
    from fgdiag.targets import TargetError, get_profile

    try:
        return get_profile(spec)
    except TargetError as exc:
        typer.echo(f"fgdiag: --targets: {exc}", err=True)
        raise typer.Exit(2) from None


def report_malformed(read: Any, limit: int = 5) -> None:
    """Malformed lines (a known tag whose fields did not parse) to stderr: file, line, field."""
    for line, field, detail in read.malformed[:limit]:
        typer.echo(f"{read.path}:{line}: {field}: could not parse {detail!r}", err=True)
    if len(read.malformed) > limit:
        typer.echo(f"{read.path}: {len(read.malformed) - limit} more malformed lines", err=True)


def nothing_read(read: Any) -> str:
    """Why a log yielded nothing, with the formats it was read as."""
    from fgdiag.logs.reader import FORMATS_TRIED

    what = "an empty file" if read.lines == 0 else f"{read.lines} lines, none of them a training line"
    tried = "; ".join(FORMATS_TRIED)
    return f"{read.path}: {what} (formats tried: {tried})"


def input_error(message: str, path: str, as_json: bool) -> NoReturn:
    """Unreadable input or nothing recognised: the message on stderr (and a JSON error object on stdout with
    --json), exit 2."""
    from fgdiag.logs.reader import FORMATS_TRIED

    typer.echo(f"fgdiag watch: {message}", err=True)
    if as_json:
        error = {"error": message, "path": path, "formats_tried": list(FORMATS_TRIED), "exit_code": 2}
        typer.echo(json.dumps(error, indent=2))
    raise typer.Exit(2)


def plain_console() -> bool:
    return bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()


def print_dashboard(read: Any, status: str = "") -> None:
    from rich.console import Console

    from fgdiag.render.dashboard import render_dashboard, snapshot_from

    plain = plain_console()
    console = Console(
        no_color=plain,
        highlight=False,
        force_terminal=None if not plain else False,
        width=None if not plain else 110,
    )
    console.print(render_dashboard(snapshot_from(read, status=status)))


def _finding_line(f: Any) -> str:
    return f"step {f.step} {f.code} {f.severity.value}: {f.message}"


def follow(
    session: Any,
    path: Path,
    *,
    interval: float,
    max_seconds: float | None,
    stop_at_end: bool,
    on_update: Any,
    limit: int | None = None,
) -> None:
    """Poll the file until interrupted, `max_seconds` passed (checked after every read of at most `limit`
    bytes, so a huge file does not hold it), or (stop_at_end) the run ended or crashed and the file went
    quiet. `on_update(new_findings, new_rows)` is called after every poll that read data."""
    from fgdiag.logs.follow import READ_MAX, Follower

    follower = Follower(path, limit=limit or READ_MAX)
    start = time.monotonic()
    ended_at: float | None = None
    try:
        while True:
            got = False
            for kind, data in follower.poll():
                if kind == "reset":
                    session.reset_partial()
                else:
                    got = True
                    new = session.feed(data)
                    if new:
                        on_update(new, 0)
            if got:
                before = session.row_updates
                new = session.flush(final=False)
                on_update(new, session.row_updates - before)
            now = time.monotonic()
            if stop_at_end and session.ended:
                ended_at = ended_at or now
                if not got and now - ended_at > interval:
                    return
            if max_seconds is not None and now - start >= max_seconds:
                return
            if not follower.more:
                time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        follower.close()


def register(app: typer.Typer) -> None:
    @app.command("watch")
    def watch(
        log: Annotated[
            Path, typer.Argument(help="Training log, events.jsonl, trainer_state.json or a run directory")
        ],
        once: Annotated[bool, typer.Option("--once", help="Read what is there, print, exit")] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the JSON summary (implies --once)")
        ] = False,
        targets: Annotated[
            str | None,
            typer.Option("--targets", help="Target profile: a name (fgdiag targets) or a TOML path"),
        ] = None,
        candidates: Annotated[
            float | None,
            typer.Option(
                "--candidates",
                help="Candidates per query K when the log does not show it (region chance level = ln K)",
            ),
        ] = None,
        logging_steps: Annotated[
            int | None,
            typer.Option("--logging-steps", help="Trainer logging_steps, for logs without a progress bar"),
        ] = None,
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between polls of the file")
        ] = 0.2,
        max_seconds: Annotated[
            float | None, typer.Option("--max-seconds", help="Stop following after this many seconds")
        ] = None,
        stop_at_end: Annotated[
            bool,
            typer.Option(
                "--stop-at-end/--keep-following",
                help="Stop once the log shows the end of training or a crash",
            ),
        ] = True,
    ) -> None:
        """Follow a training log like tail -F and judge it live: losses against chance and targets, logit
        scales, logit ranges, memory bank, findings."""
        from fgdiag.logs.follow import NotAFile
        from fgdiag.render.summary import summary_dict
        from fgdiag.session import LogReadError, LogSession, read_log, resolve

        profile = load_targets(targets)
        if log.name.endswith(".json") and not once and not as_json:
            typer.echo(
                f"fgdiag watch: {log.name} is rewritten whole at each save, not appended: reading it once",
                err=True,
            )
            once = True
        if once or as_json:
            try:
                read = read_log(log, targets=profile, candidates=candidates, logging_steps=logging_steps)
            except LogReadError as exc:
                input_error(str(exc), str(log), as_json)
            if not read.rows and not read.events and not read.findings:
                input_error(nothing_read(read), read.path, as_json)
            report_malformed(read)
            summary = summary_dict(read)
            if as_json:
                typer.echo(json.dumps(summary, indent=2, allow_nan=False))
            else:
                print_dashboard(read, status="read once")
            raise typer.Exit(summary["exit_code"])
        if log.exists():
            try:
                log = resolve(log)  # a run directory's log; a FIFO or a device is refused
            except LogReadError as exc:
                typer.echo(f"fgdiag watch: {exc}", err=True)
                raise typer.Exit(2) from None
        session = LogSession(str(log), targets=profile, candidates=candidates, logging_steps=logging_steps)
        try:
            if plain_console():
                _follow_plain(session, log, interval, max_seconds, stop_at_end)
            else:
                _follow_live(session, log, interval, max_seconds, stop_at_end)
        except NotAFile as exc:
            typer.echo(f"fgdiag watch: {exc}", err=True)
            raise typer.Exit(2) from None
        session.flush(final=True)
        read = session.result()
        report_malformed(read)
        raise typer.Exit(summary_dict(read)["exit_code"])


def _follow_plain(
    session: Any, log: Path, interval: float, max_seconds: float | None, stop_at_end: bool
) -> None:
    from fgdiag.wire import format_step_summary

    printed: int | None = None  # the last step printed (bounded state: a 1 GB log has millions of steps)
    if not log.exists():
        typer.echo(f"fgdiag watch: waiting for {log} to appear", err=True)

    def update(new: list[Any], rows: int) -> None:
        nonlocal printed
        for f in new:
            typer.echo(_finding_line(f))
        steps = sorted(session.rows)[:-1]  # the last step may still grow
        if printed is None and steps:  # like tail: a long existing log shows only its last steps
            printed = steps[-11] if len(steps) > 10 else steps[0] - 1
        for step in steps:
            if printed is None or step > printed:
                printed = step
                typer.echo(format_step_summary(step, session.rows[step]))
        sys.stdout.flush()

    follow(
        session, log, interval=interval, max_seconds=max_seconds, stop_at_end=stop_at_end, on_update=update
    )
    for new in (session.flush(final=True),):
        for f in new:
            typer.echo(_finding_line(f))
    read = session.result()
    from fgdiag.render.summary import verdict

    typer.echo(
        f"verdict: {verdict(read.rows, read.events, read.findings)} ({len(read.findings)} findings, last "
        f"step {read.last_step})"
    )


def _follow_live(
    session: Any, log: Path, interval: float, max_seconds: float | None, stop_at_end: bool
) -> None:
    from rich.console import Console
    from rich.live import Live

    from fgdiag.render.dashboard import render_dashboard, snapshot_from

    console = Console()

    def view(status: str) -> Any:
        return render_dashboard(snapshot_from(session.result(), status=status))

    with Live(
        view("waiting for data" if log.exists() else "waiting for the file"),
        console=console,
        refresh_per_second=4,
        transient=False,
    ) as live:

        def update(new: list[Any], rows: int) -> None:
            live.update(view("following"))

        follow(
            session,
            log,
            interval=interval,
            max_seconds=max_seconds,
            stop_at_end=stop_at_end,
            on_update=update,
        )
        session.flush(final=True)
        live.update(view("stopped"))
