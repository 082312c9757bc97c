"""`VadSteps`: the fgclip-vad fork's optimizer steps without a [DIAG] block, read a run at a time.

Between its [DIAG] blocks the fork's trainer prints four lines per optimizer step:

    logit_scale (finegrained): 4.605170 (exp=100.0000)
    [ACCUMULATED] Total: ... | Global: ... | Region: ... | HardNeg: ...
    <tqdm bar>[ACCUMULATED][Epoch e][Step s][Batch b] AvgLoss: ... | MB: 128/128 ✓ | LR: ... | Time: ...
    [MB-FORWARD] 使用128个历史负样本 | Batch内: 4 | 总负样本: 132

One regex finds such units in a buffer (the batch line's part is `vad.BATCH_FAST_RE` with the line end
made explicit); once the per-line path has read one, the ones that follow are applied in bulk: each gives the
row `VadParser` would give (the [MB-FORWARD] line opens the next forward group with its counts, the scale
line joins it, the batch line closes it at step s + 1 after the bar moved there). Whatever deviates (another
bar, a step that does not follow the bar, a scale or count line that does not parse, an open [DIAG] group)
takes the per-line path; a test reads logs both ways and compares rows, events and counters.
"""

from __future__ import annotations

import math
import re
from itertools import islice
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import REGION
from fgdiag.logs import vad
from fgdiag.logs.hf import HfParser
from fgdiag.logs.sink import LogSink
from fgdiag.logs.vad_lines import LOSS_NAMES, VadParser
from fgdiag.wire import parse_logit_scale

_S = r"(\S+)"
UNIT_RE = re.compile(
    r"(logit_scale \([^\n]*+)\n"  # 1: the scale line (parsed through the line cache)
    r"\[ACCUMULATED\] Total[^\n]*+\n"  # its values are repeated by the batch line
    r"\r *\d+%\|[^|\r\n]*+\| *(\d+)/(\d+) \[[^\[\]\r\n]{0,80}?(?:it/s|s/it)[^\[\]\r\n]{0,20}\]"  # 2, 3: bar
    # 4: the rest of the line (`apply` checks it holds no more bars), from step 5 to the rate 10
    rf"(\[ACCUMULATED\]\[Epoch \d+\]\[Step (\d+)\]\[Batch \d+\] (?:AvgLoss|Loss): {_S} \| Global: {_S} \| "
    rf"Region: {_S} \| Hard(?:Neg)?: {_S}(?: \| MB: \d+/\d+[^|\r\n]*?(?= \||\n))?(?: \| LR: {_S})?"
    r"[^\r\n]*+)\n"
    r"(\[MB-FORWARD\][^\n]*+)\n"  # 11: the next forward group's counts
)
R_VALID, MB_FILL, MB_ACTIVE, LR = ev.REGIONS_VALID, ev.MB_FILL, ev.MB_ACTIVE, ev.LEARNING_RATE
C_REGION, CH_REGION = ev.head_metric(ev.CANDIDATES, REGION), ev.head_metric(ev.CHANCE, REGION)
LOSS, GLOBAL, REGION_LOSS, HARD = LOSS_NAMES
SCALE_NAMES = {
    h: (ev.head_metric(ev.LOGIT_SCALE, h), ev.head_metric(ev.LOGIT_SCALE_EXP, h)) for h in ev.HEADS
}
CACHE_MAX = 4096


def _counts(line: str) -> tuple[float, float] | None:
    m = vad.MB_FORWARD_RE.search(line)
    return None if m is None else (float(m.group(1)), float(m.group(2)))


class VadSteps:
    """Finds the fork's step units in a buffer (`pattern`) and applies runs of them (`apply`)."""

    def __init__(self, hf: HfParser, lines: VadParser, sink: LogSink) -> None:
        self.hf = hf
        self.lines = lines
        self.sink = sink
        self._counts: dict[str, tuple[float, float] | None] = {}

    def pattern(self) -> re.Pattern[str] | None:
        """The unit regex once the training bar is known (the per-line path reads the first unit)."""
        return UNIT_RE if self.hf.bar_total is not None else None

    def ready(self) -> bool:
        """The state a unit leaves: only the [MB-FORWARD] counts open, the row of the bar's step open."""
        sink, lines = self.sink, self.lines
        bank = lines.bank
        return (
            lines.loss_text is None
            and bank is not None
            and bank[1] != bank[1]  # the size is not known (NaN): the counts line opened the group
            and len(lines.fwd) == 1
            and R_VALID in lines.fwd
            and not sink.has_deferred()
            and sink.open_step() == sink.step == sink.max_step == self.hf.bar_n
        )

    def _count(self, line: str) -> tuple[float, float] | None:
        hit = self._counts.get(line, ...)
        if hit is ...:
            if len(self._counts) >= CACHE_MAX:
                self._counts.clear()
            hit = self._counts[line] = _counts(line)
        return hit

    def apply(self, units: list[tuple[Any, ...]], first: int, gap: Any = None) -> tuple[int, int, int, int]:
        """Apply units[first:] (each `match.groups()`) while they are canonical. Returns (units applied,
        lines, blank, unparsed), 0 units when the first must take the per-line path."""
        if first >= len(units) or not self.ready():
            return 0, 0, 0, 0
        sink, lines = self.sink, self.lines
        prev, total, enabled = sink.step, self.hf.bar_total, sink.bank_enabled
        assert lines.bank is not None
        valid, queued = lines.fwd[R_VALID], lines.bank[0]
        steps: list[int] = []
        sums: list[dict[str, float]] = []
        lasts: list[dict[str, float]] = []
        log = math.log
        for scale_line, n, tot, rest, step, *numbers, rate, counts_line in islice(units, first, None):
            bar = int(n)
            if int(tot) != total or bar <= prev or int(step) + 1 != bar or "it/s]" in rest or "s/it]" in rest:
                break  # not at the bar's step, or more bars on the line (the line path reads those)
            scale = vad.cached(scale_line, parse_logit_scale)
            counts = self._count(counts_line)
            if isinstance(scale, str) or counts is None:
                break
            try:
                total_loss, glob, region, hard = map(float, numbers)
            except ValueError:
                break
            add = {R_VALID: valid, LOSS: total_loss, GLOBAL: glob}
            if region != 0.0:  # the fork logs 0.0 when a micro-batch has no valid region
                add[REGION_LOSS] = region
            add[HARD] = hard
            raw_name, exp_name = SCALE_NAMES[scale[0]]
            keep = {raw_name: scale[1], exp_name: scale[2]}
            if rate is not None:
                try:
                    keep[LR] = float(rate)
                except ValueError:
                    pass
            keep[MB_FILL] = queued
            keep[MB_ACTIVE] = 1.0 if (queued > 0 or enabled) else 0.0
            if valid:
                k = valid + queued
                add[C_REGION] = k
                if k > 1:
                    add[CH_REGION] = log(k)
            steps.append(bar)
            sums.append(add)
            lasts.append(keep)
            prev = bar
            queued, valid = counts
            enabled = enabled or queued > 0
        k = len(steps)
        if not k:
            return 0, 0, 0, 0
        sink.sum_rows(steps, sums, lasts)
        sink.bank_enabled = enabled
        lines.fwd = {R_VALID: valid}
        lines.bank = [queued, math.nan]
        self.hf.bar_n = steps[-1]
        return k, 4 * k, 0, 0
