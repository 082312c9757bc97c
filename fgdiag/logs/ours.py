"""`OursParser`: what fgdiag itself writes, our `[fgdiag] step N | ...` summary line (wire format in
`fgdiag.wire`) and `events.jsonl` records (schema in `fgdiag.events`), plus the seed's
`Loaded logit_scale`.

Records carry the id of the run that wrote them; one run is read at a time. `select` names the run to read
(records of other runs are skipped); by default the newest: when records of another run id follow, the
sink gets an EVENT_RUN_START marker in order with the rows and the session starts over from it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import msgspec

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.logs.sink import LogSink
from fgdiag.wire import parse_step_summary

Handler = Callable[[str], bool]
LOADED_SCALE_RE = re.compile(r"Loaded logit_scale = ([-+\w.]+)")


class OursParser:
    """Our summary line and JSONL records; both name their step."""

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.select: str | None = None  # read only this run id (None: the newest)
        self.run_id: str | None = None  # the run being read
        self.runs: list[str] = []  # run ids seen, in file order
        self.skipped = 0  # records of other runs (with `select`)

    def prefixes(self) -> dict[str, Handler]:
        table: dict[str, Handler] = {"[fgdiag] ste": self.summary}
        for kind in ("metrics", "event", "run", "finding"):
            table[f'{{"type": "{kind}'[:12]] = self.jsonl
        return table

    def tags(self) -> tuple[tuple[str, Handler], ...]:
        return (("[fgdiag] step ", self.summary),)

    def summary(self, line: str) -> bool:
        sink = self.sink
        try:
            parsed = parse_step_summary(line)
        except ValueError as exc:
            return sink.malformed("[fgdiag] summary", str(exc))
        if parsed is None:
            return sink.malformed("[fgdiag] step", line)
        sink.formats.add("fgdiag")
        sink.settle()
        sink.at(parsed[0])
        sink.announced = parsed[0]  # the Trainer's dict line printed next belongs to this step
        for name, value in parsed[1].items():
            sink.put(name, value)
        return True

    def jsonl(self, line: str) -> bool:
        sink = self.sink
        try:
            record = ev.decode_record(line)
        except ev.RecordError as exc:
            return sink.malformed("record", str(exc))
        if not self._same_run(record.run_id):
            return True
        try:
            return self._record(record)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            return sink.malformed(f"{type(record).__name__}", str(exc))

    def _same_run(self, run_id: str | None) -> bool:
        """Whether the record belongs to the run being read; starts the next run when it does not."""
        if run_id is not None and run_id not in self.runs:
            self.runs.append(run_id)
        if self.select is not None:
            if run_id != self.select:
                self.skipped += 1
                return False
            self.run_id = run_id
            return True
        if run_id is None or run_id == self.run_id:
            return True
        previous, self.run_id = self.run_id, run_id
        if previous is not None:
            sink = self.sink
            sink.close()  # the earlier run's last row goes out before the marker
            sink.event(ev.event_record(0, ev.EVENT_RUN_START, f"run {run_id}", {"run_id": run_id}))
            sink.max_step = sink.step = 0
            sink.bank_enabled = False
            sink.run_info.clear()
            sink.recorded_findings.clear()
        return True

    def _record(self, record: ev.Record) -> bool:
        sink = self.sink
        sink.formats.add("fgdiag-events")
        if isinstance(record, ev.MetricsRecord):
            metrics: dict[str, float | None] = record.metrics
            if None in metrics.values():  # null: not finite when listed in nonfinite, else absent
                nonfinite = set(record.nonfinite)
                metrics = {
                    k: math.nan if v is None else v
                    for k, v in metrics.items()
                    if v is not None or k in nonfinite
                }
            sink.settle()
            sink.at(record.step)
            sink.put_many(metrics)
            return True
        if isinstance(record, ev.RunRecord):
            sink.run_info.update(record.info)
            if record.run_id is not None:
                sink.run_info["run_id"] = record.run_id
            return True
        if isinstance(record, ev.EventRecord):
            step = sink.step if record.step is None else record.step
            if record.kind == ev.EVENT_MB_ENABLED:
                sink.bank_enabled = True
            sink.event(ev.event_record(step, record.kind, record.message, record.data))
            return True
        sink.recorded_findings.append(Finding.from_dict(msgspec.structs.asdict(record.finding)))
        return True

    def loaded_scale(self, line: str) -> bool:
        """The seed's `Loaded logit_scale = 4.6052`: the global scale of the loaded checkpoint."""
        m = LOADED_SCALE_RE.search(line)
        if m is None:
            return False
        try:
            raw = float(m.group(1))
        except ValueError:
            return self.sink.malformed("logit_scale", line)
        self.sink.add(ev.head_metric(ev.LOGIT_SCALE, "global"), raw)
        return True
