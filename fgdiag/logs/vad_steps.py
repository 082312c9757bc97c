"""`VadSteps`: the fgclip-vad fork's optimizer steps, [DIAG] blocks included, read a run at a time.

The fork's trainer prints one forward group per optimizer step, a [DIAG] block every 16th:

    [MB-FORWARD] 使用128个历史负样本 | Batch内: 4 | 总负样本: 132
    ([DIAG] Region batch diagnostics: and its seven indented lines)
    logit_scale (finegrained): 4.605170 (exp=100.0000)
    [ACCUMULATED] Total: ... | Global: ... | Region: ... | HardNeg: ...
    <tqdm bar>[ACCUMULATED][Epoch e][Step s][Batch b] AvgLoss: ... | MB: 128/128 ✓ | LR: ... | Time: ...

One regex finds such units in a buffer (the batch line's part is `vad.BATCH_FAST_RE` with the line end
made explicit); once the per-line path has read one, the ones that follow are applied in bulk: each gives the
row `VadParser` would give (the [MB-FORWARD] line opens the group with its counts, the scale line joins it,
the batch line closes it at step s + 1 after the bar moved there; a [DIAG] block first closes the counts'
group into the open step, as its header line does, and its own group goes through `VadParser.commit`).
The rows are held as columns (`PendingSteps`) and reach the store and the rules as such.
Whatever deviates (another bar, a step that does not follow the bar, a line that does not parse, an open
group) takes the per-line path; a test reads logs both ways and compares rows, events and counters.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, MutableMapping
from itertools import compress, repeat
from typing import Any, cast

from fgdiag import events as ev
from fgdiag.logs import vad
from fgdiag.logs.hf import HfParser
from fgdiag.logs.sink import LogSink
from fgdiag.logs.vad_lines import (
    C_REGION,
    CH_REGION,
    COS_REGION,
    EXP_REGION,
    L_MAX,
    L_MEAN,
    L_MIN,
    L_STD,
    LAST_NAMES,
    LOSS_NAMES,
    R_BAD,
    R_VALID,
    R_ZERO,
    SCALE_NAMES,
    VadParser,
    close_group,
    mb_counts,
    parse_logits,
    region_candidates,
)
from fgdiag.logs.vad_pending import PendingSteps, per_step, rate_of
from fgdiag.logs.values import floats
from fgdiag.wire import parse_logit_scale

_S = r"(\S+)"
UNIT_RE = re.compile(
    r"(\[MB-FORWARD\][^\n]*+)\n"  # 1: the counts line that opens the forward group
    r"(?:\[DIAG\] Region batch diagnostics:\n"  # 2-8: a canonical [DIAG] block (optional)
    r"(  - valid_count=[^\n]*+)\n(  - img_norms: [^\n]*+)\n(  - txt_norms: [^\n]*+)\n"
    r"(  - logits_i2t: [^\n]*+)\n(  - logit_scale \([^\n]*+)\n(  - memory_bank[^\n]*+)\n"
    r"(  - any_nan=[^\n]*+)\n)?"
    r"(logit_scale \([^\n]*+)\n"  # 9: the scale line (parsed through the line cache)
    r"\[ACCUMULATED\] Total[^\n]*+\n"  # its values are repeated by the batch line
    r"\r *\d+%\|[^|\r\n]*+\| *(\d+)/(\d+) \[[^\[\]\r\n]{0,80}(?:it/s|s/it)[^\[\]\r\n]{0,20}\]"  # 10, 11: bar
    # 12: the rest of the line (`apply` checks it holds no more bars and no `\r`), from step 13 to the rate
    # 18; greedy loops that stop where the lazy ones of `vad.BATCH_FAST_RE` would (sre tries fewer tails)
    rf"(\[ACCUMULATED\]\[Epoch \d+\]\[Step (\d+)\]\[Batch \d+\] (?:AvgLoss|Loss): {_S} \| Global: {_S} \| "
    rf"Region: {_S} \| Hard(?:Neg)?: {_S}(?: \| MB: \d+/\d+[^|\r\n]*(?= \||\n))?(?: \| LR: {_S})?"
    r"[^\n]*+)\n"
)
MB_FILL, MB_ACTIVE, MB_PTR, LR = ev.MB_FILL, ev.MB_ACTIVE, ev.MB_PTR, ev.LEARNING_RATE
LOSS, GLOBAL, REGION_LOSS, HARD = LOSS_NAMES
BLOCK = 512  # units converted at once (a deviation costs at most one block's conversion)
Group = tuple[dict[str, float], list[float]]
Columns = tuple[list[int], list[Any], list[Any], list[list[float]], list[float | None], tuple[Any, ...]]


def _counts(line: str) -> tuple[float, float, float | None, float | None] | None:
    """(queued, valid, candidates, chance) of a [MB-FORWARD] line (`VadParser.commit`'s region candidates
    and their chance level; None where it sets none)."""
    counts = mb_counts(line)
    if counts is None:
        return None
    queued, valid = counts
    return queued, valid, *region_candidates(valid, queued)


def _scale(line: str) -> tuple[str, str, float, float] | None:
    """(raw name, exp name, raw, exp) of a logit-scale line."""
    parsed = vad.cached(line, parse_logit_scale)
    if isinstance(parsed, str):
        return None
    return (*SCALE_NAMES[parsed[0]], parsed[1], parsed[2])


class VadSteps:
    """Finds the fork's step units in a buffer (`pattern`) and applies runs of them (`apply`)."""

    def __init__(self, hf: HfParser, lines: VadParser, sink: LogSink) -> None:
        self.hf = hf
        self.lines = lines
        self.sink = sink
        self._enabled = False  # the bank's state and the rows of the run being applied
        self._rows = PendingSteps()
        self._templates: dict[tuple[Any, ...], dict[str, float]] = {}  # rows of [DIAG] steps (`_diag_values`)

    def pattern(self) -> re.Pattern[str] | None:
        """The unit regex once the training bar is known (the per-line path reads the first unit)."""
        return UNIT_RE if self.hf.bar_total is not None else None

    def ready(self) -> bool:
        """The state a unit leaves: no forward group open, the row of the bar's step open."""
        sink, lines = self.sink, self.lines
        return (
            lines.loss_text is None
            and not lines.fwd
            and lines.bank is None
            and not sink.has_deferred()
            and sink.open_step() == sink.step == sink.max_step == self.hf.bar_n
        )

    @staticmethod
    def _parsed(column: tuple[str, ...], parse: Callable[[str], Any]) -> list[Any] | None:
        """Each line of `column` parsed once per distinct text; None when one does not parse (gives None)."""
        if column.count(column[0]) == len(column):  # one text (the fork's steady lines): no hashing
            value = parse(column[0])
            return None if value is None else [value] * len(column)
        table = {line: parse(line) for line in set(column)}
        if None in table.values():
            return None
        return list(map(table.__getitem__, column))

    def _columns(self, run: list[tuple[Any, ...]], prev: int) -> Columns | None:
        """The run's columns converted (bars, scales, counts, four losses, rates) when every unit is at the
        bar's step, with one bar on its batch line and lines that parse; None otherwise."""
        cols = list(zip(*run, strict=True))
        tots, rests = cols[10], cols[11]
        total = self.hf.bar_total
        if total is None or (
            tots.count(str(total)) != len(tots) and list(map(int, tots)).count(total) != len(tots)
        ):
            return None
        bars = list(map(int, cols[9]))
        first = bars[0]
        if bars != list(range(first, first + len(bars))) or prev >= first:  # not one step after another
            if not all(map(operator.lt, [prev, *bars], bars)):
                return None
            if list(map(operator.sub, bars, map(int, cols[12]))).count(1) != len(bars):  # bar n, step n - 1
                return None
        elif (cols[12][1:] != cols[9][:-1] or int(cols[12][0]) != first - 1) and list(
            map(int, cols[12])
        ) != list(range(first - 1, first - 1 + len(bars))):  # step n - 1 is the text of the previous bar
            return None
        joined = "\n".join(rests)
        if "it/s]" in joined or "s/it]" in joined or "\r" in joined:
            return None
        scales = self._parsed(cols[8], _scale)
        counts = self._parsed(cols[0], _counts)
        if scales is None or counts is None:
            return None
        try:
            losses = [floats(cols[j]) for j in (13, 14, 15, 16)]
        except ValueError:
            return None
        try:
            rates = cast("list[float | None]", floats(cols[17]))
        except (TypeError, ValueError):
            rates = [rate_of(x) for x in cols[17]]
        return bars, scales, counts, losses, rates, cols[1]

    def _blocks(self, run: list[tuple[Any, ...]]) -> Iterator[tuple[list[tuple[Any, ...]], Columns]]:
        """The run's canonical prefix, BLOCK units at a time with their columns (converted when asked for): a
        block that is not canonical gives the units before its first odd one (`_first_odd`), so a deviation
        costs one block's conversion and the units before it, not the whole run's."""
        prev = self.sink.step
        for start in range(0, len(run), BLOCK):
            block = run[start : start + BLOCK]
            columns = self._columns(block, prev)
            if columns is None:
                good = self._first_odd(block, prev)
                columns = self._columns(block[:good], prev) if good else None
                if columns is not None:
                    yield block[:good], columns
                return
            yield block, columns
            prev = columns[0][-1]

    def _first_odd(self, block: list[tuple[Any, ...]], prev: int) -> int:
        """Index of the first unit `_columns` rejects, checked one at a time (its checks, in order)."""
        total = self.hf.bar_total
        for i, unit in enumerate(block):
            bar, rest = int(unit[9]), unit[11]
            if int(unit[10]) != total or bar <= prev or int(unit[12]) + 1 != bar or "it/s]" in rest:
                return i
            if "s/it]" in rest or "\r" in rest or _scale(unit[8]) is None or _counts(unit[0]) is None:
                return i
            try:
                float(unit[13]), float(unit[14]), float(unit[15]), float(unit[16])
            except ValueError:
                return i
            prev = bar
        return len(block)

    def apply(self, units: list[tuple[Any, ...]], first: int, gap: Any = None) -> tuple[int, int, int, int]:
        """Apply units[first:] (each `match.groups()`) while they are canonical. Returns (units applied,
        lines, blank, unparsed), 0 units when the first must take the per-line path."""
        if first >= len(units) or not self.ready():
            return 0, 0, 0, 0
        sink = self.sink
        self._enabled = sink.bank_enabled
        self._rows = PendingSteps()
        k = n_lines = 0
        prev = sink.step
        for block, columns in self._blocks(units[first:]):
            done, lines = self._uniform(block, columns) or self._one_by_one(block, columns)
            k, n_lines = k + done, n_lines + lines
            if done:
                prev = columns[0][done - 1]
            if done < len(block):
                break
        if not k:
            return 0, 0, 0, 0
        if len(self._rows):
            self._flush(len(self._rows))
        sink.bank_enabled = self._enabled
        self.hf.bar_n = prev
        return k, n_lines, 0, 0

    def _uniform(self, block: list[tuple[Any, ...]], columns: Columns) -> tuple[int, int] | None:
        """A block whose steps log every value, their scale for one head (the fork's every step): the rows
        of `VadParser.commit` as columns at once, then the [DIAG] blocks' rows in order. Returns (units
        applied, lines); None (nothing done) for another block."""
        bars, scales, counts, losses, rates, diags = columns
        n = len(bars)
        if None in rates or 0.0 in losses[2]:  # the fork logs 0.0 when a micro-batch has no valid region
            return None
        values = per_step(scales, counts, n)
        if values is None:
            return None
        heads, valid, c, lc, raw, exp, queued = values
        before = self._enabled
        first = n if before else next(compress(range(n), map(operator.lt, repeat(0.0), queued)), n)
        active = [1.0] * n if before else [0.0] * first + [1.0] * (n - first)  # the bank on from its first
        pending = self._rows
        base = len(pending)
        names = (
            R_VALID,
            LOSS,
            GLOBAL,
            REGION_LOSS,
            HARD,
            C_REGION,
            CH_REGION,
            *heads,
            LR,
            MB_FILL,
            MB_ACTIVE,
        )
        cols = [valid, *losses, c, lc, raw, exp, rates, queued, active]  # `VadParser.commit`'s order
        if not pending.add_columns(bars, names, cols):  # another head's scale than before: as dicts
            for bar, row in zip(bars, zip(*cols, strict=True), strict=True):
                pending.add_row(bar, dict(zip(names, row, strict=True)))
        lines = 4 * n
        for b in compress(range(n), map(operator.is_not, diags, repeat(None))):
            self._enabled = before or first < b  # the bank's state after the step before
            shift = self._diag_row(block[b], base + b, scales[b], counts[b], [x[b] for x in losses], rates[b])
            if shift is None:  # the line path reads it: the rows from it on are dropped
                pending.cut(base + b)
                self._enabled = before or first < b
                return b, lines - 4 * (n - b)
            base -= shift
            lines += 8
        self._enabled = before or first < n
        return n, lines

    def _one_by_one(self, block: list[tuple[Any, ...]], columns: Columns) -> tuple[int, int]:
        """(units applied, lines) of a block read a step at a time (`VadParser.commit`'s rows)."""
        bars, scales, counts, losses, rates, _ = columns
        pending = self._rows
        k = n_lines = 0
        for unit, bar, scale, (queued, valid, c, lc), t, g, r, h, rate in zip(
            block, bars, scales, counts, *losses, rates, strict=True
        ):
            if unit[1] is not None:  # a [DIAG] block
                pending.add_row(bar, {})
                at = len(pending) - 1
                if self._diag_row(unit, at, scale, (queued, valid, c, lc), [t, g, r, h], rate) is None:
                    pending.cut(at)
                    break
                k, n_lines = k + 1, n_lines + 12
                continue
            self._enabled = self._enabled or queued > 0
            row = {R_VALID: valid, LOSS: t, GLOBAL: g}  # `VadParser.commit`'s order: averaged, kept values
            if r != 0.0:
                row[REGION_LOSS] = r
            row[HARD] = h
            if c is not None:
                row[C_REGION] = c
                if lc is not None:
                    row[CH_REGION] = lc
            raw_name, exp_name, raw, exp = scale
            row[raw_name], row[exp_name] = raw, exp
            if rate is not None:
                row[LR] = rate
            row[MB_FILL], row[MB_ACTIVE] = queued, 1.0 if self._enabled else 0.0
            pending.add_row(bar, row, plain=REGION_LOSS in row and CH_REGION in row and LR in row)
            k, n_lines = k + 1, n_lines + 4
        return k, n_lines

    def _diag_row(
        self, unit: tuple[Any, ...], at: int, scale: Any, counts: Any, losses: list[float], rate: float | None
    ) -> int | None:
        """The row of a step with a [DIAG] block into pending row `at` (the rows before it are the steps
        before); returns how many rows before it went to the sink (its header closed them), None (nothing
        done) when a line of it does not parse."""
        queued, valid, c, lc = counts
        enabled = queued > 0 or self._enabled
        row = self._diag_values(unit, scale, losses, rate, enabled)
        if row is None:
            return None
        self._enabled = enabled
        shift = 0
        if not at or not self._merge(self._rows.cells(at - 1), queued, valid, c, lc, enabled):
            if at:
                self._flush(at)
                shift = at
            self.sink.bank_enabled = enabled
            self.lines.fwd, self.lines.bank = {R_VALID: valid}, [queued, math.nan]
            self.lines.commit()  # the [DIAG] header closes the counts' group into the open step
        self._rows.set_row(at - shift, row)
        return shift

    def _diag_values(
        self, unit: tuple[Any, ...], scale: Any, losses: list[float], rate: float | None, enabled: bool
    ) -> dict[str, float] | None:
        """The row of a step with a [DIAG] block, each value added once (its mean is itself); None when a
        line does not parse. Blocks whose other lines repeat share a template: only the logits' statistics,
        the cosine spread and the batch line's values differ (the same keys, so the same order)."""
        logits = parse_logits(unit[4])
        if logits is None:
            return None
        low, high, mean, std = logits
        if std is None:
            return None
        t, g, r, h = losses
        key = (unit[1:4], unit[5:8], scale, enabled, math.isfinite(std), r != 0.0, rate is None)
        template = self._templates.get(key)
        if template is None:
            group = self._diag(unit, scale)
            if group is None:
                return None
            fwd, bank = group
            fwd[LOSS], fwd[GLOBAL] = t, g  # the batch line (`VadParser.batch_line`)
            if r != 0.0:
                fwd[REGION_LOSS] = r
            fwd[HARD] = h
            if rate is not None:
                fwd[LR] = rate
            add, last = close_group(fwd, bank, enabled)
            if len(self._templates) >= 1024:
                self._templates.clear()
            self._templates[key] = {**add, **last}
            return {**add, **last}
        row = template.copy()
        row[L_MIN], row[L_MAX], row[L_MEAN] = low, high, mean
        if L_STD in row:
            row[L_STD] = std
            if COS_REGION in row:
                row[COS_REGION] = std / row[EXP_REGION]
        row[LOSS], row[GLOBAL], row[HARD] = t, g, h
        if r != 0.0:
            row[REGION_LOSS] = r
        if rate is not None:
            row[LR] = rate
        return row

    def _flush(self, k: int) -> None:
        """The first k pending rows to the sink; the last of them stays open, split as the line path leaves
        it (sums, kept values)."""
        records, step, last = self._rows.take(k)
        sums = {name: value for name, value in last.items() if name not in LAST_NAMES}
        self.sink.summed(
            records, step, sums, {name: value for name, value in last.items() if name in LAST_NAMES}
        )

    def _diag(self, unit: tuple[Any, ...], scale: tuple[str, str, float, float]) -> Group | None:
        """The forward group (values, bank) a [DIAG] block + scale line leave (`VadParser`'s handlers, in
        their order); None when a line does not parse (the line path reads the unit)."""
        _, valid_line, img_line, txt_line, logits_line, block_scale, bank_line, any_line = unit[:8]
        valid = vad.cached(valid_line, vad.parse_valid)
        img = vad.cached(img_line, vad.parse_norms)
        txt = vad.cached(txt_line, vad.parse_norms)
        first = vad.cached(block_scale, parse_logit_scale)
        bank = vad.cached(bank_line, lambda text: vad.bank_from_diag(vad.stats(text)))
        logits = parse_logits(logits_line)
        if valid is None or img is None or txt is None or bank is None:
            return None
        if logits is None or isinstance(first, str):
            return None
        fwd: dict[str, float] = {R_VALID: valid}
        if img[3]:
            fwd[R_BAD] = 1.0
        fwd[R_ZERO] = vad.zero_norm_count(img[0], img[1], img[2], valid)
        if txt[3]:
            fwd[R_BAD] = fwd.get(R_BAD, 0.0) + 1.0
        fwd[L_MIN], fwd[L_MAX], fwd[L_MEAN], std = logits
        if std is None:
            return None
        if math.isfinite(std):
            fwd[L_STD] = std
        raw_name, exp_name = SCALE_NAMES[first[0]]
        fwd[raw_name], fwd[exp_name] = first[1], first[2]
        fwd[MB_PTR] = bank[2]
        fwd[R_BAD] = fwd.get(R_BAD, 0.0) + (1.0 if "=True" in any_line else 0.0)
        fwd[scale[0]], fwd[scale[1]] = scale[2], scale[3]
        return fwd, [bank[0], bank[1]]

    @staticmethod
    def _merge(
        row: MutableMapping[str, float],
        queued: float,
        valid: float,
        c: float | None,
        lc: float | None,
        enabled: bool,
    ) -> bool:
        """Close the counts' group into `row` (built here, each value added once) as the [DIAG] header line
        does: the averaged values become means of two, the kept ones are replaced. False (nothing done) when
        the group adds a value the row lacks (the sink's order would differ)."""
        if (c is not None and C_REGION not in row) or (lc is not None and CH_REGION not in row):
            return False
        row[R_VALID] = (row[R_VALID] + valid) / 2
        if c is not None:
            row[C_REGION] = (row[C_REGION] + c) / 2
            if lc is not None:
                row[CH_REGION] = (row[CH_REGION] + lc) / 2
        row[MB_FILL] = queued
        row[MB_ACTIVE] = 1.0 if (queued > 0 or enabled) else 0.0
        return True
