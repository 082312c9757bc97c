"""`LogSink`: where every format parser writes what it read, and the one place that turns it into rows.

Parsers own their own state (an open fgclip-vad forward group, the Trainer's bar position ...) and talk to the
sink only through its public methods: `at(step)` moves to a step, `add` averages a value over the step's
micro-batches, `put` sets an authoritative value (a dict line, a JSONL record), `keep_last` keeps a state-like
value (a pointer, a scale, the learning rate), `event` records a point event, and `malformed` reports a line
that carried its tag but not its fields. A parser that holds values not yet attributed to a step registers a
closer with `on_settle` (run before a line names a new step) or a folder with `defer` (run before the step's
row is read). Rows and events come out with `drain`, in log order.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any, NamedTuple

from fgdiag import events as ev
from fgdiag.diagnostic import Finding

MAX_MALFORMED = 20
Row = dict[str, float | None]
Extra = tuple[list[int], tuple[str, ...], list[list[float]]]  # row positions, the rows' names, a column each


class ColumnRun(NamedTuple):
    """Rows given as columns (a ("columns", ColumnRun) record): every row holds `names`, a list of values per
    name in `cols`. `extra`: rows that hold more (the fork's [DIAG] steps), per layout their positions, their
    names in their order and a column per name (the shared names' values are in `cols` too)."""

    steps: list[int]
    names: tuple[str, ...]
    cols: list[list[float]]
    extra: tuple[Extra, ...] = ()


class LogSink:
    """Rows by optimizer step, point events, and what the parsers learned about the log."""

    def __init__(self) -> None:
        self.step = 0  # the step new values belong to
        self.max_step = 0
        self.lineno = 0  # line being parsed (1-based), for messages
        self.announced: int | None = None  # step of our last `[fgdiag] step N` line (a dict line follows it)
        self.bank_enabled = False  # the log said the memory bank is on (any format)
        self.formats: set[str] = set()
        self.run_info: dict[str, Any] = {}
        self.notes: list[str] = []  # caveats about this log's reading, shown with the summary
        self.malformed_lines: list[tuple[int, str, str]] = []
        self.malformed_count = 0
        self.unparsed = 0  # lines not recognised, or recognised by their tag but not read
        self.recorded_findings: list[Finding] = []  # findings a JSONL log already holds
        self._row_step: int | None = None
        self._sum: dict[str, float] = {}
        self._cnt: dict[str, int] = {}
        self._set: Row = {}
        self._last: dict[str, float] = {}
        self._deferred: list[Callable[[], None]] = []
        self._closers: list[Callable[[], None]] = []
        self._out: list[tuple[str, Any]] = []

    # --- parsers write -----------------------------------------------------------------------------------
    def at(self, step: int) -> None:
        """Values from now on belong to `step`; a step going back is a resumed or restarted run."""
        if step != self._row_step:
            self._emit_row()
            self._row_step = step
        if step < self.max_step - 1:
            self.event(
                ev.event_record(
                    step,
                    ev.EVENT_RESUME,
                    f"step went back from {self.max_step} to {step} (resumed or restarted run)",
                    {"from": self.max_step},
                )
            )
            self.max_step = step
        self.step = step
        if step > self.max_step:
            self.max_step = step

    def add(self, name: str, value: float) -> None:
        """A value seen once per micro-batch: the step's row holds the mean."""
        if self._row_step is None:
            self._row_step = self.step
        s = self._sum
        if name in s:
            s[name] += value
            self._cnt[name] += 1
        else:
            s[name] = value
            self._cnt[name] = 1

    def add_all(self, values: dict[str, float]) -> None:
        """`add` for each item."""
        if self._row_step is None:
            self._row_step = self.step
        s, c = self._sum, self._cnt
        for name, value in values.items():
            if name in s:
                s[name] += value
                c[name] += 1
            else:
                s[name] = value
                c[name] = 1

    def add_sums(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        """Many `add`s at once: per name the sum of the values and how many there were."""
        if self._row_step is None:
            self._row_step = self.step
        s, c = self._sum, self._cnt
        if not s:
            self._sum, self._cnt = dict(sums), dict(counts)
            return
        for name, value in sums.items():
            if name in s:
                s[name] += value
                c[name] += counts[name]
            else:
                s[name] = value
                c[name] = counts[name]

    def put(self, name: str, value: float | None) -> None:
        """An authoritative value (it wins over averages): a dict line, a JSONL record, our summary line."""
        if self._row_step is None:
            self._row_step = self.step
        self._set[name] = value

    def put_many(self, values: dict[str, float | None]) -> None:
        """Several `put`s at once."""
        if self._row_step is None:
            self._row_step = self.step
        self._set.update(values)

    def put_columns(self, steps: list[int], names: tuple[str, ...], cols: list[list[float]]) -> None:
        """`at(step)` + `put_many(row)` for each row of `cols` (a column of values per name), in bulk: steps
        rise past the current one, no event is due (the caller checked `pure_put_row`). The open row is
        published; the rows before the last go out as one ("columns", ColumnRun) record (no dict
        per row: `drain` readers expand it, the session judges it as columns); the last stays open."""
        self._emit_row()
        if len(steps) > 1:
            self._out.append(("columns", ColumnRun(steps[:-1], names, [col[:-1] for col in cols])))
        self._row_step = self.step = self.max_step = steps[-1]
        self._set = dict(zip(names, [col[-1] for col in cols], strict=True))

    def summed(
        self, records: list[tuple[str, Any]], step: int, sums: dict[str, float], last: dict[str, float]
    ) -> None:
        """Steps in bulk: `records` ("row" and "columns" records, each value added once: its mean is itself)
        published, then `step` open with the values `sums` (as `add_all`) and `last` (as `keep_all`). Steps
        rise past the current one, no event is due."""
        self._emit_row()
        self._out += records
        self._row_step = self.step = self.max_step = step
        self._sum, self._cnt, self._last = sums, dict.fromkeys(sums, 1), last

    def open_step(self) -> int | None:
        """The step of the row being filled (None: no row is open)."""
        return self._row_step

    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def pure_put_row(self) -> bool:
        """The open row is the current step's and holds only `put` values (nothing averaged or deferred)."""
        return (
            self._row_step == self.step
            and not self._sum
            and not self._last
            and not self._deferred
            and bool(self._set)
        )

    def keep_last(self, name: str, value: float) -> None:
        """A state-like value (pointer, fill, scale, learning rate): the step keeps the last one."""
        if self._row_step is None:
            self._row_step = self.step
        self._last[name] = value

    def keep_all(self, values: dict[str, float]) -> None:
        """`keep_last` for each item."""
        if self._row_step is None:
            self._row_step = self.step
        self._last.update(values)

    def event(self, record: dict[str, Any]) -> None:
        self._out.append(("event", record))

    def crash(self, kind: str, message: str) -> None:
        self.event(ev.event_record(self.step, kind, message, {"line": self.lineno, "message": message}))

    def malformed(self, field: str, detail: str) -> bool:
        """A line with a known tag whose field did not parse: counted, the first few kept. Returns False."""
        self.malformed_count += 1
        if len(self.malformed_lines) < MAX_MALFORMED:
            self.malformed_lines.append((self.lineno, field, detail[:120]))
        return False

    def defer(self, fold: Callable[[], None]) -> None:
        """`fold()` adds values held back by a parser; it runs before the current step's row is read."""
        if self._row_step is None:
            self._row_step = self.step
        if not self._deferred or self._deferred[-1] != fold:
            self._deferred.append(fold)

    def fold_deferred(self) -> None:
        """Run the pending folds now (a parser about to add values that must come after them)."""
        while self._deferred:
            self._deferred.pop(0)()

    def on_settle(self, closer: Callable[[], None]) -> None:
        """`closer()` attributes a parser's open group to a step; it runs on `settle()`."""
        self._closers.append(closer)

    def settle(self) -> None:
        """A line is about to name its own step: parsers close what they hold open."""
        for closer in self._closers:
            closer()

    # --- the reader reads ----------------------------------------------------------------------------------
    def provisional(self) -> None:
        """Publish a copy of the current step's row (watch at the end of the file); it may still grow."""
        if self._row_step is not None:
            self._out.append(("row", (self._row_step, self._row())))

    def close(self) -> None:
        """The input ended: every parser closes its group and the last row is published."""
        self.settle()
        self._emit_row()

    def drain(self) -> list[tuple[str, Any]]:
        """("row", (step, metrics)), ("columns", ColumnRun) and ("event", record) produced since
        the last drain, in log order."""
        out, self._out = self._out, []
        return out

    def _row(self) -> Row:
        self.fold_deferred()
        if not self._sum and not self._last:
            return dict(self._set)  # a dict line or a JSONL record: nothing averaged
        cnt = self._cnt
        row: Row = {k: v / cnt[k] for k, v in self._sum.items()}
        row.update(self._last)
        row.update(self._set)
        return row

    def _emit_row(self) -> None:
        if self._row_step is not None and (self._sum or self._set or self._last or self._deferred):
            if not self._sum and not self._last and not self._deferred:
                row, self._set = self._set, {}  # the row is the dict of puts itself: no copy
                self._out.append(("row", (self._row_step, row)))
            else:
                self._out.append(("row", (self._row_step, self._row())))
        self._sum, self._cnt, self._set, self._last = {}, {}, {}, {}
        self._row_step = None


def expand(out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A drain's records with each ("columns", ColumnRun) record as its ("row", (step, metrics)) records."""
    if not any(kind == "columns" for kind, _ in out):
        return out
    rows: list[tuple[str, Any]] = []
    for kind, item in out:
        if kind != "columns":
            rows.append((kind, item))
            continue
        steps, names, cols, extra = item
        rows += zip(repeat("row"), zip(steps, column_rows(names, cols, extra), strict=True))
    return rows


def column_rows(names: tuple[str, ...], cols: list[list[float]], extra: tuple[Extra, ...] = ()) -> list[Row]:
    """The rows of a ("columns", ColumnRun) record: a dict per row, keys in the order of its names."""
    rows: list[Row] = list(map(dict, map(zip, repeat(names), zip(*cols, strict=True))))
    for idx, layout, ecols in extra:
        for i, values in zip(idx, zip(*ecols, strict=True), strict=True):
            rows[i] = dict(zip(layout, values, strict=True))
    return rows


def split_rows(out: list[tuple[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """An expanded drain as (rows, events)."""
    return [x for kind, x in out if kind == "row"], [x for kind, x in out if kind == "event"]
