"""Progress of long work (each training run of `fgdiag run`, report rendering, a large file): rich bars on a
terminal, plain lines elsewhere (piped, CI, NO_COLOR, TERM=dumb).

One `ProgressBoard` holds named tasks. On a terminal its `renderable` is a rich Progress, started on its own
or placed inside a caller's Live display (fgdiag run shows it above its dashboards); in plain mode `update`
prints `<label>: <done>/<total> <note>` at most every `every` seconds per task, never the same count twice,
and always the last one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fgdiag.render.terminal import plain_output


@dataclass
class _Task:
    label: str
    total: float | None
    done: float = 0.0
    printed: float | None = None  # count of the last plain line
    printed_at: float = -float("inf")
    rich_id: Any = None
    unit: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ProgressBoard:
    """Named tasks with a total; bars on a terminal, plain lines otherwise."""

    def __init__(
        self,
        *,
        bars: bool | None = None,
        echo: Callable[[str], None] | None = None,
        every: float = 10.0,
        console: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bars = (not plain_output(sys.stderr)) if bars is None else bars
        self.echo = echo or _stderr_line
        self.every = every
        self.clock = clock
        self.tasks: dict[str, _Task] = {}
        self._progress: Any = None
        self._console = console
        self._started = False

    @property
    def renderable(self) -> Any:
        """The rich Progress (bars mode), to show inside another Live display; None in plain mode."""
        if not self.bars:
            return None
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            kwargs = {"console": self._console} if self._console is not None else {}
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}", markup=False),
                **kwargs,
            )
        return self._progress

    def add(self, name: str, label: str, total: float | None, unit: str = "") -> None:
        task = _Task(label, total, unit=unit)
        self.tasks[name] = task
        if self.bars:
            task.rich_id = self.renderable.add_task(label, total=total, note="")

    def update(
        self, name: str, done: float, *, total: float | None = None, note: str = "", force: bool = False
    ) -> None:
        """Set a task's count (and total, when it becomes known); plain mode prints on its cadence (or now,
        with `force`), never the same count twice."""
        task = self.tasks[name]
        task.done = done
        if total is not None:
            task.total = total
        if self.bars:
            self.renderable.update(task.rich_id, completed=done, total=task.total, note=note)
            return
        now = self.clock()
        final = force or (task.total is not None and done >= task.total)
        if task.printed == done or (now - task.printed_at < self.every and not final):
            return
        task.printed, task.printed_at = done, now
        count = f"{done:g}/{task.total:g}" if task.total is not None else f"{done:g}"
        unit = f"{task.unit} " if task.unit else ""
        self.echo(f"{task.label}: {unit}{count}" + (f", {note}" if note else ""))

    def start(self) -> None:
        """Show the bars on their own (not inside another Live display)."""
        if self.bars and not self._started:
            self.renderable.start()
            self._started = True

    def stop(self) -> None:
        if self._started and self._progress is not None:
            self._progress.stop()
            self._started = False


def report_progress(board: ProgressBoard | None, name: str = "report") -> Callable[[int, int, str], None]:
    """A `(done, total, what)` callback for write_report that updates `board`'s task `name`."""

    def step(done: int, total: int, what: str) -> None:
        if board is None:
            return
        if name not in board.tasks:
            board.add(name, "rendering the report", total, unit="panel")
        board.update(name, done, total=total, note=what)

    return step
