"""The streaming log reader: bytes in, metric rows by optimizer step and point events out.

Formats are detected per line, so one file may mix them (HF Trainer dicts, tqdm bars, fgclip-vad blocks,
our lines and JSONL events). A line is `\\n`-terminated; `\\r` also ends a segment (tqdm redraws). Lines from
a non-primary rank (`[rank1]:`) or host (`10.0.0.2:`) are dropped for metrics, except crashes.

Each format is a parser object (`HfParser`, `VadParser` + `VadGroups`, `OpenClipParser`, `OursParser`) that
holds its own state and writes into one `LogSink`; this class splits lines and dispatches them (a dict keyed
by a line's first 12 characters for frequent lines, else prefix stripping, bars, substrings, regexes). Fork
forward groups are read a match each (`VadGroups`), Trainer steps (`HfRuns`, on undecoded bytes when a
buffer is one run) and fork optimizer steps (`VadSteps`) a run at a time; each gives the rows of the line
path (tests compare them). Lines over MAX_LINE are not parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fgdiag.diagnostic import Finding
from fgdiag.logs import crash, hf
from fgdiag.logs.generic import GenericParser
from fgdiag.logs.hf import HfParser
from fgdiag.logs.hf_runs import HfRuns, as_text
from fgdiag.logs.openclip import OpenClipParser
from fgdiag.logs.ours import OursParser
from fgdiag.logs.sink import LogSink, expand, split_rows
from fgdiag.logs.unit_runs import unit_runs
from fgdiag.logs.vad_groups import MARKER, VadGroups
from fgdiag.logs.vad_lines import VadParser
from fgdiag.logs.vad_steps import VadSteps

MAX_LINE = 1 << 20  # longer lines are counted unparsed without a look
FORMATS_TRIED = (  # what a log that yields nothing was read as (the message of `watch` exit 2 lists them)
    "fgdiag events.jsonl and [fgdiag] step lines",
    "transformers Trainer dict lines, tqdm bars and trainer_state.json (also cut short)",
    "the fgclip-vad fork ([DIAG] blocks, [LOSS], [ACCUMULATED], [Epoch][Step][Batch], batch_losses.log)",
    "open_clip (Train Epoch: ... Loss:)",
    "DeepSpeed (step=N, skipped=S; OVERFLOW! ... Skipping step)",
    "generic metric lines (name: value, name=value, | name value | columns, Name value (avg) meters)",
    "tracebacks, CUDA out-of-memory and kill messages",
)
RANK_RE = re.compile(r"\[rank(\d+)\]:\s?")
HOST_RE = re.compile(r"((?:\d{1,3}\.){3}\d{1,3}|[A-Za-z][\w-]*\d(?:\.[\w-]+)*): ")
Handler = Callable[[str], bool]
MAX_UNKNOWN = 4096
# a line holding one of these may reach a handler that counts it malformed or changes state even when the
# line is not read: such lines are never remembered as unknown
STATEFUL_MARKS = ("[", "{", "\r", "ogit", "Epoch", "Train", "Traceback", "memory", "Killed")
UNKNOWN_LEN = 400  # only short lines are remembered
FOREIGN = (MARKER.encode(), b"[MB-FORWARD]")  # fork text: a buffer holding one is read as text
HEAD = 1 << 16  # a buffer's first characters go line by line while the Trainer's layout is not known yet
Rows = list[tuple[int, dict[str, float | None]]]


class LogReader:
    """Feed bytes (`feed`), then `flush`; take rows and events with `drain`. Counters say how much was
    read."""

    def __init__(self, *, logging_steps: int | None = None, source: str = "", fast: bool = True):
        self.source = source
        self.fast = fast  # whole-group fast path for fgclip-vad blocks (same rows as the per-line path)
        self.sink = sink = LogSink()
        self.hf = HfParser(sink, logging_steps)
        self.runs = HfRuns(self.hf, sink)
        self.vad = VadParser(sink)
        self.groups = VadGroups(sink, self.vad)
        self.steps = VadSteps(self.hf, self.vad, sink)
        self.openclip = OpenClipParser(sink)
        self.ours = OursParser(sink)
        self.generic = GenericParser(sink)
        self.lines = 0
        self.blank = 0
        self._tb: crash.Traceback | None = None
        self._rank: int | None = None
        self._host: str | None = None
        self._pending = b""
        self._skip_to_newline = False
        self._unknown: set[str] = set()  # lines the slow path did not recognise and that touch no state
        self._fast: dict[str, Handler] = {**self.vad.prefixes(), **self.ours.prefixes()}
        for ch in "=-*#~":
            self._fast[ch * 12] = self._decoration
        self._tags = self.vad.tags() + self.ours.tags()

    # --- what was read -------------------------------------------------------------------------------------
    @property
    def logging_steps(self) -> int | None:
        return self.hf.logging_steps

    @property
    def unparsed(self) -> int:
        return self.sink.unparsed

    @property
    def formats(self) -> set[str]:
        return self.sink.formats

    @property
    def run_info(self) -> dict[str, Any]:
        return self.sink.run_info

    @property
    def notes(self) -> list[str]:
        return self.sink.notes

    @property
    def malformed(self) -> list[tuple[int, str, str]]:
        return self.sink.malformed_lines

    @property
    def recorded_findings(self) -> list[Finding]:
        return self.sink.recorded_findings

    # --- input ------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume bytes; a trailing partial line waits for its newline (or `flush(final=True)`)."""
        if self._skip_to_newline:
            cut = data.find(b"\n")
            if cut < 0:
                return
            data, self._skip_to_newline = data[cut + 1 :], False
        start = 0  # where the unread lines of `buf` start
        if self._pending and (start := data.find(b"\n") + 1):
            # the line the last chunk left open is completed on its own: the rest is read in place (a copy
            # of a 4 MiB chunk costs as much as reading a tenth of it)
            head, self._pending = self._pending + data[:start], b""
            self.feed(head)
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n")
        if cut < start:
            self._pending = buf[start:]
            if len(self._pending) > MAX_LINE:
                self._pending, self._skip_to_newline = b"", True
                self.lines += 1
                self.sink.unparsed += 1
            return
        self._pending = buf[cut + 1 :]
        pattern = self.runs.pattern() if self.fast and b"\r" in buf else None
        if pattern is not None and self.runs.refused and any(m in buf for m in FOREIGN):
            pattern = None  # the last buffer was refused and this one holds fork text: `split` refuses it
        if pattern is not None and self._whole(pattern, memoryview(buf)[start : cut + 1]):
            return  # Trainer units read undecoded
        self.feed_text(str(memoryview(buf)[start:cut], "utf-8", "replace"))

    def reset_partial(self) -> None:
        """The file was truncated or replaced: drop a half-read line."""
        self._pending = b""
        self._skip_to_newline = False

    def feed_text(self, text: str) -> None:
        """Consume complete lines of text (no trailing partial line)."""
        if not self.fast:
            self._lines(text.split("\n"))
            return
        pos = 0
        groups = self.groups
        for m in groups.finditer(text):
            start, end = m.span()
            if start and text[start - 1] != "\n":
                continue
            if start > pos:
                self._plain(text[pos : start - 1])
            ends = text[end - 1] == "\n"
            n_lines = text.count("\n", start, end) + (0 if ends else 1)
            self.sink.lineno = self.lines + n_lines  # a prefix (a tqdm bar) is on the group's last line
            if self._tb is not None or not groups.apply(m, self._slow):
                self._lines(text[start : end - 1 if ends else end].split("\n"))
            else:
                self.lines += n_lines
                self.sink.lineno = self.lines
            pos = end
        if pos == 0:
            self._plain(text)
        elif pos < len(text):
            self._plain(text[pos:])
        elif text.endswith("\n"):
            self._lines([""])

    def flush(self, final: bool = False) -> None:
        """Make pending data visible. final: the input ended (parse the partial line, close every group);
        otherwise only a provisional copy of the current step's row is published (watch calls this at EOF)."""
        if not final:
            self.sink.provisional()
            return
        if self._pending:
            tail, self._pending = self._pending, b""
            self._lines([tail.decode("utf-8", "replace")])
        if self._tb is not None:
            self.sink.crash("crash", "traceback without a closing exception line (log cut)")
            self._tb = None
        self.sink.close()

    def drain(self) -> tuple[Rows, list[dict[str, Any]]]:
        """Rows and events produced since the last drain (two lists; see drain_ordered for log order)."""
        return split_rows(self.drain_ordered())

    def drain_ordered(self, columns: bool = False) -> list[tuple[str, Any]]:
        """("row", (step, metrics)) and ("event", record) in the order the log produced them, so a rule sees
        an event (the bank switching on) between the rows before and after it; `columns`: runs of Trainer
        and fork steps stay ("columns", ColumnRun) records."""
        out = self.sink.drain()
        return out if columns else expand(out)

    # --- runs of repeated units (HfRuns, VadSteps) ----------------------------------------------------------
    def _plain(self, text: str) -> None:
        """Complete lines (joined by newlines, none trailing): runs of units that repeat (the Trainer's steps:
        `HfRuns`, the fork's: `VadSteps`) in bulk, every other line through `_lines`."""
        bulk: HfRuns | VadSteps = self.steps if "[MB-FORWARD]" in text else self.runs
        pattern = bulk.pattern() if "\r" in text else None
        if pattern is None:
            cut = text.find("\n", HEAD) if self.hf.bar_total is None and "\r" in text else -1
            if cut < 0:
                self._lines(text.split("\n"))
                return
            self._lines(text[:cut].split("\n"))  # the layout and the bar are learned here, or never
            text = text[cut + 1 :]
            pattern = bulk.pattern()
            if pattern is None:
                self._lines(text.split("\n"))
                return
        text += "\n"
        if bulk is not self.runs or not self._whole(pattern, text):
            self._units(bulk, pattern, text)

    def _whole(self, pattern: re.Pattern[str], text: str | memoryview) -> bool:
        """`text` (ending in a newline) as lines, a run of Trainer units, lines (`HfRuns.split`): the run at
        once when all units are canonical, else the finditer loop from the first. False: not that shape."""
        whole = self.runs.split(text) if isinstance(text, str) else self.runs.split(text, FOREIGN)
        if whole is None:
            return False
        pre, cols, post = whole
        self._lines(as_text(pre)[:-1].split("\n") if pre else [])
        free = self._tb is None and not self.vad.open_group
        if free and (got := self.runs.apply_columns(cols, self._gap)) is not None:
            self._count(got)
            self._lines(as_text(post)[:-1].split("\n") if post else [])
        else:
            self._units(self.runs, pattern, as_text(text[len(pre) :]))
        return True

    def _units(self, bulk: HfRuns | VadSteps, pattern: re.Pattern[str], text: str) -> None:
        """Units found in `text` (ending in a newline): runs of them in bulk, lines between."""
        pos = 0
        for start, run in unit_runs(pattern, text):
            if start != pos:
                self._lines(text[pos : start - 1].split("\n"))
            self._run(bulk, text, run)
            pos = run[-1].end()
        if pos < len(text):
            self._lines(text[pos:-1].split("\n"))

    def _run(self, bulk: HfRuns | VadSteps, text: str, run: list[re.Match[str]]) -> None:
        """Units that follow each other: in bulk while the state allows, a unit that does not on its own."""
        units = list(map(re.Match.groups, run))
        i = 0
        while i < len(run):
            if self._tb is None and (bulk is self.steps or not self.vad.open_group):
                k, *counts = bulk.apply(units, i, self._gap)
                if k:
                    self._count(counts)
                    i += k
                    continue
            m = run[i]
            self._lines(text[m.start() : m.end() - 1].split("\n"))
            i += 1

    def _count(self, counts: Sequence[int]) -> None:
        self.lines += counts[0]
        self.blank += counts[1]
        self.sink.unparsed += counts[2]
        self.sink.lineno = self.lines

    def _gap(self, text: str) -> tuple[int, int, int] | None:
        """(lines, blank, unparsed) of lines (each ending in a newline) that `_lines` would only count; None
        when one may carry state."""
        lines = text.split("\n")
        lines.pop()
        blank = unparsed = 0
        for line in lines:
            handler = self._fast.get(line[:12])
            if handler is not None:
                if handler != self._decoration:
                    return None
                blank += 1
            elif not line or line.isspace():
                blank += 1
            elif len(line) < UNKNOWN_LEN and line in self._unknown and self.vad.table is None:
                unparsed += 1
            else:
                return None
        return len(lines), blank, unparsed

    # --- hot loop ----------------------------------------------------------------------------------------
    def _lines(self, lines: list[str]) -> None:
        fast, sink, unknown = self._fast, self.sink, self._unknown
        n = self.lines
        for line in lines:
            n += 1
            if self._tb is not None:
                sink.lineno = n
                self._traceback(line)
                continue
            handler = fast.get(line[:12])
            if handler is not None:
                sink.lineno = n
                if handler(line) is False:
                    sink.unparsed += 1
                continue
            if not line or line.isspace():
                self.blank += 1
                continue
            sink.lineno = n
            first = line[0] if len(line) <= MAX_LINE else ""
            if first == "{" and "\r" not in line and self.hf.dict_line(line):
                continue  # a Trainer dict line, the commonest untagged line
            if first == "\r" and (self.hf.bars(line) or self._bar_then_line(line)):
                continue  # a line of tqdm redraws, or one bar and then a tagged line
            if len(line) < UNKNOWN_LEN and line in unknown and self.vad.table is None:
                sink.unparsed += 1  # seen before and not recognised: a warning printed every step
                continue
            if not self._slow(line):
                sink.unparsed += 1
                if (
                    len(line) < UNKNOWN_LEN
                    and self.vad.table is None
                    and not any(mark in line for mark in STATEFUL_MARKS)
                ):
                    if len(unknown) >= MAX_UNKNOWN:
                        unknown.clear()
                    unknown.add(line)
        self.lines = n

    def _bar_then_line(self, line: str) -> bool:
        """`\r<bar><tagged line>`, what tqdm leaves when a line is printed under its bar: the bar moves the
        step, the rest is read as a line. False (nothing done) for any other shape."""
        m = hf.BAR_PREFIX_RE.match(line)
        if m is None:
            return False
        rest = line[m.end() :]
        if "\r" in rest or "it/s]" in rest or "s/it]" in rest:
            return False
        self.hf.bar(int(m.group(1)), int(m.group(2)))
        if rest.strip():
            self._segment(rest)
        return True

    def _slow(self, line: str) -> bool:
        if len(line) > MAX_LINE:
            return False
        if "\r" in line:
            hit = False
            for seg in line.split("\r"):
                if seg and not seg.isspace() and self._segment(seg):
                    hit = True
            return hit or line.isspace()
        return self._segment(line)

    def _segment(self, line: str) -> bool:
        if self._tb is not None:
            self._traceback(line)
            return True
        c = line[0]
        if c == "[" and line.startswith("[rank"):
            m = RANK_RE.match(line)
            if m:
                return self._prefixed(line[m.end() :], rank=int(m.group(1)))
        elif c.isalnum() and ": " in line[:80]:
            m = HOST_RE.match(line)
            if m and not crash.EXCEPTION_RE.match(line):
                return self._prefixed(line[m.end() :], host=m.group(1))
        handler = self._fast.get(line[:12])
        if handler is not None:
            return handler(line) is not False
        if "/it]" in line or "it/s]" in line:
            bar = hf.last_bar(line)
            if bar is not None:
                self.hf.bar(bar[0], bar[1])
                rest = line[bar[2] :]
                if rest.strip():
                    self._segment(rest)
                return True
        if "[" in line:
            for tag, tagged in self._tags:
                i = line.find(tag)
                if i >= 0:
                    return tagged(line[i:]) is not False
        if "{" in line and ("'" in line or '"' in line) and self.hf.dict_line(line[line.find("{") :]):
            return True
        if "logit_scale (" in line:
            return self.vad.logit_scale(line)
        if "Logit Scale:" in line or "Train Epoch:" in line:
            return self.openclip.line(line)
        if "Loaded logit_scale" in line:
            return self.ours.loaded_scale(line)
        if crash.TB_HEADER in line:
            self._tb = crash.Traceback(self.sink.lineno)
            return True
        if crash.is_oom(line):
            self.sink.crash("oom", line.strip()[:500])
            return True
        killed = crash.killed(line)
        if killed is not None:
            self.sink.crash("crash", killed)
            return True
        if self.vad.table is not None and line[0].isdigit():
            return self.vad.table_row(line)
        if line.startswith("Epoch") and self.vad.table_header(line):
            return True
        return self.generic.line(line)

    def _prefixed(self, rest: str, *, rank: int | None = None, host: str | None = None) -> bool:
        if rank is not None:
            if self._rank is None:
                self._rank = rank
            primary = rank == self._rank
        else:
            if self._host is None:
                self._host = host
            primary = host == self._host
        if not rest or rest.isspace():
            return True
        if primary:
            return self._slow(rest) or True
        if crash.TB_HEADER in rest or crash.is_oom(rest):
            self.sink.crash(
                "oom" if crash.is_oom(rest) else "crash",
                f"{'rank ' + str(rank) if rank is not None else host}: {rest.strip()[:400]}",
            )
        return True

    def _traceback(self, line: str) -> None:
        tb = self._tb
        assert tb is not None
        done = tb.line(line)
        if done is None:
            return
        self._tb = None
        if done[0] == "open":
            self.sink.crash("crash", "traceback without a closing exception line")
            if line and not line.isspace() and not self._slow(line):
                self.sink.unparsed += 1
        else:
            self.sink.crash(done[0], done[1])

    def _decoration(self, line: str) -> bool:
        """Rules such as `=====`: recognised, carry nothing (counted with the blank lines)."""
        self.blank += 1
        return True
