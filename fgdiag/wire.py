"""The wire format of our human log lines, beside `events.py` (the JSONL one): it formats them and parses
them.

The live training callback prints these lines and `fgdiag watch` reads them, so both sides must use this
module: a format change here changes the parser in the same edit. Three lines exist:

    logit_scale (finegrained): 4.605200 (exp=100.0000)          (also `(global)`, `(hardneg)`)
    [Memory Bank] enabled @ training_step 7 (candidates 4 -> 132)
    [fgdiag] step 40 | loss 2.3100 | region 0.8400 (K=132, ln K=4.8828) | scale global=4.605200 ... | lr
    5.000e-06

The first keeps the fgclip-vad fork's spelling on purpose: logs of the fork and of our runs then read the
same.
The summary line is a list of ` | `-separated segments `<keyword> <values>`; unknown keywords are skipped by
the parser, so later versions can add segments without breaking older readers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from fgdiag import events as ev
from fgdiag.facts.aliases import head_of

# head name -> label printed in the logit-scale line (the fork's spelling for the region head); read back
# through fgdiag.facts.aliases.HEAD_ALIASES, which also knows the fork's other spellings
HEAD_LABELS = {"global": "global", "region": "finegrained", "hardneg": "hardneg"}

LOGIT_SCALE_RE = re.compile(r"logit_scale \((\w+)\): *([-+\w.]+)(?: *\(exp=([-+\w.]+)\))?")
MB_ENABLED_RE = re.compile(r"\[Memory Bank\].*?@ training_step (\d+)(?: \(candidates (\d+) -> (\d+)\))?")
SUMMARY_TAG = "[fgdiag] step "
SUMMARY_RE = re.compile(r"\[fgdiag\] step (\d+)((?: \| .*)?)$")
_KV_RE = re.compile(r"([\w.]+)=(\S+)")
_HEAD_LOSS_RE = re.compile(r"^([-+\w.]+)(?: \(K=([-+\w.]+), ln K=([-+\w.]+)\))?$")


def _num(value: float | None, spec: str) -> str:
    """Format a float; non-finite values print as nan / inf / -inf, which float() reads back."""
    value = float(value) if value is not None else math.nan
    if math.isfinite(value):
        return format(value, spec)
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def format_logit_scale(head: str, raw: float) -> str:
    """`logit_scale (finegrained): 4.605200 (exp=100.0000)` for one head (raw = log-space parameter)."""
    label = HEAD_LABELS.get(head, head)
    try:
        scale = math.exp(raw) if math.isfinite(raw) and raw < 700 else float("inf")
    except (TypeError, OverflowError):
        scale = float("nan")
    return f"logit_scale ({label}): {_num(raw, '.6f')} (exp={_num(scale, '.4f')})"


def parse_logit_scale(line: str) -> tuple[str, float, float] | str:
    """(head, raw, exp) of a logit-scale line (ours or the fork's spelling), or why it does not parse."""
    m = LOGIT_SCALE_RE.search(line)
    if m is None:
        return line
    head = head_of(m.group(1))
    if head is None:
        return f"unknown head {m.group(1)!r}"
    try:
        raw = float(m.group(2))
        return head, raw, float(m.group(3)) if m.group(3) else math.exp(raw)
    except (ValueError, OverflowError):
        return line


def format_memory_bank_enabled(
    step: int, candidates_before: int | None = None, candidates_after: int | None = None
) -> str:
    """`[Memory Bank] enabled @ training_step N (candidates 4 -> 132)`; N counts optimizer steps."""
    line = f"[Memory Bank] enabled @ training_step {int(step)}"
    if candidates_before is not None and candidates_after is not None:
        line += f" (candidates {int(candidates_before)} -> {int(candidates_after)})"
    return line


# --- the one-line per-logging-step summary -------------------------------------------------------------


def _fmt_heads(metrics: Mapping[str, float | None], base: str, spec: str) -> str | None:
    parts = [
        f"{h}={_num(metrics[f'{base}/{h}'], spec)}"
        for h in ev.HEADS
        if metrics.get(f"{base}/{h}") is not None
    ]
    return " ".join(parts) or None


def _fmt_logits(metrics: Mapping[str, float | None]) -> str | None:
    parts = []
    for h in ev.HEADS:
        lo, hi = metrics.get(f"{ev.LOGITS_MIN}/{h}"), metrics.get(f"{ev.LOGITS_MAX}/{h}")
        if lo is not None and hi is not None:
            parts.append(f"{h}={_num(lo, '.4f')}:{_num(hi, '.4f')}")
    return " ".join(parts) or None


def _fmt_mb(metrics: Mapping[str, float | None]) -> str | None:
    active, fill, size = metrics.get(ev.MB_ACTIVE), metrics.get(ev.MB_FILL), metrics.get(ev.MB_SIZE)
    if active is None and fill is None:
        return None
    state = "on" if active else "off"
    if fill is None:
        return state
    return f"{state} {_num(fill, '.0f')}/{_num(size, '.0f') if size is not None else '?'}"


def _fmt_regions(metrics: Mapping[str, float | None]) -> str | None:
    names = (("valid", ev.REGIONS_VALID), ("zero", ev.REGIONS_ZERO_NORM), ("nonfinite", ev.REGIONS_NONFINITE))
    parts = [f"{k}={_num(metrics[n], 'g')}" for k, n in names if metrics.get(n) is not None]
    return " ".join(parts) or None


def _fmt_groups(metrics: Mapping[str, float | None]) -> str | None:
    prefix = ev.GRAD_NORM_GROUP + "/"
    parts = [
        f"{name[len(prefix) :]}={_num(v, '.4g')}"
        for name, v in metrics.items()
        if name.startswith(prefix) and v is not None
    ]
    return " ".join(parts) or None


def _fmt_one(name: str, spec: str) -> Callable[[Mapping[str, float | None]], str | None]:
    return lambda m: _num(m[name], spec) if m.get(name) is not None else None


def _fmt_head_loss(head: str) -> Callable[[Mapping[str, float | None]], str | None]:
    def fmt(m: Mapping[str, float | None]) -> str | None:
        value = m.get(f"{ev.HEAD_LOSS}/{head}")
        if value is None:
            return None
        text = _num(value, ".4f")
        k = m.get(f"{ev.CANDIDATES}/{head}")
        if k is not None and math.isfinite(k) and k > 0:
            text += f" (K={_num(k, 'g')}, ln K={_num(math.log(k), '.4f')})"
        return text

    return fmt


def _parse_heads(base: str) -> Callable[[str], dict[str, float]]:
    def parse(rest: str) -> dict[str, float]:
        return {f"{base}/{k}": float(v) for k, v in _KV_RE.findall(rest) if k in ev.HEADS}

    return parse


def _parse_logits(rest: str) -> dict[str, float]:
    out = {}
    for head, value in _KV_RE.findall(rest):
        lo, sep, hi = value.partition(":")
        if head in ev.HEADS and sep:
            out[f"{ev.LOGITS_MIN}/{head}"] = float(lo)
            out[f"{ev.LOGITS_MAX}/{head}"] = float(hi)
    return out


def _parse_mb(rest: str) -> dict[str, float]:
    state, _, counts = rest.partition(" ")
    out = {ev.MB_ACTIVE: 1.0 if state == "on" else 0.0}
    fill, sep, size = counts.partition("/")
    if sep:
        out[ev.MB_FILL] = float(fill)
        if size != "?":
            out[ev.MB_SIZE] = float(size)
    return out


def _parse_regions(rest: str) -> dict[str, float]:
    names = {"valid": ev.REGIONS_VALID, "zero": ev.REGIONS_ZERO_NORM, "nonfinite": ev.REGIONS_NONFINITE}
    return {names[k]: float(v) for k, v in _KV_RE.findall(rest) if k in names}


def _parse_groups(rest: str) -> dict[str, float]:
    return {f"{ev.GRAD_NORM_GROUP}/{k}": float(v) for k, v in _KV_RE.findall(rest)}


def _parse_one(name: str) -> Callable[[str], dict[str, float]]:
    return lambda rest: {name: float(rest)}


def _parse_head_loss(head: str) -> Callable[[str], dict[str, float]]:
    def parse(rest: str) -> dict[str, float]:
        m = _HEAD_LOSS_RE.match(rest)
        if m is None:
            raise ValueError(f"expected '<loss> (K=<n>, ln K=<x>)', got {rest[:60]!r}")
        out = {f"{ev.HEAD_LOSS}/{head}": float(m.group(1))}
        if m.group(2) is not None:
            k = float(m.group(2))
            out[f"{ev.CANDIDATES}/{head}"] = k
            out[f"{ev.CHANCE}/{head}"] = math.log(k) if k > 0 else float("nan")
        return out

    return parse


# keyword -> (formatter, parser), in print order
SEGMENTS: dict[
    str, tuple[Callable[[Mapping[str, float | None]], str | None], Callable[[str], dict[str, float]]]
] = {
    "loss": (_fmt_one(ev.LOSS, ".4f"), _parse_one(ev.LOSS)),
    **{head: (_fmt_head_loss(head), _parse_head_loss(head)) for head in ev.HEADS},
    "scale": (lambda m: _fmt_heads(m, ev.LOGIT_SCALE, ".6f"), _parse_heads(ev.LOGIT_SCALE)),
    "logits": (_fmt_logits, _parse_logits),
    "logits_std": (lambda m: _fmt_heads(m, ev.LOGITS_STD, ".4f"), _parse_heads(ev.LOGITS_STD)),
    "cos_std": (lambda m: _fmt_heads(m, ev.COS_STD, ".5f"), _parse_heads(ev.COS_STD)),
    "mb": (_fmt_mb, _parse_mb),
    "regions": (_fmt_regions, _parse_regions),
    "grad": (_fmt_one(ev.GRAD_NORM, ".4g"), _parse_one(ev.GRAD_NORM)),
    "grad_groups": (_fmt_groups, _parse_groups),
    "lr": (_fmt_one(ev.LEARNING_RATE, ".3e"), _parse_one(ev.LEARNING_RATE)),
    "epoch": (_fmt_one(ev.EPOCH, ".3f"), _parse_one(ev.EPOCH)),
}


def format_step_summary(step: int, metrics: Mapping[str, float | None]) -> str:
    """One line per logging step: `[fgdiag] step 40 | loss 2.3100 | region 0.8400 (K=132, ln K=4.8828) | ...`.

    Only segments whose metrics are present are printed; the region/global/hardneg segments carry the
    unweighted head loss and, when known, the candidate count K with its chance level ln K.
    """
    parts = [f"[fgdiag] step {int(step)}"]
    for keyword, (fmt, _parse) in SEGMENTS.items():
        text = fmt(metrics)
        if text is not None:
            parts.append(f"{keyword} {text}")
    return " | ".join(parts)


def parse_step_summary(line: str) -> tuple[int, dict[str, float]] | None:
    """Inverse of `format_step_summary` (None when the line is not one). Raises ValueError naming the
    segment when a known segment is malformed."""
    start = line.find(SUMMARY_TAG)
    if start < 0:
        return None
    m = SUMMARY_RE.match(line, start)
    if m is None:
        return None
    metrics: dict[str, float] = {}
    for segment in m.group(2).split(" | ")[1:]:
        keyword, _, rest = segment.partition(" ")
        entry = SEGMENTS.get(keyword)
        if entry is None:
            continue
        try:
            metrics.update(entry[1](rest.strip()))
        except ValueError as exc:
            raise ValueError(f"segment {keyword!r}: {exc}") from None
    return int(m.group(1)), metrics
