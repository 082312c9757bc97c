"""The streaming log reader: bytes in, metric rows by optimizer step and point events out.

Formats are detected per line, so one file may mix them (HF Trainer dicts, tqdm bars, fgclip-vad blocks,
our lines and JSONL events). A line is `\\n`-terminated; `\\r` also ends a segment (tqdm redraws). Lines from
a non-primary rank (`[rank1]:`) or host (`10.0.0.2:`) are dropped for metrics, except crashes.

Steps. Explicit steps (JSONL, our summary line, trainer_state) win. HF dict lines take the step from the last
training bar (`100/240`), else count logging lines x logging_steps. fgclip-vad batch lines carry `[Step s]`,
the number of optimizer steps completed before that micro-batch, so their data belong to step s + 1. Lines
without a step (a `[DIAG]` block, `[LOSS]`) join the forward group that the next batch line closes. Values
seen several times in one step (micro-batches) are averaged; authoritative values (dict lines, JSONL) win.

Speed. Canonical fgclip-vad forward groups are read in one regex match each (`fastpath`, same rows as the line
path). Otherwise a dict keyed by the first 12 characters sends frequent lines straight to their handler, and
the rest take the slow path (prefix stripping, bars, substring checks before any regex). Lines over MAX_LINE
are not parsed. Handlers live in `handlers` (tagged lines) and `trainer` (Trainer, open_clip, scales).
"""

from __future__ import annotations

import math
import re
from typing import Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.logs import crash, hf, openclip, vad

MAX_LINE = 1 << 20  # longer lines are counted unparsed without a look
MAX_MALFORMED = 20
RANK_RE = re.compile(r"\[rank(\d+)\]:\s?")
HOST_RE = re.compile(r"((?:\d{1,3}\.){3}\d{1,3}|[A-Za-z][\w-]*\d(?:\.[\w-]+)*): ")
R_VALID, R_ZERO, R_BAD = ev.REGIONS_VALID, ev.REGIONS_ZERO_NORM, ev.REGIONS_NONFINITE
RH = "region"


def _h(name: str) -> str:
    return ev.head_metric(name, RH)


C_REGION, CH_REGION, STD_REGION, EXP_REGION, COS_REGION = (
    _h(n) for n in (ev.CANDIDATES, ev.CHANCE, ev.LOGITS_STD, ev.LOGIT_SCALE_EXP, ev.COS_STD)
)
# state-like metrics of a forward group: a step keeps the last value (a mean of pointers means nothing)
LAST_NAMES = frozenset(
    (
        ev.MB_PTR,
        ev.MB_FILL,
        ev.MB_SIZE,
        ev.MB_ACTIVE,
        ev.LEARNING_RATE,
        *(ev.head_metric(b, h) for b in (ev.LOGIT_SCALE, ev.LOGIT_SCALE_EXP) for h in ev.HEADS),
    )
)


class LogReader:
    """Feed bytes (`feed`), then `flush`; take rows and events with `drain`. Counters say how much was read."""

    def __init__(self, *, logging_steps: int | None = None, source: str = "", fast: bool = True):
        self.source = source
        self._summary_step: int | None = (
            None  # step of our last `[fgdiag] step N` line (dict lines follow it)
        )
        self.fast = fast  # whole-group fast path for fgclip-vad blocks (same rows as the per-line path)
        self.logging_steps = logging_steps
        self.lines = 0
        self.blank = 0
        self.unparsed = 0
        self.malformed: list[tuple[int, str, str]] = []
        self.malformed_count = 0
        self.formats: set[str] = set()
        self.run_info: dict[str, Any] = {}
        self.notes: list[str] = []  # caveats about this log's reading, shown with the summary
        self.step = 0
        self.max_step = 0
        self.lineno = 0
        self._row_step: int | None = None
        self._sum: dict[str, float] = {}
        self._cnt: dict[str, int] = {}
        self._set: dict[str, float | None] = {}
        self._last: dict[str, float] = {}  # state-like values (scale, bank, lr): the step keeps the last one
        self._fraw: list[tuple[Any, ...]] = []  # forward groups from the fast path, folded in lazily
        self._fwd: dict[str, float] = {}
        self._bank: list[float] | None = None  # filled, size for the open forward group
        self._loss_text: tuple[int, str] | None = None  # a [LOSS] line of the open group, parsed lazily
        self._out: list[tuple[str, Any]] = []  # ("row", (step, metrics)) and ("event", record), in log order
        self.recorded_findings: list[Finding] = []
        self._tb: crash.Traceback | None = None
        self._bar_total: int | None = None
        self._bar_n: int | None = None
        self._hf_lines = 0
        self._hf_last_step: int | None = None
        self._oc = openclip.OpenClipSteps()
        self._table: list[str] | None = None
        self._rank: int | None = None
        self._host: str | None = None
        self._mb_enabled = False
        self._pending = b""
        self._skip_to_newline = False

    # --- input ------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Consume bytes; a trailing partial line waits for its newline (or `flush(final=True)`)."""
        if self._skip_to_newline:
            cut = data.find(b"\n")
            if cut < 0:
                return
            data, self._skip_to_newline = data[cut + 1 :], False
        buf = self._pending + data if self._pending else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._pending = buf
            if len(buf) > MAX_LINE:
                self._pending, self._skip_to_newline = b"", True
                self.lines += 1
                self.unparsed += 1
            return
        self._pending = buf[cut + 1 :]
        self.feed_text(buf[:cut].decode("utf-8", "replace"))

    def feed_text(self, text: str) -> None:
        """Consume complete lines of text (no trailing partial line)."""
        if self.fast:
            _fastpath.feed_text(self, text)
        else:
            self._lines(text.split("\n"))

    def flush(self, final: bool = False) -> None:
        """Make pending data visible. final: the input ended (parse the partial line, close every group);
        otherwise only a provisional copy of the current step's row is published (watch calls this at EOF)."""
        if final:
            if self._pending:
                tail, self._pending = self._pending, b""
                self._lines([tail.decode("utf-8", "replace")])
            if self._tb is not None:
                self._crash_event("crash", "traceback without a closing exception line (log cut)")
                self._tb = None
            self._commit_fwd()
            self._emit_row()
        elif self._row_step is not None:
            self._out.append(("row", (self._row_step, self._row())))

    def drain(self) -> tuple[list[tuple[int, dict[str, float | None]]], list[dict[str, Any]]]:
        """Rows and events produced since the last drain (two lists; see drain_ordered for log order)."""
        out = self.drain_ordered()
        return [x for kind, x in out if kind == "row"], [x for kind, x in out if kind == "event"]

    def drain_ordered(self) -> list[tuple[str, Any]]:
        """("row", (step, metrics)) and ("event", record) in the order the log produced them, so a rule sees
        an event (the bank switching on) between the rows before and after it."""
        out, self._out = self._out, []
        return out

    def _event(self, record: dict[str, Any]) -> None:
        self._out.append(("event", record))

    # --- hot loop ----------------------------------------------------------------------------------------
    def _lines(self, lines: list[str]) -> None:
        fast = FAST
        n = self.lines
        for line in lines:
            n += 1
            if self._tb is not None:
                self.lineno = n
                self._traceback(line)
                continue
            handler = fast.get(line[:12])
            if handler is not None:
                self.lineno = n
                if handler(self, line) is False:
                    self.unparsed += 1
                continue
            if not line or line.isspace():
                self.blank += 1
                continue
            self.lineno = n
            if not self._slow(line):
                self.unparsed += 1
        self.lines = n

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
        handler = FAST.get(line[:12])
        if handler is not None:
            return handler(self, line) is not False
        if "/it]" in line or "it/s]" in line:
            bar = hf.last_bar(line)
            if bar is not None:
                self._on_bar(bar[0], bar[1])
                rest = line[bar[2] :]
                if rest.strip():
                    self._segment(rest)
                return True
        if "[" in line:
            for tag, handler in TAGS:
                i = line.find(tag)
                if i >= 0:
                    return handler(self, line[i:]) is not False
        if "{" in line and ("'" in line or '"' in line) and _trainer.dict_line(self, line[line.find("{") :]):
            return True
        if "logit_scale (" in line:
            return _trainer.logit_scale(self, line)
        if "Logit Scale:" in line or "Train Epoch:" in line:
            return _trainer.openclip_line(self, line)
        if "Loaded logit_scale" in line:
            return _trainer.loaded_scale(self, line)
        if crash.TB_HEADER in line:
            self._tb = crash.Traceback(self.lineno)
            return True
        if crash.is_oom(line):
            self._crash_event("oom", line.strip()[:500])
            return True
        if line.strip() == "Killed":
            self._crash_event("crash", "process killed by a signal (often the host's out-of-memory killer)")
            return True
        if self._table is not None and line[0].isdigit():
            return _trainer.table_row(self, line)
        if line.startswith("Epoch") and vad.TABLE_HEADER_RE.match(line):
            self._table = [c.lower() for c in line.split()]
            self.formats.add("fgclip-vad batch_losses")
            return True
        return False

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
            self._crash_event(
                "oom" if crash.is_oom(rest) else "crash",
                f"{'rank ' + str(rank) if rank is not None else host}: {rest.strip()[:400]}",
            )
        return True

    # --- accumulation ------------------------------------------------------------------------------------
    def _at(self, step: int) -> None:
        if step != self._row_step:
            self._emit_row()
            self._row_step = step
        if step < self.max_step - 1:
            self._event(
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

    def _add(self, name: str, value: float) -> None:
        if self._row_step is None:
            self._row_step = self.step
        s = self._sum
        if name in s:
            s[name] += value
            self._cnt[name] += 1
        else:
            s[name] = value
            self._cnt[name] = 1

    def _put(self, name: str, value: float | None) -> None:
        if self._row_step is None:
            self._row_step = self.step
        self._set[name] = value

    def _row(self) -> dict[str, float | None]:
        if self._fraw:
            self._materialize()
        cnt = self._cnt
        row: dict[str, float | None] = {k: v / cnt[k] for k, v in self._sum.items()}
        row.update(self._last)
        row.update(self._set)
        return row

    def _materialize(self) -> None:
        """Fold the fast path's raw groups into the step's sums (before anything else touches them)."""
        raw, self._fraw = self._fraw, []
        _fastpath.fold(self, raw)

    def _emit_row(self) -> None:
        if self._row_step is not None and (self._sum or self._set or self._last or self._fraw):
            self._out.append(("row", (self._row_step, self._row())))
        self._sum, self._cnt, self._set, self._last, self._fraw = {}, {}, {}, {}, []
        self._row_step = None

    def _commit_fwd(self, step: int | None = None) -> None:
        """Close the open forward group (a DIAG block and its loss lines) into `step` (default: current)."""
        if self._loss_text is not None:
            _handlers.parse_deferred_loss(self)
        if self._fraw:
            self._materialize()
        fwd = self._fwd
        bank = self._bank
        if not fwd and bank is None:
            return
        if step is not None:
            self._at(step)
        elif self._row_step is None:
            self._row_step = self.step
        valid = fwd.get(R_VALID)
        if bank is not None:
            filled, size = bank
            fwd[ev.MB_FILL] = filled
            if size == size:  # not NaN
                fwd[ev.MB_SIZE] = size
            fwd[ev.MB_ACTIVE] = 1.0 if (filled > 0 or self._mb_enabled) else 0.0
        if valid:
            k = valid + (bank[0] if bank is not None else 0.0)
            fwd[C_REGION] = k
            if k > 1:
                fwd[CH_REGION] = math.log(k)
        std = fwd.get(STD_REGION)
        if std is not None:
            scale = fwd.get(EXP_REGION)
            if scale:
                fwd[COS_REGION] = std / scale
        sums, cnt, last = self._sum, self._cnt, self._last
        for name, value in fwd.items():
            if name in LAST_NAMES:
                last[name] = value
            elif name in sums:
                sums[name] += value
                cnt[name] += 1
            else:
                sums[name] = value
                cnt[name] = 1
        self._fwd = {}
        self._bank = None

    def _malformed(self, field: str, detail: str) -> bool:
        self.malformed_count += 1
        if len(self.malformed) < MAX_MALFORMED:
            self.malformed.append((self.lineno, field, detail[:120]))
        return False

    def _crash_event(self, kind: str, message: str) -> None:
        self._event(ev.event_record(self.step, kind, message, {"line": self.lineno}))

    # --- handlers: steps and generic lines ---------------------------------------------------------------
    def _traceback(self, line: str) -> None:
        tb = self._tb
        assert tb is not None
        done = tb.line(line)
        if done is None:
            return
        self._tb = None
        if done[0] == "open":
            self._crash_event("crash", "traceback without a closing exception line")
            if line and not line.isspace() and not self._slow(line):
                self.unparsed += 1
        else:
            self._crash_event(done[0], done[1])

    def _on_bar(self, n: int, total: int) -> None:
        if self._bar_total is None and total > 1:
            self._bar_total = total
            self.run_info.setdefault("planned_steps", total)
            self.formats.add("tqdm")
        if total == self._bar_total:
            self._bar_n = n
            if n > self.step:
                self._at(n)


from fgdiag.logs import fastpath as _fastpath  # noqa: E402
from fgdiag.logs import handlers as _handlers  # noqa: E402  (the tables need LogReader defined)
from fgdiag.logs import trainer as _trainer  # noqa: E402

FAST = _handlers.fast_table()
TAGS = _handlers.TAGS
