"""What `fgdiag run` shows while its trainings run: on a terminal one progress bar per run (steps done of
the planned steps, the region loss against chance) in a rich Live display, with each run's dashboard below
when `live`; elsewhere (piped, CI, NO_COLOR) one progress line per run at a steady cadence that never
repeats a step, and always the last one.

Each run's `events.jsonl` is followed incrementally (a Follower feeding one LogSession): a poll reads only
what was appended since the last one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgdiag.render.progress import ProgressBoard


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunView:
    """Progress of the runs of one `fgdiag run`."""

    def __init__(
        self,
        *,
        terminal: bool,
        live: bool,
        targets: str | None,
        every: float = 10.0,
        say: Callable[[str], None] | None = None,
    ):
        self.terminal = terminal
        self.live = live and terminal
        self.targets = targets
        self.say = say or _say
        self.board = ProgressBoard(bars=terminal, echo=self.say, every=every)
        self._display: Any = None
        self._frames: dict[str, Any] = {}
        self._runs: dict[str, tuple] = {}

    def announce(
        self, name: str, log_path: Path, threads: int, parallel: bool, resumed: bool = False
    ) -> None:
        how = "side by side with the other arm" if parallel else "alone"
        what = "resumed" if resumed else "started"
        self.say(f"[fgdiag run] {name}: training {what} ({threads} thread(s), {how}); log {log_path}")
        self.board.add(name, f"[fgdiag run] {name}", None, unit="step")
        self._redraw()

    def finished(self, name: str, events_path: Path, returncode: int, seconds: float) -> None:
        self.update(name, events_path, seconds, force=True)  # the last step, whatever the cadence
        task = self.board.tasks.get(name)
        step = f", last logged step {task.done:g}" if task is not None and task.done else ""
        self.say(f"[fgdiag run] {name}: finished in {seconds:.0f} s (exit {returncode}){step}")

    def _read(self, name: str, events_path: Path) -> Any:
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
        if not read.rows:
            return
        step = max(read.rows)
        row = read.rows[step]
        region, chance = row.get("head_loss/region"), row.get("chance/region")
        note = "" if region is None else f"region loss {region:.3f}"
        if region is not None and chance is not None:
            note += f" (chance ln K {chance:.2f})"
        note = f"{note}, {seconds:.0f} s" if note else f"{seconds:.0f} s"
        planned = read.run_info.get("planned_steps")
        total = float(planned) if isinstance(planned, (int, float)) and planned > 0 else None
        self.board.update(name, step, total=total, note=note, force=force)
        if self.live:
            from fgdiag.render.dashboard import render_dashboard, snapshot_from

            self._frames[name] = render_dashboard(
                snapshot_from(read, status=f"{name}: training, {seconds:.0f} s")
            )
        self._redraw()

    def _redraw(self) -> None:
        if not self.terminal:
            return
        from rich.console import Console, Group
        from rich.live import Live

        frame = Group(self.board.renderable, *self._frames.values())
        if self._display is None:  # on stderr: stdout carries the results (and --json)
            self._display = Live(frame, refresh_per_second=2, transient=False, console=Console(stderr=True))
            self._display.start()
        else:
            self._display.update(frame)

    def stop(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None
        for follower, _ in self._runs.values():
            follower.close()
