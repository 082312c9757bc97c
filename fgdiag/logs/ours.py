"""`OursParser`: what fgdiag itself writes, our `[fgdiag] step N | ...` summary line (wire format in
`fgdiag.wire`) and `events.jsonl` records (schema in `fgdiag.events`), plus the seed's
`Loaded logit_scale`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

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
            record = json.loads(line)
        except (ValueError, RecursionError):
            return sink.malformed("JSON", line)
        if not isinstance(record, dict):
            return sink.malformed("record", line)
        try:
            return self._record(record)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            return sink.malformed(f"{record.get('type')} record", str(exc))

    def _record(self, record: dict[str, Any]) -> bool:
        sink, kind = self.sink, record.get("type")
        sink.formats.add("fgdiag-events")
        if kind == "metrics":
            metrics = record.get("metrics")
            if not isinstance(metrics, dict):
                return sink.malformed("metrics", "metrics record without a metrics object")
            nonfinite = set(record.get("nonfinite") or ())
            sink.settle()
            sink.at(int(record["step"]))
            for name, value in metrics.items():
                if value is None:
                    if name in nonfinite:
                        sink.put(name, math.nan)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    sink.put(str(name), float(value))
            return True
        if kind == "run":
            info = record.get("info")
            if isinstance(info, dict):
                sink.run_info.update(info)
            return True
        if kind == "event":
            step = int(record.get("step", sink.step))
            data = record.get("data") if isinstance(record.get("data"), dict) else {}
            if record.get("kind") == ev.EVENT_MB_ENABLED:
                sink.bank_enabled = True
            sink.event(
                ev.event_record(step, str(record.get("kind", "event")), str(record.get("message", "")), data)
            )
            return True
        if kind == "finding":
            sink.recorded_findings.append(Finding.from_dict(record["finding"]))
            return True
        return sink.malformed("type", f"unknown record type {kind!r}")

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
