"""`VadGroups`: the whole-group fast path for the fgclip-vad forward group, the bulk of a diagnostic log:

    [DIAG] Region batch diagnostics:            (8-9 indented lines: counts, norms, logits, scale, bank, nan)
    [LOSS] Total: ... | Region: ...             (optional; the batch line repeats its values)
    <tqdm bar>[Epoch e][Step s][Batch b] Loss: ... | Region: ... | MB: k/128 | LR: ...

One regex over the decoded buffer finds canonical groups (`finditer`); `apply` turns each into the same values
the per-line `VadParser` would, so both paths give identical rows (a test compares them). Groups are held
raw and converted column-wise when the step's row is read (`fold`). Anything that deviates from the
canonical layout (a rank prefix, a missing line, a wrapped line) does not match and takes the line path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from fgdiag import events as ev
from fgdiag.logs import vad
from fgdiag.logs.sink import LogSink
from fgdiag.logs.vad_lines import SCALE_NAMES, VadParser
from fgdiag.wire import parse_logit_scale

# numbers the regex accepts always convert with float(): garbage makes the group fall back to the line path
_F = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_N = f"({_F})"
GROUP_RE = re.compile(
    r"\[DIAG\] Region batch diagnostics:\n"
    # implied by what follows, and cheap: a block followed by neither a [LOSS] nor a batch line (the fork's
    # trainer prints its scale line there; `VadSteps` reads those) fails here, before the captures
    r"(?=(?:  - [^\n]*+\n){7,9}?(?:\[LOSS\] |[^\n]*?\[Epoch ))"
    r"(  - valid_count=[^\n]*)\n"  # lines that repeat verbatim are captured whole and parsed through a cache
    r"(  - img_norms: [^\n]*)\n"
    r"(  - txt_norms: [^\n]*)\n"
    rf"  - logits_i2t: min={_N}, max={_N}, mean={_N}, std={_N}, has_nan=(?:True|False)\n"
    r"(  - logit_scale \(\w+\): [^\n]*)\n"
    r"(  - memory_bank[^\n]*)\n(?:(  - memory_bank[^\n]*)\n)?"
    r"(  - any_nan=[^\n]*)\n"
    r"(?:  - sample_logits_row0_first5:[^\n]*\n)?"
    r"(?:(\[LOSS\] [^\n]*)\n)?"
    r"([^\n\[]*(?:\[[^\nE][^\n\[]*)*?)"  # a tqdm bar drawn before the batch line (no `[Epoch`)
    r"(?:\[ACCUMULATED\])?\[Epoch \d+\]\[Step (\d+)\]\[Batch \d+\] (?:AvgLoss|Loss): "
    rf"{_N} \| Global: {_N} \| Region: {_N} \| Hard(?:Neg)?: {_N}"
    r"(?: \| MB: \d+/\d+[^|\n]*?(?= \||\n|\Z))?"
    rf"(?: \| LR: {_N})?(?: \| [^\n]*)?(?:\n|\Z)"
)
RH = "region"
NAN, INF = math.nan, math.inf
R_VALID, R_ZERO, R_BAD = ev.REGIONS_VALID, ev.REGIONS_ZERO_NORM, ev.REGIONS_NONFINITE
AVERAGED = tuple(
    ev.head_metric(b, RH)
    for b in (
        ev.LOGITS_MIN,
        ev.LOGITS_MAX,
        ev.LOGITS_MEAN,
        ev.LOGITS_STD,
        ev.HEAD_LOSS,
        ev.CANDIDATES,
        ev.CHANCE,
        ev.COS_STD,
    )
)
LOSS, GLOBAL, HARD = ev.LOSS, ev.head_metric(ev.HEAD_LOSS, "global"), ev.head_metric(ev.HEAD_LOSS, "hardneg")

MB_PTR, MB_FILL, MB_SIZE, MB_ACTIVE, LR = ev.MB_PTR, ev.MB_FILL, ev.MB_SIZE, ev.MB_ACTIVE, ev.LEARNING_RATE
MARKER = "[DIAG] Region batch diagnostics:\n  - valid_count="


def _matches(text: str) -> Iterator[re.Match[str]]:
    """`GROUP_RE.finditer(text)`: a match starts with MARKER, found by `str.find` (which skips ahead; sre's
    search steps a character at a time through the fork's text, whose [DIAG] blocks are no group)."""
    pos, find, match = 0, text.find, GROUP_RE.match
    while (i := find(MARKER, pos)) >= 0:
        m = match(text, i)
        if m is None:
            pos = i + 1
        else:
            yield m
            pos = m.end()


class VadGroups:
    """Canonical forward groups of a buffer, applied in one step each."""

    def __init__(self, sink: LogSink, lines: VadParser) -> None:
        self.sink = sink
        self.lines = lines  # the per-line parser: its open group is closed before a whole group applies
        self.raw: list[tuple[Any, ...]] = []  # groups of the current step, not yet folded into its sums
        self._banks: dict[str, tuple[float, float, float] | None] = {}
        self._scales: dict[str, tuple[str, float, float] | str] = {}

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Canonical groups in `text` (nothing when it holds no DIAG block)."""
        if MARKER not in text:
            return iter(())
        self.sink.formats.add("fgclip-vad")
        return _matches(text)

    def _bank(self, line: str) -> tuple[float, float, float] | None:
        hit = self._banks.get(line, False)
        if hit is False:
            if len(self._banks) > 4096:
                self._banks.clear()
            hit = self._banks[line] = vad.bank_from_diag(vad.stats(line))
        return hit  # type: ignore[return-value]

    def _scale(self, line: str) -> tuple[str, float, float] | str:
        parsed = self._scales.get(line)
        if parsed is None:
            if len(self._scales) > 4096:
                self._scales.clear()
            parsed = self._scales[line] = parse_logit_scale(line)
        return parsed

    def apply(self, m: re.Match[str], prefix: Callable[[str], Any]) -> bool:
        """Apply one matched group exactly as the per-line handlers would; False (nothing applied) when a part
        is not canonical, so the per-line path handles the group instead. `prefix(text)` reads what precedes
        the batch line on its line (a tqdm bar)."""
        (
            valid_line,
            img_line,
            txt_line,
            l_min,
            l_max,
            l_mean,
            l_std,
            scale_line,
            bank1,
            bank2,
            any_line,
            _loss_line,
            before,
            step,
            total,
            glob,
            region,
            hard,
            lr,
        ) = m.groups()
        cache = vad.CACHE
        valid = cache.get(valid_line) or vad.cached(valid_line, vad.parse_valid)
        img = cache.get(img_line) or vad.cached(img_line, vad.parse_norms)
        txt = cache.get(txt_line) or vad.cached(txt_line, vad.parse_norms)
        if valid is None or img is None or txt is None:
            return False
        scale = self._scales.get(scale_line) or self._scale(scale_line)
        b1 = self._banks.get(bank1) or self._bank(bank1)
        if isinstance(scale, str) or b1 is None:
            return False
        if bank2 is not None:
            b2 = self._bank(bank2)
            if b2 is None:
                return False
            filled, size, ptr = b1[0] + b2[0], b1[1] + b2[1], b2[2]
        else:
            filled, size, ptr = b1
        sink, lines = self.sink, self.lines
        if lines.open_group:
            lines.commit()  # what the [DIAG] header line does
        if before and not before.isspace():
            prefix(before)
        lines.drop_loss_text()
        sink.at(int(step) + 1)
        active = 1.0 if (filled > 0 or sink.bank_enabled) else 0.0
        bad = img[3] + txt[3] + ("=True" in any_line)
        head, raw, exp = scale
        self.raw.append(
            (valid, img[0], img[1], img[2], bad, l_min, l_max, l_mean, l_std, total, glob, region, hard,
             filled, size, ptr, active, lr, head, raw, exp)
        )  # fmt: skip
        sink.defer(self.fold)
        return True

    def fold(self) -> None:
        """Add the held groups to the step's sums, converting whole columns at once (map(float, column) runs
        in C); the per-forward rules are those of the line path (see `apply`)."""
        raw, self.raw = self.raw, []
        if not raw:
            return
        sink = self.sink
        (
            valid,
            lo,
            hi,
            mean,
            bad,
            l_min,
            l_max,
            l_mean,
            l_std,
            total,
            glob,
            region,
            hard,
            filled,
            size,
            ptr,
            active,
            lr,
            head,
            raw_s,
            exp,
        ) = zip(*raw, strict=True)
        f, log = float, math.log
        count = len(raw)
        n = valid
        std = [v if v == v and v != INF and v != -INF else NAN for v in map(f, l_std)]
        k = [a + b if a else NAN for a, b in zip(n, filled, strict=True)]
        new_sums = {  # present in every forward: summed straight from the strings
            R_VALID: sum(n),
            R_BAD: f(sum(bad)),
            AVERAGED[0]: sum(map(f, l_min)),
            AVERAGED[1]: sum(map(f, l_max)),
            AVERAGED[2]: sum(map(f, l_mean)),
            LOSS: sum(map(f, total)),
            GLOBAL: sum(map(f, glob)),
            HARD: sum(map(f, hard)),
            R_ZERO: sum(
                [
                    vad.zero_norm_count(a, b, c, m)
                    for a, b, c, m in zip(lo, hi, mean, n, strict=True)
                    if a < 1e-6
                ]
            ),
        }
        new_cnt = dict.fromkeys(new_sums, count)
        for name, vals in (  # NaN marks "absent in this forward"
            (AVERAGED[3], [v for v in std if v == v]),
            (AVERAGED[4], [v for v in map(f, region) if v != 0.0]),  # 0.0: no region; a NaN loss stays NaN
            (AVERAGED[5], [v for v in k if v == v]),
            (AVERAGED[6], [log(x) for x in k if x > 1]),
            (
                AVERAGED[7],
                [s / e for s, h, e in zip(std, head, exp, strict=True) if s == s and h == RH and e],
            ),
        ):
            if vals:
                new_sums[name] = sum(vals)
                new_cnt[name] = len(vals)
        sink.add_sums(new_sums, new_cnt)
        keep = sink.keep_last
        keep(MB_PTR, ptr[-1])
        keep(MB_FILL, filled[-1])
        keep(MB_ACTIVE, active[-1])
        if size[-1] == size[-1]:
            keep(MB_SIZE, size[-1])
        rates = [x for x in lr if x is not None]
        if rates:
            keep(LR, f(rates[-1]))
        if head.count(head[0]) == count:  # one head throughout (always, in the fork's logs)
            raw_name, exp_name = SCALE_NAMES[head[0]]
            keep(raw_name, raw_s[-1])
            keep(exp_name, exp[-1])
        else:
            for h, value, scale in zip(head, raw_s, exp, strict=True):
                raw_name, exp_name = SCALE_NAMES[h]
                keep(raw_name, value)
                keep(exp_name, scale)
