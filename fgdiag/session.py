"""A log being read and judged: the reader (fgdiag.logs) joined with the rules (fgdiag.rules.engine), above
both, with the accumulated rows, events and findings.

`watch` feeds it bytes as the file grows; `read_log` feeds it a whole file. Both get the same judgement:
rows reach the rules in batches (what one chunk of bytes produced), and the findings do not depend on where
the chunks end. Memory is bounded: rows are kept for reports in a `RowStore` (thinned beyond its cap), point
events up to MAX_EVENTS. The pandas frame is built only when `LogRead.metrics` is first touched, so
`watch --json` never imports pandas.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding, Severity
from fgdiag.logs import hf, state_json
from fgdiag.logs.follow import regular_file
from fgdiag.logs.reader import LogReader
from fgdiag.logs.sink import ColumnRun, column_rows
from fgdiag.logs.store import RowStore
from fgdiag.rules.engine import RuleEngine, RuleParams

CHUNK = 1 << 22
# point events kept (a 1 GB log may repeat "queue full" millions of times); counted beyond
MAX_EVENTS = 10_000
END_KINDS = frozenset((ev.EVENT_TRAIN_END, ev.EVENT_CRASH, ev.EVENT_OOM))  # the run is over
GC_YOUNG = 50_000  # allocations between young collections while a chunk is read (Python's default: 700)


@contextmanager
def few_collections() -> Iterator[None]:
    """Reading a chunk allocates rows by the thousand and most of them live on (row store, series): with the
    collector's default young threshold they are rescanned again and again, up to full collections over every
    stored row (~20 % of reading a 1M-line log). The threshold is raised while a chunk is read and restored
    after; cycles are still collected, only less often."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_YOUNG), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


class LogReadError(OSError):
    """The input cannot be read at all (missing, a directory without logs, not readable)."""


@dataclass
class LogRead:
    """Everything read from one log. `rows` maps step -> metrics; `metrics` is the same as a DataFrame."""

    path: str
    rows: dict[int, dict[str, float | None]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    not_judged: list[dict[str, str]] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)
    formats: list[str] = field(default_factory=list)
    lines: int = 0
    unparsed: int = 0
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    targets: Any = None
    target_results: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[str, float] = field(default_factory=dict)  # last value of every metric (None-free)
    notes: list[str] = field(default_factory=list)
    step_count: int = 0  # logging steps read (rows may hold fewer: a long log's older rows are thinned)
    recoveries: list[dict[str, Any]] = field(default_factory=list)  # crashes the log trained on after
    _frame: Any = None

    @property
    def metrics(self) -> Any:
        """pandas DataFrame indexed by step (sorted), one column per metric name; NaN where absent."""
        if self._frame is None:
            import pandas as pd

            steps = sorted(self.rows)
            frame = pd.DataFrame.from_records([self.rows[s] for s in steps], index=steps)
            frame.index.name = "step"
            self._frame = frame.astype("float64") if len(frame.columns) else frame
        return self._frame

    @property
    def steps(self) -> list[int]:
        return sorted(self.rows)

    @property
    def last_step(self) -> int | None:
        return max(self.rows) if self.rows else None

    def series(self, name: str) -> list[tuple[int, float]]:
        """(step, value) of one metric, in step order, without gaps."""
        out = []
        for step in sorted(self.rows):
            value = self.rows[step].get(name)
            if value is not None:
                out.append((step, value))
        return out

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


class LogSession:
    """Incremental reading + judging. `feed`/`flush` return the findings that are new."""

    def __init__(
        self,
        path: str = "",
        *,
        run_info: Mapping[str, Any] | None = None,
        targets: Any = None,
        candidates: float | None = None,
        logging_steps: int | None = None,
        params: RuleParams | None = None,
        run_id: str | None = None,
    ):
        self.path = path
        self.params = params
        self.user_info = dict(run_info or {})
        if candidates is not None:
            self.user_info["candidates"] = candidates
        if logging_steps is not None:
            self.user_info["logging_steps"] = logging_steps
        self.reader = LogReader(logging_steps=logging_steps, source=path)
        self.reader.ours.select = run_id  # events.jsonl: one run id at a time (default: the newest)
        self.engine = RuleEngine(self.user_info, targets, params)
        self.targets = targets
        self.store = RowStore()
        self.events: list[dict[str, Any]] = []
        self.events_dropped = 0
        self.ended = False  # the log showed the end of training, a crash or an out-of-memory
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, int | None, str]] = set()
        self._recorded: set[tuple[str, int | None]] = set()  # (code, step) of findings an events.jsonl holds
        self._recorded_ids: set[int] = set()  # those findings (kept alive by self.findings)
        self.row_updates = 0

    @property
    def rows(self) -> dict[int, dict[str, float | None]]:
        """Rows by step (bounded; see RowStore)."""
        return self.store.rows

    def run_info(self) -> dict[str, Any]:
        return {**self.reader.run_info, **self.user_info}

    def feed(self, data: bytes) -> list[Finding]:
        with few_collections():
            self.reader.feed(data)
            return self._pump()

    def flush(self, final: bool = False) -> list[Finding]:
        with few_collections():
            self.reader.flush(final)
            new = self._pump()
            if final:
                new += self._add(self.engine.finish())
            return new

    def reset_partial(self) -> None:
        """The file was truncated or replaced: drop a half-read line (rows already read stay)."""
        self.reader.reset_partial()

    def feed_rows(
        self,
        rows: Iterable[tuple[int, dict[str, float | None]]],
        info: Mapping[str, Any] | None = None,
        end: Mapping[str, float] | None = None,
    ) -> list[Finding]:
        """Rows that come with their steps (trainer_state.json)."""
        if info:
            self.reader.run_info.update(info)
        self.engine.update_info(self.run_info())
        new = self._judge([("row", row) for row in rows])
        if end is not None:
            self._event(
                ev.event_record(
                    max(self.store.rows, default=0), ev.EVENT_TRAIN_END, "training finished", dict(end)
                )
            )
        return new

    def _pump(self) -> list[Finding]:
        out = self.reader.drain_ordered(columns=True)
        if not out and not self.reader.recorded_findings:
            return []
        self.engine.update_info(self.run_info())
        new: list[Finding] = []
        if self.reader.recorded_findings:  # the run being read's (the reader drops an earlier run's)
            recorded = list(self.reader.recorded_findings)
            self._recorded.update((f.code, f.step) for f in recorded)
            new += self._add(recorded, recorded=True)
            self.reader.recorded_findings.clear()
        return new + self._judge(out)

    def _judge(self, out: list[tuple[str, Any]]) -> list[Finding]:
        """Store rows (merging a step seen again) and judge them a run of rows at a time, events between;
        a run of Trainer or fork steps read as columns is stored and judged as columns."""
        new: list[Finding] = []
        kinds = list(map(itemgetter(0), out))
        rows = kinds.count("row")
        marks = [*compress(range(len(kinds)), map(ne, kinds, repeat("row")))] if rows < len(kinds) else []
        start = 0
        for mark in [*marks, len(out)]:  # the rows up to a record of another kind, then that record
            item: Any
            kind, item = out[mark] if mark < len(out) else ("", {})
            if kind == "event" and item["kind"] == ev.EVENT_RUN_START:
                new.clear()  # records of a newer run follow: judge that one alone
                self._restart()
                start = mark + 1
                continue
            if mark > start:
                run = list(map(itemgetter(1), out[start:mark]))
                new += self._add(self.engine.observe_rows(*self.store.add_rows(run)))
            if kind == "columns":
                new += self._add(self._columns(item))
                self.row_updates += len(item[0])
            elif kind == "event":
                self._event(item)
                new += self._add(self.engine.event(item["step"], item["kind"], item.get("data")))
            start = mark + 1
        self.row_updates += rows
        return new

    def _columns(self, run: ColumnRun) -> list[Finding]:
        """Rows given as columns: stored and judged as such, unless a step is stored already (then as rows,
        merged)."""
        if self.store.add_columns(*run):
            return self.engine.observe_columns(*run)
        rows = list(zip(run.steps, column_rows(*run[1:]), strict=True))
        return self.engine.observe_rows(*self.store.add_rows(rows))

    def _restart(self) -> None:
        """Forget what was read and judged of an earlier run in the same file."""
        self.store = RowStore()
        self.engine = RuleEngine(self.user_info, self.targets, self.params)
        self.engine.update_info(self.run_info())  # the new run's record was read with its rows
        self.events, self.events_dropped, self.ended = [], 0, False
        self.findings, self._seen = [], set()

    def run_notes(self) -> list[str]:
        """What the reader did with run ids: which run was judged when the file holds several."""
        ours = self.reader.ours
        if ours.select is not None and ours.select not in ours.runs:
            known = ", ".join(ours.runs) or "none"
            return [f"run id {ours.select} not found in this file (run ids here: {known})"]
        if len(ours.runs) > 1:
            chosen = ours.select or ours.run_id
            how = "as asked" if ours.select else "the newest; pass a run id to judge another"
            return [f"{len(ours.runs)} runs in this file ({', '.join(ours.runs)}): judged {chosen} ({how})"]
        return []

    def _event(self, record: dict[str, Any]) -> None:
        if record.get("kind") in END_KINDS:
            self.ended = True
        if len(self.events) < MAX_EVENTS:
            self.events.append(record)
        else:
            self.events_dropped += 1

    def _add(self, findings: list[Finding], *, recorded: bool = False) -> list[Finding]:
        """Keep the findings not seen before; a finding the rules make again at a code and step an
        events.jsonl already reported is the same one (the run's callback said it in its own words)."""
        if not findings:
            return []
        if recorded:  # one the rules made before this record arrived (a chunk boundary between them) goes
            keys = {(f.code, f.step) for f in findings}
            self.findings = [
                f for f in self.findings if (f.code, f.step) not in keys or id(f) in self._recorded_ids
            ]
        fresh = []
        for f in findings:
            key = (f.code, f.step, f.message)
            if not recorded and (f.code, f.step) in self._recorded:
                continue
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(f)
        self.findings.extend(fresh)
        if recorded:
            self._recorded_ids.update(id(f) for f in fresh)
        return fresh

    def result(self) -> LogRead:
        r = self.reader
        return LogRead(
            path=self.path,
            rows=dict(sorted(self.store.rows.items())),
            events=list(self.events),
            findings=list(self.findings),
            not_judged=self.engine.not_judged(),
            run_info=self.run_info(),
            formats=sorted(r.formats),
            lines=r.lines,
            unparsed=r.unparsed,
            malformed=list(r.malformed),
            targets=self.targets,
            target_results=list(self.engine.target_results),
            latest=dict(self.store.latest),
            notes=list(r.notes)
            + self.run_notes()
            + ([f"{self.events_dropped} more point events not kept"] if self.events_dropped else [])
            + (
                [f"{self.store.thinned} older rows thinned for the report (kept: {len(self.store.rows)})"]
                if self.store.thinned
                else []
            ),
            step_count=self.store.count,
            recoveries=list(self.engine.recoveries),
        )


def resolve(path: str | Path) -> Path:
    """A file, or a run directory: its (fgdiag/)events.jsonl, else the newest checkpoint's
    trainer_state.json."""
    p = Path(path)
    if p.is_dir():
        for name in ("events.jsonl", "fgdiag/events.jsonl", "trainer_state.json"):
            if (p / name).is_file():
                return p / name
        states = sorted(
            p.glob("checkpoint-*/trainer_state.json"),
            key=lambda q: int(q.parent.name.split("-")[-1]) if q.parent.name.split("-")[-1].isdigit() else -1,
        )
        if states:
            return states[-1]
        raise LogReadError(
            f"{p}: a directory without events.jsonl, fgdiag/events.jsonl or checkpoint-*/trainer_state.json"
        )
    if not p.exists():
        raise LogReadError(f"{p}: no such file")
    if not regular_file(p):
        raise LogReadError(f"{p}: not a regular file (a FIFO, a device or a socket): a log must be a file")
    return p


def _trainer_state(session: LogSession, path: Path) -> bool:
    """Read a trainer_state.json whole; False when the file is not one (then it is read as a log)."""
    if path.stat().st_size > 64 << 20:  # a bigger one is read as lines: memory stays bounded
        return False
    loaded = state_json.load(path.read_text(encoding="utf-8", errors="replace"))
    if loaded is None:
        return False
    data, cut = loaded
    info, rows, end = hf.read_trainer_state(data)
    session.reader.formats.add("trainer_state")
    if cut:
        session.reader.notes.append(
            f"{path.name} is cut short (not valid JSON): read the {len(data['log_history'])} log_history "
            "entries before the cut"
        )
    session.feed_rows(rows, info, end)
    return True


def read_log(
    path: str | Path,
    *,
    run_info: Mapping[str, Any] | None = None,
    targets: Any = None,
    candidates: float | None = None,
    logging_steps: int | None = None,
    params: RuleParams | None = None,
    run_id: str | None = None,
) -> LogRead:
    """Read and judge a whole log (any supported format, a trainer_state.json, events.jsonl or a run dir).

    targets: a TargetProfile, or a profile name/path (see fgdiag.targets). run_id: the run to judge in an
    events file holding several (default: the newest). Raises LogReadError when the input cannot be read;
    lines that cannot be parsed are counted, never raised.
    """
    if isinstance(targets, (str, Path)):
        from fgdiag.targets import get_profile

        targets = get_profile(targets)
    p = resolve(path)
    session = LogSession(
        str(p),
        run_info=run_info,
        targets=targets,
        candidates=candidates,
        logging_steps=logging_steps,
        params=params,
        run_id=run_id,
    )
    try:
        if p.name.endswith(".json") and _trainer_state(session, p):
            session.flush(final=True)
            return session.result()
        with p.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                session.feed(chunk)
    except OSError as exc:
        raise LogReadError(f"{p}: cannot read: {exc.strerror or exc}") from None
    session.flush(final=True)
    return session.result()
