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
Whatever deviates (another bar, a step that does not follow the bar, a line that does not parse, an open
group) takes the per-line path; a test reads logs both ways and compares rows, events and counters.
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
    r"(\[MB-FORWARD\][^\n]*+)\n"  # 1: the counts line that opens the forward group
    r"(?:\[DIAG\] Region batch diagnostics:\n"  # 2-8: a canonical [DIAG] block (optional)
    r"(  - valid_count=[^\n]*+)\n(  - img_norms: [^\n]*+)\n(  - txt_norms: [^\n]*+)\n"
    r"(  - logits_i2t: [^\n]*+)\n(  - logit_scale \([^\n]*+)\n(  - memory_bank[^\n]*+)\n"
    r"(  - any_nan=[^\n]*+)\n)?"
    r"(logit_scale \([^\n]*+)\n"  # 9: the scale line (parsed through the line cache)
    r"\[ACCUMULATED\] Total[^\n]*+\n"  # its values are repeated by the batch line
    r"\r *\d+%\|[^|\r\n]*+\| *(\d+)/(\d+) \[[^\[\]\r\n]{0,80}?(?:it/s|s/it)[^\[\]\r\n]{0,20}\]"  # 10, 11: bar
    # 12: the rest of the line (`apply` checks it holds no more bars), from step 13 to the rate 18
    rf"(\[ACCUMULATED\]\[Epoch \d+\]\[Step (\d+)\]\[Batch \d+\] (?:AvgLoss|Loss): {_S} \| Global: {_S} \| "
    rf"Region: {_S} \| Hard(?:Neg)?: {_S}(?: \| MB: \d+/\d+[^|\r\n]*?(?= \||\n))?(?: \| LR: {_S})?"
    r"[^\r\n]*+)\n"
)
R_VALID, MB_FILL, MB_ACTIVE, LR = ev.REGIONS_VALID, ev.MB_FILL, ev.MB_ACTIVE, ev.LEARNING_RATE
R_ZERO, R_BAD, MB_PTR = ev.REGIONS_ZERO_NORM, ev.REGIONS_NONFINITE, ev.MB_PTR
C_REGION, CH_REGION = ev.head_metric(ev.CANDIDATES, REGION), ev.head_metric(ev.CHANCE, REGION)
L_MIN, L_MAX, L_MEAN, L_STD = (
    ev.head_metric(n, REGION) for n in (ev.LOGITS_MIN, ev.LOGITS_MAX, ev.LOGITS_MEAN, ev.LOGITS_STD)
)
LOSS, GLOBAL, REGION_LOSS, HARD = LOSS_NAMES
SCALE_NAMES = {
    h: (ev.head_metric(ev.LOGIT_SCALE, h), ev.head_metric(ev.LOGIT_SCALE_EXP, h)) for h in ev.HEADS
}
CACHE_MAX = 4096
Group = tuple[dict[str, float], list[float]]


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
        """The state a unit leaves: no forward group open, the row of the bar's step open."""
        sink, lines = self.sink, self.lines
        return (
            lines.loss_text is None
            and not lines.fwd
            and lines.bank is None
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
        sink = self.sink
        prev, total, enabled = sink.step, self.hf.bar_total, sink.bank_enabled
        steps: list[int] = []
        sums: list[dict[str, float]] = []
        lasts: list[dict[str, float]] = []
        log = math.log
        k = n_lines = 0
        for unit in islice(units, first, None):
            counts_line, diag, *_, scale_line, n, tot, rest, step, t, g, r, h, rate = unit
            bar = int(n)
            if int(tot) != total or bar <= prev or int(step) + 1 != bar or "it/s]" in rest or "s/it]" in rest:
                break  # not at the bar's step, or more bars on the line (the line path reads those)
            scale = vad.cached(scale_line, parse_logit_scale)
            counts = self._count(counts_line)
            if isinstance(scale, str) or counts is None:
                break
            try:
                total_loss, glob, region, hard = float(t), float(g), float(r), float(h)
            except ValueError:
                break
            queued, valid = counts
            if diag is not None:
                group = self._diag(unit, scale)
                if group is None:
                    break
                if steps:
                    sink.sum_rows(steps, sums, lasts)
                    steps, sums, lasts = [], [], []
                enabled = enabled or queued > 0
                self._apply_diag(queued, valid, enabled, bar, group, (total_loss, glob, region, hard), rate)
                prev = bar
                k += 1
                n_lines += 12
                continue
            enabled = enabled or queued > 0
            add = {R_VALID: valid, LOSS: total_loss, GLOBAL: glob}
            if region != 0.0:  # the fork logs 0.0 when a micro-batch has no valid region
                add[REGION_LOSS] = region
            add[HARD] = hard
            if valid:
                c = valid + queued
                add[C_REGION] = c
                if c > 1:
                    add[CH_REGION] = log(c)
            raw_name, exp_name = SCALE_NAMES[scale[0]]
            keep = {raw_name: scale[1], exp_name: scale[2]}
            if rate is not None:
                try:
                    keep[LR] = float(rate)
                except ValueError:
                    pass
            keep[MB_FILL] = queued
            keep[MB_ACTIVE] = 1.0 if enabled else 0.0
            steps.append(bar)
            sums.append(add)
            lasts.append(keep)
            prev = bar
            k += 1
            n_lines += 4
        if not k:
            return 0, 0, 0, 0
        if steps:
            sink.sum_rows(steps, sums, lasts)
        sink.bank_enabled = enabled
        self.hf.bar_n = prev
        return k, n_lines, 0, 0

    def _diag(self, unit: tuple[Any, ...], scale: tuple[str, float, float]) -> Group | None:
        """The forward group (values, bank) a [DIAG] block + scale line leave (`VadParser`'s handlers, in
        their order); None when a line does not parse (the line path reads the unit)."""
        _, valid_line, img_line, txt_line, logits_line, block_scale, bank_line, any_line = unit[:8]
        valid = vad.cached(valid_line, vad.parse_valid)
        img = vad.cached(img_line, vad.parse_norms)
        txt = vad.cached(txt_line, vad.parse_norms)
        first = vad.cached(block_scale, parse_logit_scale)
        bank = vad.cached(bank_line, lambda text: vad.bank_from_diag(vad.stats(text)))
        m = vad.STATS4_RE.search(logits_line)
        if valid is None or img is None or txt is None or isinstance(first, str) or bank is None or m is None:
            return None
        fwd: dict[str, float] = {R_VALID: valid}
        if img[3]:
            fwd[R_BAD] = 1.0
        fwd[R_ZERO] = vad.zero_norm_count(img[0], img[1], img[2], valid)
        if txt[3]:
            fwd[R_BAD] = fwd.get(R_BAD, 0.0) + 1.0
        try:
            fwd[L_MIN], fwd[L_MAX], fwd[L_MEAN] = float(m.group(1)), float(m.group(2)), float(m.group(3))
            std = float(m.group(4)) if m.group(4) else math.nan
        except ValueError:
            return None
        if math.isfinite(std):
            fwd[L_STD] = std
        raw_name, exp_name = SCALE_NAMES[first[0]]
        fwd[raw_name], fwd[exp_name] = first[1], first[2]
        fwd[MB_PTR] = bank[2]
        fwd[R_BAD] = fwd.get(R_BAD, 0.0) + (1.0 if "=True" in any_line else 0.0)
        raw_name, exp_name = SCALE_NAMES[scale[0]]
        fwd[raw_name], fwd[exp_name] = scale[1], scale[2]
        return fwd, [bank[0], bank[1]]

    def _apply_diag(
        self,
        queued: float,
        valid: float,
        enabled: bool,
        bar: int,
        group: Group,
        losses: tuple[float, float, float, float],
        rate: str | None,
    ) -> None:
        """A unit with a [DIAG] block through `VadParser.commit`, as the line path: the counts line's group
        closes into the open step when the block starts, the block's group into the bar's step."""
        sink, lines = self.sink, self.lines
        sink.bank_enabled = enabled
        lines.fwd, lines.bank = {R_VALID: valid}, [queued, math.nan]
        lines.commit()  # the [DIAG] header line
        sink.at(bar)  # the bar moves the step (`HfParser.bar`)
        self.hf.bar_n = bar
        total_loss, glob, region, hard = losses
        fwd, bank = group
        fwd[LOSS], fwd[GLOBAL] = total_loss, glob
        if region != 0.0:
            fwd[REGION_LOSS] = region
        fwd[HARD] = hard
        if rate is not None:
            try:
                fwd[LR] = float(rate)
            except ValueError:
                pass
        lines.fwd, lines.bank = fwd, bank
        lines.commit(bar)
