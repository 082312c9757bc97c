"""Whole-group fast path for the fgclip-vad forward group, the bulk of a diagnostic log:

    [DIAG] Region batch diagnostics:            (8-9 indented lines: counts, norms, logits, scale, bank, nan)
    [LOSS] Total: ... | Region: ...             (optional; the batch line repeats its values)
    <tqdm bar>[Epoch e][Step s][Batch b] Loss: ... | Region: ... | MB: k/128 | LR: ...

One regex over the decoded chunk finds canonical groups; each becomes the same forward dict the per-line
handlers would build, so both paths give identical rows (a test compares them). Anything that deviates from
the canonical layout (a rank prefix, a missing line, a wrapped line) simply does not match and takes the
per-line path.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from fgdiag import events as ev
from fgdiag.logs import vad
from fgdiag.logs.handlers import _CACHE, _cached, _norms, _valid

if TYPE_CHECKING:
    from fgdiag.logs.reader import LogReader

# numbers the regex accepts always convert with float(): garbage makes the group fall back to the line path
_F = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
_N = f"({_F})"
GROUP_RE = re.compile(
    r"\[DIAG\] Region batch diagnostics:\n"
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


def feed_text(r: LogReader, text: str) -> None:
    """Process complete lines, taking canonical forward groups in one match and the rest line by line."""
    if "[DIAG] Region batch diagnostics:\n  - valid_count=" not in text:
        r._lines(text.split("\n"))
        return
    pos = 0
    r.formats.add("fgclip-vad")
    group = _group
    for m in GROUP_RE.finditer(text):
        start, end = m.span()
        if start and text[start - 1] != "\n":
            continue
        if start > pos:
            r._lines(text[pos : start - 1].split("\n"))
        ends = text[end - 1] == "\n"
        n_lines = text.count("\n", start, end) + (0 if ends else 1)
        if r._tb is not None or not group(r, m, r.lines + n_lines):
            r._lines(text[start : end - 1 if ends else end].split("\n"))
        else:
            r.lines += n_lines
            r.lineno = r.lines
        pos = end
    if pos < len(text):
        r._lines(text[pos:].split("\n"))
    elif text.endswith("\n"):
        r._lines([""])


_BANKS: dict[str, tuple[float, float, float] | None] = {}
_SCALES: dict[str, tuple[str, float, float] | str] = {}
SCALE_NAMES = {
    h: (ev.head_metric(ev.LOGIT_SCALE, h), ev.head_metric(ev.LOGIT_SCALE_EXP, h)) for h in ev.HEADS
}
MB_PTR, MB_FILL, MB_SIZE, MB_ACTIVE, LR = ev.MB_PTR, ev.MB_FILL, ev.MB_SIZE, ev.MB_ACTIVE, ev.LEARNING_RATE


def _bank(line: str) -> tuple[float, float, float] | None:
    hit = _BANKS.get(line, False)
    if hit is False:
        if len(_BANKS) > 4096:
            _BANKS.clear()
        hit = _BANKS[line] = vad.bank_from_diag(vad.stats(line))
    return hit


def _scale(line: str) -> tuple[str, float, float] | str:
    parsed = _SCALES.get(line)
    if parsed is None:
        from fgdiag.logs.trainer import parse_scale

        if len(_SCALES) > 4096:
            _SCALES.clear()
        parsed = _SCALES[line] = parse_scale(line)
    return parsed


def _group(r: LogReader, m: re.Match[str], last_line: int) -> bool:
    """Apply one matched group exactly as the per-line handlers would; False (nothing applied) when a part is
    not canonical, so the per-line path handles the group instead."""
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
        loss_line,
        prefix,
        step,
        total,
        glob,
        region,
        hard,
        lr,
    ) = m.groups()
    cache = _CACHE
    valid = cache.get(valid_line) or _cached(valid_line, _valid)
    img = cache.get(img_line) or _cached(img_line, _norms)
    txt = cache.get(txt_line) or _cached(txt_line, _norms)
    if valid is None or img is None or txt is None:
        return False
    scale = _SCALES.get(scale_line) or _scale(scale_line)
    b1 = _BANKS.get(bank1) or _bank(bank1)
    if isinstance(scale, str) or b1 is None:
        return False
    if bank2 is not None:
        b2 = _bank(bank2)
        if b2 is None:
            return False
        filled, size, ptr = b1[0] + b2[0], b1[1] + b2[1], b2[2]
    else:
        filled, size, ptr = b1
    if r._fwd or r._bank is not None or r._loss_text is not None:
        r._commit_fwd()  # what the [DIAG] header line does
    if prefix and not prefix.isspace():
        r.lineno = last_line
        r._slow(prefix)
    r._loss_text = None
    s = int(step) + 1
    if s != r._row_step or s != r.step:
        r._at(s)
    active = 1.0 if (filled > 0 or r._mb_enabled) else 0.0
    bad = img[3] + txt[3] + ("=True" in any_line)
    head, raw, exp = scale
    r._fraw.append(
        (
            valid,
            img[0],
            img[1],
            img[2],
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
            raw,
            exp,
        )
    )
    return True


def fold(r: LogReader, raw: list[tuple]) -> None:
    """Add raw fast-path groups to the reader's step accumulators, converting whole columns at once
    (map(float, column) runs in C); the per-forward rules are those of the line path (see _group)."""
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
            [vad.zero_norm_count(a, b, c, m) for a, b, c, m in zip(lo, hi, mean, n, strict=True) if a < 1e-6]
        ),
    }
    new_cnt = dict.fromkeys(new_sums, count)
    for name, vals in (  # NaN marks "absent in this forward"
        (AVERAGED[3], [v for v in std if v == v]),
        (AVERAGED[4], [v for v in map(f, region) if v != 0.0]),  # 0.0: no region; a NaN loss stays NaN
        (AVERAGED[5], [v for v in k if v == v]),
        (AVERAGED[6], [log(x) for x in k if x > 1]),
        (AVERAGED[7], [s / e for s, h, e in zip(std, head, exp, strict=True) if s == s and h == RH and e]),
    ):
        if vals:
            new_sums[name] = sum(vals)
            new_cnt[name] = len(vals)
    sums, cnt = r._sum, r._cnt
    if not sums:
        r._sum, r._cnt = new_sums, new_cnt
    else:
        for name, value in new_sums.items():
            if name in sums:
                sums[name] += value
                cnt[name] += new_cnt[name]
            else:
                sums[name] = value
                cnt[name] = new_cnt[name]
    last = r._last
    last[MB_PTR], last[MB_FILL], last[MB_ACTIVE] = ptr[-1], filled[-1], active[-1]
    if size[-1] == size[-1]:
        last[MB_SIZE] = size[-1]
    rates = [x for x in lr if x is not None]
    if rates:
        last[LR] = f(rates[-1])
    if head.count(head[0]) == count:  # one head throughout (always, in the fork's logs)
        raw_name, exp_name = SCALE_NAMES[head[0]]
        last[raw_name], last[exp_name] = raw_s[-1], exp[-1]
    else:
        for h, value, scale in zip(head, raw_s, exp, strict=True):
            raw_name, exp_name = SCALE_NAMES[h]
            last[raw_name] = value
            last[exp_name] = scale
