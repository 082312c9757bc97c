"""Per-line handlers of the tagged formats (fgclip-vad blocks and loss lines, our lines, JSONL events), and the
two dispatch tables the reader uses: FAST (first 12 characters of a line) and TAGS (a tag anywhere in a line,
after a tqdm bar or a rank prefix). A handler returns False when the line carried its tag but not the fields
(counted unparsed, and reported as malformed with the field)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from fgdiag import events as ev
from fgdiag.diagnostic import Finding
from fgdiag.logs import vad
from fgdiag.render import lines as ours

if TYPE_CHECKING:
    from fgdiag.logs.reader import LogReader

RH = "region"
L_MIN, L_MAX, L_MEAN, L_STD = (
    ev.head_metric(n, RH) for n in (ev.LOGITS_MIN, ev.LOGITS_MAX, ev.LOGITS_MEAN, ev.LOGITS_STD)
)


# --- fgclip-vad [DIAG] block ---------------------------------------------------------------------------------
# DIAG lines repeat verbatim for thousands of forwards (norms of unit vectors, the same scale): parsed values
# are cached by line text, which keeps a 1M-line log fast.
_CACHE: dict[str, Any] = {}
_CACHE_MAX = 8192


def _cached(line: str, parse: Any) -> Any:
    hit = _CACHE.get(line)
    if hit is None:
        hit = parse(line)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[line] = hit
    return hit


def diag_header(r: LogReader, line: str) -> bool:
    r._commit_fwd()
    r.formats.add("fgclip-vad")
    return True


def _valid(line: str) -> float | None:
    i = line.find("valid_count=")
    try:
        return float(line[i + 12 :].split(" ", 1)[0].split("|", 1)[0]) if i >= 0 else None
    except ValueError:
        return None


def diag_valid(r: LogReader, line: str) -> bool:
    value = _cached(line, _valid)
    if value is None:
        return r._malformed("valid_count", line)
    r._fwd[ev.REGIONS_VALID] = value
    return True


def _norms(line: str) -> tuple[float, float, float, bool] | None:
    m = vad.STATS4_RE.search(line)
    if m is None:
        return None
    try:
        return float(m.group(1)), float(m.group(2)), float(m.group(3)), "has_nan=True" in line
    except ValueError:
        return None


def diag_norms(r: LogReader, line: str) -> bool:
    st = _cached(line, _norms)
    if st is None:
        return r._malformed("norms", line)
    fwd = r._fwd
    if st[3]:
        fwd[ev.REGIONS_NONFINITE] = fwd.get(ev.REGIONS_NONFINITE, 0.0) + 1.0
    if line.startswith("  - img"):
        fwd[ev.REGIONS_ZERO_NORM] = vad.zero_norm_count(st[0], st[1], st[2], fwd.get(ev.REGIONS_VALID))
    return True


def diag_logits(r: LogReader, line: str) -> bool:
    m = vad.STATS4_RE.search(line)
    if m is None:
        return r._malformed("logits_i2t", line)
    fwd = r._fwd
    try:
        fwd[L_MIN], fwd[L_MAX], fwd[L_MEAN] = float(m.group(1)), float(m.group(2)), float(m.group(3))
        std = float(m.group(4)) if m.group(4) else math.nan
    except ValueError:
        return r._malformed("logits_i2t", line)
    if math.isfinite(std):  # std=nan when a batch has one region
        fwd[L_STD] = std
    return True


def diag_bank(r: LogReader, line: str) -> bool:
    bank = _cached(line, lambda text: vad.bank_from_diag(vad.stats(text)))
    if bank is None:
        return r._malformed("memory_bank", line)
    filled, size, ptr = bank
    if r._bank is None:
        r._bank = [filled, size]
    else:  # normal + abnormal queues
        r._bank[0] += filled
        r._bank[1] += size
    r._fwd[ev.MB_PTR] = ptr
    return True


def diag_any(r: LogReader, line: str) -> bool:
    """Closes the block's counts: regions/nonfinite is 0 for a clean forward, so its mean is comparable."""
    r._fwd[ev.REGIONS_NONFINITE] = r._fwd.get(ev.REGIONS_NONFINITE, 0.0) + (1.0 if "=True" in line else 0.0)
    return True


def ignore(r: LogReader, line: str) -> bool:
    return True


def debug_region(r: LogReader, line: str) -> bool:
    r._commit_fwd()
    r.formats.add("fgclip-vad")
    return diag_valid(r, line)


# --- fgclip-vad loss lines ---------------------------------------------------------------------------------
def _pairs_into_fwd(r: LogReader, text: str) -> bool:
    metrics, bank = vad.parse_pairs(text)
    if not metrics and bank is None:
        return r._malformed("loss fields", text)
    fwd = r._fwd
    for name, value in metrics.items():
        if name == vad.REGION_LOSS and value == 0.0:
            continue  # the fork logs 0.0 when a micro-batch has no valid region
        fwd[name] = value
    if bank is not None and r._bank is None:
        r._bank = [bank[0], bank[1]]
    return True


_LOSS_NAMES = (
    ev.LOSS,
    ev.head_metric(ev.HEAD_LOSS, "global"),
    vad.REGION_LOSS,
    ev.head_metric(ev.HEAD_LOSS, "hardneg"),
)


def _fast_losses(r: LogReader, values: tuple[str, ...]) -> bool:
    fwd = r._fwd
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    for name, number in zip(_LOSS_NAMES, numbers, strict=True):
        if number != 0.0 or name != vad.REGION_LOSS:  # the fork logs 0.0 when a micro-batch has no region
            fwd[name] = number
    return True


def loss_line(r: LogReader, line: str) -> bool:
    """`[LOSS] Total: ... | Region: ...`, `[ACCUMULATED] Total: ...`, `[MICRO-BATCH] Total: ...` (no step).
    The fork prints the same values on the batch line that follows, so parsing waits for the group to close."""
    r.formats.add("fgclip-vad")
    r._loss_text = (r.lineno, line)
    return True


def parse_deferred_loss(r: LogReader) -> None:
    """Called when a forward group closes without a batch line having supplied its losses."""
    lineno, line = r._loss_text
    r._loss_text = None
    m = vad.LOSS_FAST_RE.search(line)
    if m is not None and _fast_losses(r, m.groups()):
        return
    if not _pairs_into_fwd(r, line[line.find("]") + 1 :]):
        r.unparsed += 1
        if r.malformed and r.malformed[-1][2] == line[:120]:
            r.malformed[-1] = (lineno, *r.malformed[-1][1:])


def batch_line(r: LogReader, line: str) -> bool:
    """`[Epoch e][Step s][Batch b] Loss: ...` and `[ACCUMULATED][Epoch e][Step s][Batch b] AvgLoss: ...`."""
    m = vad.BATCH_FAST_RE.search(line)
    if m is not None and _fast_losses(r, m.group(3, 4, 5, 6)):
        r._loss_text = None
        if m.group(7) is not None and r._bank is None:
            r._bank = [float(m.group(7)), float(m.group(8))]
        if m.group(9) is not None:
            try:
                r._fwd[ev.LEARNING_RATE] = float(m.group(9))
            except ValueError:
                pass
        r._commit_fwd(int(m.group(2)) + 1)
        return True
    m = vad.BATCH_RE.search(line)
    if m is None:
        return r._malformed("[Epoch][Step]", line)
    r.formats.add("fgclip-vad")
    ok = _pairs_into_fwd(r, line[m.end() :])
    if ok:
        r._loss_text = None
    r._commit_fwd(int(m.group(2)) + 1)
    return ok


def accumulated(r: LogReader, line: str) -> bool:
    if line.startswith("[ACCUMULATED][Epoch"):
        return batch_line(r, line)
    return loss_line(r, line)


# --- memory-bank lines -------------------------------------------------------------------------------------
def mb_forward(r: LogReader, line: str) -> bool:
    """`[MB-FORWARD] 使用{K}个历史负样本 | Batch内: {N} | 总负样本: {N+K}`."""
    m = vad.MB_FORWARD_RE.search(line)
    if m is None:
        return r._malformed("MB-FORWARD counts", line)
    queued, total = float(m.group(1)), float(m.group(3))
    if r._bank is None:
        r._bank = [queued, math.nan]
    r._fwd[ev.REGIONS_VALID] = float(m.group(2))
    r._mb_enabled = r._mb_enabled or queued > 0
    r.formats.add("fgclip-vad")
    del total  # N + K equals valid + queued; recomputed at commit
    return True


def memory_bank(r: LogReader, line: str) -> bool:
    """`[Memory Bank] enabled @ training_step N (candidates a -> b)` (ours) or `... ✅ 已启用 @ training_step N`
    (the fork, N counted in forward passes), and `[Memory Bank] 队列大小: 128, 当前指针: 0`."""
    m = ours.MB_ENABLED_RE.search(line)
    if m is not None:
        data: dict[str, Any] = {"training_step": int(m.group(1))}
        if m.group(2) is not None:
            data["candidates_before"], data["candidates_after"] = int(m.group(2)), int(m.group(3))
        r._mb_enabled = True
        r._event(ev.event_record(r.step, ev.EVENT_MB_ENABLED, _clean(line), data))
        r._add(ev.MB_ACTIVE, 1.0)
        return True
    m = vad.MB_SIZE_RE.search(line)
    if m is not None:
        r._add(ev.MB_SIZE, float(m.group(1)))
        r._add(ev.MB_PTR, float(m.group(2)))
    return True


def memory_bank_legacy(r: LogReader, line: str) -> bool:
    """`[MEMORY BANK] ... Ptr: p/128 ...`, `... 队列首次填满！Ptr: a→b, 负样本数量: N→128`, `[MEMORY BANK][Normal] ...`."""
    full = vad.MB_FULL_QUEUE_RE.match(line)
    if full is not None:
        r._event(ev.event_record(r.step, ev.EVENT_MB_FULL, _clean(line), {"queue": full.group(1).lower()}))
        return True
    m = vad.MB_PTR_RE.search(line)
    if m is not None:
        r._add(ev.MB_FILL, float(m.group(1)))
        r._add(ev.MB_SIZE, float(m.group(2)))
        return True
    m = vad.MB_FIRST_FULL_RE.search(line)
    if m is not None:
        r._event(ev.event_record(r.step, ev.EVENT_MB_FULL, _clean(line), {"queue": "all"}))
        r._add(ev.MB_FILL, float(m.group(1)))
        return True
    return True


def _clean(line: str) -> str:
    from fgdiag.logs.decode import demojibake

    return demojibake(line.strip())[:300]


# --- ours: summary line and JSONL --------------------------------------------------------------------------
def summary(r: LogReader, line: str) -> bool:
    try:
        parsed = ours.parse_step_summary(line)
    except ValueError as exc:
        return r._malformed("[fgdiag] summary", str(exc))
    if parsed is None:
        return r._malformed("[fgdiag] step", line)
    r.formats.add("fgdiag")
    r._commit_fwd()
    r._at(parsed[0])
    r._summary_step = parsed[0]  # the Trainer's dict line printed next belongs to this step
    for name, value in parsed[1].items():
        r._put(name, value)
    return True


def jsonl(r: LogReader, line: str) -> bool:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return r._malformed("JSON", line)
    if not isinstance(record, dict):
        return r._malformed("record", line)
    try:
        return _record(r, record)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        return r._malformed(f"{record.get('type')} record", str(exc))


def _record(r: LogReader, record: dict[str, Any]) -> bool:
    kind = record.get("type")
    r.formats.add("fgdiag-events")
    if kind == "metrics":
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            return r._malformed("metrics", "metrics record without a metrics object")
        nonfinite = set(record.get("nonfinite") or ())
        r._commit_fwd()
        r._at(int(record["step"]))
        for name, value in metrics.items():
            if value is None:
                if name in nonfinite:
                    r._put(name, math.nan)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                r._put(str(name), float(value))
        return True
    if kind == "run":
        info = record.get("info")
        if isinstance(info, dict):
            r.run_info.update(info)
        return True
    if kind == "event":
        step = int(record.get("step", r.step))
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        if record.get("kind") == ev.EVENT_MB_ENABLED:
            r._mb_enabled = True
        r._event(
            ev.event_record(step, str(record.get("kind", "event")), str(record.get("message", "")), data)
        )
        return True
    if kind == "finding":
        r.recorded_findings.append(Finding.from_dict(record["finding"]))
        return True
    return r._malformed("type", f"unknown record type {kind!r}")


def fast_table() -> dict[str, Any]:
    table: dict[str, Any] = {
        "  - valid_co": diag_valid,
        "  - img_norm": diag_norms,
        "  - txt_norm": diag_norms,
        "  - logits_i": diag_logits,
        "  - memory_b": diag_bank,
        "  - any_nan=": diag_any,
        "  - sample_l": ignore,
        "[DIAG] Regio": diag_header,
        "[LOSS] Total": loss_line,
        "[MICRO-BATCH": loss_line,
        "[ACCUMULATED": accumulated,
        "[MB-FORWARD]": mb_forward,
        "[Memory Bank": memory_bank,
        "[MEMORY BANK": memory_bank_legacy,
        "[fgdiag] ste": summary,
        "[DEBUG Regio": debug_region,
        "[RUNTIME DIA": ignore,
    }
    for digit in "0123456789":
        table[f"[Epoch {digit}][St"] = batch_line
    for kind in ("metrics", "event", "run", "finding"):
        table[f'{{"type": "{kind}'[:12]] = jsonl
    table.update(FAST_LOGIT)
    for ch in "=-*#~":
        table[ch * 12] = decoration
    stats = "[统计] 最近10个batch平均Loss"  # the fork's moving average of 10 micro-batches: not a step metric
    for variant in (
        stats,
        stats.encode("utf-8").decode("cp1252", "replace"),
        stats.encode("utf-8").decode("cp1252", "ignore"),
    ):
        table[variant[:12]] = ignore
    return table


def decoration(r: LogReader, line: str) -> bool:
    """Rules such as `=====`: recognised, carry nothing (counted with the blank lines)."""
    r.blank += 1
    return True


def _logit_scale(r: LogReader, line: str) -> bool:
    from fgdiag.logs.trainer import logit_scale

    return logit_scale(r, line)


FAST_LOGIT = {"  - logit_sc": _logit_scale, "logit_scale ": _logit_scale}
TAGS = (
    ("[DIAG]", diag_header),
    ("[Epoch ", batch_line),
    ("[ACCUMULATED]", accumulated),
    ("[LOSS]", loss_line),
    ("[MB-FORWARD]", mb_forward),
    ("[Memory Bank]", memory_bank),
    ("[MEMORY BANK]", memory_bank_legacy),
    ("[MICRO-BATCH]", loss_line),
    ("[fgdiag] step ", summary),
    ("[DEBUG Region]", debug_region),
    ("[RUNTIME DIAG]", ignore),
)
