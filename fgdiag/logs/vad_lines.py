"""`VadParser`: the fgclip-vad fork's tagged lines, one at a time, attributed to optimizer steps.

A forward group is a `[DIAG] Region batch diagnostics:` block, its `[LOSS]` line and the batch line that
closes it: `[Epoch e][Step s][Batch b]` carries s, the optimizer steps completed before that micro-batch, so
the group belongs to step s + 1. Lines without a step (the block, `[LOSS]`, `[MB-FORWARD]`) join the open
group; the group's values are averaged over the step's micro-batches, state-like ones (pointer, fill, scale,
learning rate) keep the last. The same parser reads the fork's `batch_losses.log` table and the logit-scale
lines (ours share the fork's spelling). Each handler takes a line and returns False when the line carried
its tag but not its fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import REGION
from fgdiag.logs import vad
from fgdiag.logs.decode import demojibake
from fgdiag.logs.sink import LogSink
from fgdiag.wire import MB_ENABLED_RE, parse_logit_scale

Handler = Callable[[str], bool]
R_VALID, R_ZERO, R_BAD = ev.REGIONS_VALID, ev.REGIONS_ZERO_NORM, ev.REGIONS_NONFINITE
L_MIN, L_MAX, L_MEAN, L_STD = (
    ev.head_metric(n, REGION) for n in (ev.LOGITS_MIN, ev.LOGITS_MAX, ev.LOGITS_MEAN, ev.LOGITS_STD)
)
SCALE_NAMES = {  # head -> (raw scale, exp(scale)) metric names
    h: (ev.head_metric(ev.LOGIT_SCALE, h), ev.head_metric(ev.LOGIT_SCALE_EXP, h)) for h in ev.HEADS
}
C_REGION, CH_REGION, EXP_REGION, COS_REGION = (
    ev.head_metric(n, REGION) for n in (ev.CANDIDATES, ev.CHANCE, ev.LOGIT_SCALE_EXP, ev.COS_STD)
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
LOSS_NAMES = (
    ev.LOSS,
    ev.head_metric(ev.HEAD_LOSS, "global"),
    vad.REGION_LOSS,
    ev.head_metric(ev.HEAD_LOSS, "hardneg"),
)
STATS_LINE = (
    "[统计] 最近10个batch平均Loss"  # the fork's moving average of 10 micro-batches: not a step metric
)


def _clean(line: str) -> str:
    return demojibake(line.strip())[:300]


def parse_logits(line: str) -> tuple[float, float, float, float | None] | None:
    """(min, max, mean, std) of a `logits_i2t:` line: std NaN when the fork printed none, None when it does
    not parse (min, max and mean still count); None when those do not parse."""
    m = vad.STATS4_RE.search(line)
    if m is None:
        return None
    try:
        low, high, mean = float(m.group(1)), float(m.group(2)), float(m.group(3))
    except ValueError:
        return None
    try:
        return low, high, mean, float(m.group(4)) if m.group(4) else math.nan
    except ValueError:
        return low, high, mean, None


def mb_counts(line: str) -> tuple[float, float] | None:
    """(queued, valid) of an `[MB-FORWARD]` line; None when it does not parse."""
    m = vad.MB_FORWARD_RE.search(line)
    return None if m is None else (float(m.group(1)), float(m.group(2)))


def region_candidates(valid: float | None, queued: float) -> tuple[float | None, float | None]:
    """(K, ln K) of a forward group: its valid regions plus the queued negatives; K None without a valid
    region, ln K None unless K > 1."""
    if not valid:
        return None, None
    k = valid + queued
    return k, math.log(k) if k > 1 else None


def close_group(
    fwd: dict[str, float], bank: list[float] | None, enabled: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """What a forward group adds to its step (averaged) and what the step keeps (state-like, the last), in
    the group's order: its values plus the bank's fill and activity, the region candidates and their chance
    level, the cosine spread. `fwd` is completed in place."""
    valid = fwd.get(R_VALID)
    if bank is not None:
        filled, size = bank
        fwd[ev.MB_FILL] = filled
        if size == size:  # not NaN
            fwd[ev.MB_SIZE] = size
        fwd[ev.MB_ACTIVE] = 1.0 if (filled > 0 or enabled) else 0.0
    k, ln_k = region_candidates(valid, bank[0] if bank is not None else 0.0)
    if k is not None:
        fwd[C_REGION] = k
        if ln_k is not None:
            fwd[CH_REGION] = ln_k
    std = fwd.get(L_STD)
    if std is not None:
        scale = fwd.get(EXP_REGION)
        if scale:
            fwd[COS_REGION] = std / scale
    last = {name: value for name, value in fwd.items() if name in LAST_NAMES}
    if not last:
        return fwd, last
    return {name: value for name, value in fwd.items() if name not in last}, last


class VadParser:
    """The fork's lines; `commit` closes the open forward group (the sink runs it before a line names a
    step)."""

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.fwd: dict[str, float] = {}  # values of the open forward group
        self.bank: list[float] | None = None  # [filled, size] of the open group's queues
        self.loss_text: tuple[int, str] | None = None  # a [LOSS] line of the open group, parsed lazily
        self.table: list[str] | None = None  # columns of a batch_losses.log table being read
        sink.on_settle(self.commit)

    @property
    def open_group(self) -> bool:
        return bool(self.fwd) or self.bank is not None or self.loss_text is not None

    def prefixes(self) -> dict[str, Handler]:
        """Handlers by the first 12 characters of a line."""
        table: dict[str, Handler] = {
            "  - valid_co": self.diag_valid,
            "  - img_norm": self.diag_norms,
            "  - txt_norm": self.diag_norms,
            "  - logits_i": self.diag_logits,
            "  - memory_b": self.diag_bank,
            "  - any_nan=": self.diag_any,
            "  - sample_l": self.ignore,
            "  - logit_sc": self.logit_scale,
            "logit_scale ": self.logit_scale,
            "[DIAG] Regio": self.diag_header,
            "[LOSS] Total": self.loss_line,
            "[MICRO-BATCH": self.loss_line,
            "[ACCUMULATED": self.accumulated,
            "[MB-FORWARD]": self.mb_forward,
            "[Memory Bank": self.memory_bank,
            "[MEMORY BANK": self.memory_bank_legacy,
            "[DEBUG Regio": self.debug_region,
            "[RUNTIME DIA": self.ignore,
        }
        for digit in "0123456789":
            table[f"[Epoch {digit}][St"] = self.batch_line
        for variant in (
            STATS_LINE,
            STATS_LINE.encode("utf-8").decode("cp1252", "replace"),
            STATS_LINE.encode("utf-8").decode("cp1252", "ignore"),
        ):
            table[variant[:12]] = self.ignore
        return table

    def tags(self) -> tuple[tuple[str, Handler], ...]:
        """Handlers by a tag found anywhere in a line (after a tqdm bar or a rank prefix)."""
        return (
            ("[DIAG]", self.diag_header),
            ("[Epoch ", self.batch_line),
            ("[ACCUMULATED]", self.accumulated),
            ("[LOSS]", self.loss_line),
            ("[MB-FORWARD]", self.mb_forward),
            ("[Memory Bank]", self.memory_bank),
            ("[MEMORY BANK]", self.memory_bank_legacy),
            ("[MICRO-BATCH]", self.loss_line),
            ("[DEBUG Region]", self.debug_region),
            ("[RUNTIME DIAG]", self.ignore),
        )

    # --- the open forward group ---------------------------------------------------------------------------
    def commit(self, step: int | None = None) -> None:
        """Close the open forward group (a DIAG block and its loss lines) into `step` (default: current)."""
        sink = self.sink
        if self.loss_text is not None:
            self._deferred_loss()
        sink.fold_deferred()  # whole groups read earlier in this step come first (state keeps the last)
        fwd, bank = self.fwd, self.bank
        if not fwd and bank is None:
            return
        if step is not None:
            sink.at(step)
        add, last = close_group(fwd, bank, sink.bank_enabled)
        if last:
            sink.keep_all(last)
        sink.add_all(add)
        self.fwd = {}
        self.bank = None

    def drop_loss_text(self) -> None:
        """The batch line repeated the [LOSS] line's values: it need not be parsed."""
        self.loss_text = None

    # --- [DIAG] block ---------------------------------------------------------------------------------------
    def diag_header(self, line: str) -> bool:
        self.commit()
        self.sink.formats.add("fgclip-vad")
        return True

    def diag_valid(self, line: str) -> bool:
        value = vad.cached(line, vad.parse_valid)
        if value is None:
            return self.sink.malformed("valid_count", line)
        self.fwd[R_VALID] = value
        return True

    def diag_norms(self, line: str) -> bool:
        st = vad.cached(line, vad.parse_norms)
        if st is None:
            return self.sink.malformed("norms", line)
        fwd = self.fwd
        if st[3]:
            fwd[R_BAD] = fwd.get(R_BAD, 0.0) + 1.0
        if line.startswith("  - img"):
            fwd[R_ZERO] = vad.zero_norm_count(st[0], st[1], st[2], fwd.get(R_VALID))
        return True

    def diag_logits(self, line: str) -> bool:
        stats = parse_logits(line)
        if stats is None:
            return self.sink.malformed("logits_i2t", line)
        fwd = self.fwd
        fwd[L_MIN], fwd[L_MAX], fwd[L_MEAN], std = stats
        if std is None:
            return self.sink.malformed("logits_i2t", line)
        if math.isfinite(std):  # std=nan when a batch has one region
            fwd[L_STD] = std
        return True

    def diag_bank(self, line: str) -> bool:
        bank = vad.cached(line, lambda text: vad.bank_from_diag(vad.stats(text)))
        if bank is None:
            return self.sink.malformed("memory_bank", line)
        filled, size, ptr = bank
        if self.bank is None:
            self.bank = [filled, size]
        else:  # normal + abnormal queues
            self.bank[0] += filled
            self.bank[1] += size
        self.fwd[ev.MB_PTR] = ptr
        return True

    def diag_any(self, line: str) -> bool:
        """Closes the block's counts: regions/nonfinite is 0 for a clean forward, so its mean is
        comparable."""
        self.fwd[R_BAD] = self.fwd.get(R_BAD, 0.0) + (1.0 if "=True" in line else 0.0)
        return True

    def ignore(self, line: str) -> bool:
        return True

    def debug_region(self, line: str) -> bool:
        self.commit()
        self.sink.formats.add("fgclip-vad")
        return self.diag_valid(line)

    def logit_scale(self, line: str) -> bool:
        """Inside a [DIAG] block the scale joins the forward group; alone it joins the current step."""
        parsed = vad.cached(line, parse_logit_scale)
        if isinstance(parsed, str):
            return self.sink.malformed("logit_scale", parsed)
        head, raw, scale = parsed
        if line.startswith("  - ") or self.fwd:
            self.fwd[ev.head_metric(ev.LOGIT_SCALE, head)] = raw
            self.fwd[ev.head_metric(ev.LOGIT_SCALE_EXP, head)] = scale
        else:
            self.sink.add(ev.head_metric(ev.LOGIT_SCALE, head), raw)
            self.sink.add(ev.head_metric(ev.LOGIT_SCALE_EXP, head), scale)
        return True

    # --- loss lines -----------------------------------------------------------------------------------------
    def _pairs(self, text: str) -> bool:
        metrics, bank = vad.parse_pairs(text)
        if not metrics and bank is None:
            return self.sink.malformed("loss fields", text)
        fwd = self.fwd
        for name, value in metrics.items():
            if name == vad.REGION_LOSS and value == 0.0:
                continue  # the fork logs 0.0 when a micro-batch has no valid region
            fwd[name] = value
        if bank is not None and self.bank is None:
            self.bank = [bank[0], bank[1]]
        return True

    def _losses(self, values: tuple[str, ...]) -> bool:
        fwd = self.fwd
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            return False
        for name, number in zip(LOSS_NAMES, numbers, strict=True):
            if number != 0.0 or name != vad.REGION_LOSS:  # the fork logs 0.0 when a micro-batch has no region
                fwd[name] = number
        return True

    def loss_line(self, line: str) -> bool:
        """`[LOSS] Total: ... | Region: ...`, `[ACCUMULATED] Total: ...`, `[MICRO-BATCH] Total: ...` (no
        step).
        The fork prints the same values on the batch line that follows, so parsing waits for the group."""
        self.sink.formats.add("fgclip-vad")
        self.loss_text = (self.sink.lineno, line)
        return True

    def _deferred_loss(self) -> None:
        """The forward group closes without a batch line having supplied its losses: parse the [LOSS] line."""
        assert self.loss_text is not None
        lineno, line = self.loss_text
        self.loss_text = None
        m = vad.LOSS_FAST_RE.search(line)
        if m is not None and self._losses(m.groups()):
            return
        sink, now = self.sink, self.sink.lineno
        sink.lineno = lineno
        if not self._pairs(line[line.find("]") + 1 :]):
            sink.unparsed += 1
        sink.lineno = now

    def batch_line(self, line: str) -> bool:
        """`[Epoch e][Step s][Batch b] Loss: ...` and
        `[ACCUMULATED][Epoch e][Step s][Batch b] AvgLoss: ...`."""
        m = vad.BATCH_FAST_RE.search(line)
        if m is not None and self._losses(m.group(3, 4, 5, 6)):
            self.loss_text = None
            if m.group(7) is not None and self.bank is None:
                self.bank = [float(m.group(7)), float(m.group(8))]
            if m.group(9) is not None:
                try:
                    self.fwd[ev.LEARNING_RATE] = float(m.group(9))
                except ValueError:
                    pass
            self.commit(int(m.group(2)) + 1)
            return True
        m = vad.BATCH_RE.search(line)
        if m is None:
            return self.sink.malformed("[Epoch][Step]", line)
        self.sink.formats.add("fgclip-vad")
        ok = self._pairs(line[m.end() :])
        if ok:
            self.loss_text = None
        self.commit(int(m.group(2)) + 1)
        return ok

    def accumulated(self, line: str) -> bool:
        if line.startswith("[ACCUMULATED][Epoch"):
            return self.batch_line(line)
        return self.loss_line(line)

    # --- memory-bank lines ----------------------------------------------------------------------------------
    def mb_forward(self, line: str) -> bool:
        """`[MB-FORWARD] 使用{K}个历史负样本 | Batch内: {N} | 总负样本: {N+K}` (N + K recomputed at
        commit)."""
        counts = mb_counts(line)
        if counts is None:
            return self.sink.malformed("MB-FORWARD counts", line)
        queued, self.fwd[R_VALID] = counts
        if self.bank is None:
            self.bank = [queued, math.nan]
        self.sink.bank_enabled = self.sink.bank_enabled or queued > 0
        self.sink.formats.add("fgclip-vad")
        return True

    def memory_bank(self, line: str) -> bool:
        """`[Memory Bank] enabled @ training_step N (candidates a -> b)` (ours) or
        `... ✅ 已启用 @ training_step N`
        (the fork, N counted in forward passes), and `[Memory Bank] 队列大小: 128, 当前指针: 0`."""
        sink = self.sink
        m = MB_ENABLED_RE.search(line)
        if m is not None:
            data: dict[str, Any] = {"training_step": int(m.group(1))}
            if m.group(2) is not None:
                data["candidates_before"], data["candidates_after"] = int(m.group(2)), int(m.group(3))
            sink.bank_enabled = True
            # ours counts optimizer steps and prints the step it switched on at, which precedes the logging
            # step this line is read in; the fork's N counts forward passes: its event stays at the step read
            step = int(m.group(1)) if "] enabled @" in line and int(m.group(1)) <= sink.step else sink.step
            sink.event(ev.event_record(step, ev.EVENT_MB_ENABLED, _clean(line), data))
            sink.add(ev.MB_ACTIVE, 1.0)
            return True
        m = vad.MB_SIZE_RE.search(line)
        if m is not None:
            sink.add(ev.MB_SIZE, float(m.group(1)))
            sink.add(ev.MB_PTR, float(m.group(2)))
        return True

    def memory_bank_legacy(self, line: str) -> bool:
        """`[MEMORY BANK] ... Ptr: p/128 ...`, `... 队列首次填满！Ptr: a→b, 负样本数量: N→128`,
        `[MEMORY BANK][Normal] ...`."""
        sink = self.sink
        full = vad.MB_FULL_QUEUE_RE.match(line)
        if full is not None:
            sink.event(
                ev.event_record(sink.step, ev.EVENT_MB_FULL, _clean(line), {"queue": full.group(1).lower()})
            )
            return True
        m = vad.MB_PTR_RE.search(line)
        if m is not None:
            sink.add(ev.MB_FILL, float(m.group(1)))
            sink.add(ev.MB_SIZE, float(m.group(2)))
            return True
        m = vad.MB_FIRST_FULL_RE.search(line)
        if m is not None:
            sink.event(ev.event_record(sink.step, ev.EVENT_MB_FULL, _clean(line), {"queue": "all"}))
            sink.add(ev.MB_FILL, float(m.group(1)))
        return True

    # --- batch_losses.log
    # ---------------------------------------------------------------------------------------
    def table_header(self, line: str) -> bool:
        """`Epoch Global_Step Batch Loss ...`: the rows that follow are read as the fork's table."""
        if not vad.TABLE_HEADER_RE.match(line):
            return False
        self.table = [c.lower() for c in line.split()]
        self.sink.formats.add("fgclip-vad batch_losses")
        return True

    def table_row(self, line: str) -> bool:
        cols, cells = self.table or [], line.split()
        if len(cells) != len(cols):
            return False
        row = dict(zip(cols, cells, strict=True))
        try:
            step = int(row["global_step"]) + 1
            values = {name: float(row[col]) for col, name in vad.TABLE_NAMES.items() if col in row}
        except (KeyError, ValueError):
            return self.sink.malformed("batch_losses row", line)
        self.sink.at(step)
        for name, value in values.items():
            if not (name == vad.REGION_LOSS and value == 0.0):
                self.sink.add(name, value)
        return True
