"""Line grammar of the fgclip-vad fork (shared/reference/fgclip-vad.md section 5), UTF-8 or double-encoded.

Every pattern anchors on the ASCII parts of a line (`[MB-FORWARD]`, `Batch`, `ptr=`...) and reads numbers
only, so the Chinese words may arrive intact, as cp1252 mojibake (`å·²å¯ç”¨` for 已启用) or partly lost: the
mojibake of CJK text never contains ASCII digits or brackets. The parser object that attributes these lines to
steps is `vad_lines.VadParser`; canonical blocks take the whole-group path of `vad_groups`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from fgdiag import events as ev
from fgdiag.logs.values import NotANumber, to_float

REGION_LOSS = ev.head_metric(ev.HEAD_LOSS, "region")
PAIR_NAMES = {
    "total": ev.LOSS,
    "loss": ev.LOSS,
    "avgloss": ev.LOSS,
    "global": ev.head_metric(ev.HEAD_LOSS, "global"),
    "region": REGION_LOSS,
    "hard": ev.head_metric(ev.HEAD_LOSS, "hardneg"),
    "hardneg": ev.head_metric(ev.HEAD_LOSS, "hardneg"),
    "lr": ev.LEARNING_RATE,
}
BATCH_RE = re.compile(r"\[Epoch (\d+)\]\[Step (\d+)\](?:\[Batch (\d+)\])?")
# the fork's fixed field order, read in one match; other layouts fall back to parse_pairs
BATCH_FAST_RE = re.compile(
    r"\[Epoch (\d+)\]\[Step (\d+)\]\[Batch \d+\] (?:AvgLoss|Loss): (\S+) \| Global: (\S+) \| "
    r"Region: (\S+) \| Hard(?:Neg)?: (\S+)(?: \| MB: (\d+)/(\d+)[^|]*?(?= \||$))?(?: \| LR: (\S+))?"
)
LOSS_FAST_RE = re.compile(
    r"\] (?:Total|AvgLoss|Loss): (\S+) \| Global: (\S+) \| Region: (\S+) \| Hard(?:Neg)?: (\S+)"
)
PAIR_RE = re.compile(r"(\w+): ?([^\s|]+)")
STATS4_RE = re.compile(r"min=([^,\s]*), max=([^,\s]*), mean=([^,\s]*)(?:, std=([^,\s]*))?")
KV_RE = re.compile(r"(\w+)=([^,\s|]+)")
MB_FORWARD_RE = re.compile(r"\[MB-FORWARD\]\D*?(\d+)[^|]*\|\D*?(\d+)[^|]*\|\D*?(\d+)")
MB_SIZE_RE = re.compile(r"\[Memory Bank\][^\d@]*?(\d+)\s*,[^\d@]*?(\d+)\s*$")
MB_PTR_RE = re.compile(r"Ptr: (\d+)/(\d+)")
MB_FIRST_FULL_RE = re.compile(r"Ptr: \d+\D+\d+.*?(\d+)\s*$")
MB_FULL_QUEUE_RE = re.compile(r"\[MEMORY BANK\]\[(\w+)\]")
TABLE_HEADER_RE = re.compile(r"^Epoch\s+Global_Step\s+Batch\s+Loss\b")
TABLE_NAMES = {
    "loss": ev.LOSS,
    "loss_global": ev.head_metric(ev.HEAD_LOSS, "global"),
    "loss_region": REGION_LOSS,
    "loss_hard": ev.head_metric(ev.HEAD_LOSS, "hardneg"),
    "lr": ev.LEARNING_RATE,
}


def parse_pairs(text: str) -> tuple[dict[str, float], tuple[float, float] | None]:
    """`Loss: 3.35 | Global: 1.49 | Region: 1.85 | MB: 128/128 ✓ | LR: 4.17e-07 | Time: 0.77s` ->
    (metrics, (bank entries, bank size) or None). Unknown names (Time) are ignored."""
    metrics: dict[str, float] = {}
    bank = None
    names = PAIR_NAMES
    for name, value in PAIR_RE.findall(text):
        target = names.get(name.lower())
        if target is not None:
            try:
                metrics[target] = float(value)
            except ValueError:
                try:
                    number = to_float(value)
                except NotANumber:
                    continue
                if number is not None:
                    metrics[target] = number
        elif name == "MB":
            filled, slash, size = value.partition("/")
            if slash:
                try:
                    bank = (float(filled), float(size))
                except ValueError:
                    pass
    return metrics, bank


def stats(text: str) -> dict[str, str]:
    """`min=1.0, max=1.0, mean=1.0, std=0.0, has_nan=False` -> {'min': '1.0', ...}."""
    return dict(KV_RE.findall(text))


def zero_norm_count(lo: float, hi: float, mean: float, valid: float | None) -> float:
    """Estimate how many region features had zero norm from one norms line: features are unit vectors or
    exact zeros, so with N features the count is N * (max - mean) / max; 1 when N is unknown."""
    if not lo < 1e-6:
        return 0.0
    if valid and hi > 0 and math.isfinite(mean):
        return float(max(1, round(valid * (hi - mean) / hi)))
    return 1.0


def bank_from_diag(st: dict[str, str]) -> tuple[float, float, float] | None:
    """(filled, size, ptr) from `ptr=64, full=True, size=128` or `ptr=0, full=False, capacity=64`."""
    try:
        ptr = float(st["ptr"])
        size = float(st.get("size") or st.get("capacity") or "nan")
    except (KeyError, ValueError):
        return None
    full = st.get("full") == "True"
    filled = size if full and math.isfinite(size) else ptr
    return filled, size, ptr


# DIAG lines repeat verbatim for thousands of forwards (norms of unit vectors, the same scale): parsed values
# are cached by line text, which keeps a 1M-line log fast.
CACHE: dict[str, Any] = {}
CACHE_MAX = 8192


def cached(line: str, parse: Callable[[str], Any]) -> Any:
    """`parse(line)`, remembered by the line's text (bounded)."""
    hit = CACHE.get(line)
    if hit is None:
        hit = parse(line)
        if len(CACHE) >= CACHE_MAX:
            CACHE.clear()
        CACHE[line] = hit
    return hit


def parse_valid(line: str) -> float | None:
    """`  - valid_count=4 | bbox_batch_size=4` -> 4.0."""
    i = line.find("valid_count=")
    try:
        return float(line[i + 12 :].split(" ", 1)[0].split("|", 1)[0]) if i >= 0 else None
    except ValueError:
        return None


def parse_norms(line: str) -> tuple[float, float, float, bool] | None:
    """`  - img_norms: min=.., max=.., mean=.., std=.., has_nan=False` -> (min, max, mean, has_nan)."""
    m = STATS4_RE.search(line)
    if m is None:
        return None
    try:
        return float(m.group(1)), float(m.group(2)), float(m.group(3)), "has_nan=True" in line
    except ValueError:
        return None
