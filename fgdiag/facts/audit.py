"""The data audit's counts as the data rules need them: invalid boxes and repeated captions.

The audit (`fgclip.data.audit`) returns a JSON-ready dict whose shape has changed over time; these readers
accept its current shape and the flatter older ones, so the rules see one form.
"""

from __future__ import annotations

from typing import Any


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def invalid_counts(report: dict[str, Any]) -> tuple[int | None, int | None, float | None]:
    """(invalid boxes, boxes, ratio); `invalid` may be a count or a per-reason dict of counts."""
    boxes = _int(report.get("boxes"))
    invalid = _int(report.get("invalid_total"))
    if invalid is None:
        raw = report.get("invalid")
        invalid = (
            _int(raw) if not isinstance(raw, dict) else sum(v for v in raw.values() if _int(v) is not None)
        )
    ratio = report.get("invalid_ratio")
    if not isinstance(ratio, (int, float)):
        ratio = invalid / boxes if invalid is not None and boxes else None
    return invalid, boxes, ratio


def repeated_captions(report: dict[str, Any]) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """[(group, captions in the group, [(caption, count > 1), ...])] from the audit's caption repetition.

    Accepts `{"region": {"total": N, "top": [{"caption", "count"}]}, "global": ...}` (fgclip.data) and flatter
    shapes: a list of {"caption", "count"} or a {caption: count} dict (total then taken from the records).
    """
    raw: Any = None
    for key, value in report.items():
        if "repet" in key.lower() or "duplicate" in key.lower() or "repeated" in key.lower():
            raw = value
            break
    fallback = _int(report.get("regions")) or _int(report.get("boxes")) or _int(report.get("records")) or 0
    groups: list[tuple[str, int, list[tuple[str, int]]]] = []
    if isinstance(raw, dict) and all(isinstance(v, dict) for v in raw.values()) and raw:
        for name, group in raw.items():
            pairs = [p for item in (group.get("top") or []) for p in _pair(item)]
            groups.append((str(name), _int(group.get("total")) or fallback, pairs))
    elif isinstance(raw, dict):
        groups.append(("captions", fallback, [p for item in raw.items() for p in _pair(item)]))
    elif isinstance(raw, list):
        groups.append(("captions", fallback, [p for item in raw for p in _pair(item)]))
    return [
        (name, total, sorted(((c, n) for c, n in pairs if n > 1), key=lambda p: -p[1]))
        for name, total, pairs in groups
    ]


def _pair(item: Any) -> list[tuple[str, int]]:
    if isinstance(item, dict):
        caption = item.get("caption") or item.get("text")
        count = item.get("count") or item.get("n")
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        caption, count = item
    else:
        return []
    number = _int(count)
    if isinstance(caption, str) and number is not None:
        return [(caption, number)]
    return []
