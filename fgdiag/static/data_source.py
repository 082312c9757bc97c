"""The data set, as far as check-config needs it: how many records (for the planned steps) and the data
audit's counts (for FGD301/FGD302).

The audit belongs to `fgclip.data` (another part of the project). It is imported lazily, only when a data set
is actually checked, so check-config stays fast and keeps working before that library exists: then the two
data rules are skipped with a note instead of failing.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from fgdiag.static.values import InputError

DATA_SUFFIXES = {".json", ".jsonl"}


def data_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in DATA_SUFFIXES and p.is_file())
    return [path]


def count_records(path: Path) -> int:
    """Records in a JSON array, a JSONL file, or a directory of them (InputError when unreadable)."""
    total = 0
    for file in data_files(path):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(file, f"cannot read: {exc}") from None
        if file.suffix.lower() == ".jsonl":
            total += sum(1 for line in text.splitlines() if line.strip())
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(file, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
        if isinstance(data, dict):  # {"annotations": [...]}-style wrappers
            data = next((v for v in data.values() if isinstance(v, list)), [])
        if not isinstance(data, list):
            raise InputError(file, "a data set must be a JSON array of records (or JSONL)")
        total += len(data)
    return total


def audit_function() -> tuple[Any, str | None]:
    """`fgclip.data`'s audit function when it exists, else (None, the reason)."""
    for module_name in ("fgclip.data.audit", "fgclip.data"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        audit = getattr(module, "audit", None)
        if audit is not None and not callable(audit):  # the package attribute may be the submodule
            audit = getattr(audit, "audit", None)
        if callable(audit):
            return audit, None
    return None, "fgclip.data provides no audit() yet; FGD301/FGD302 skipped"


def run_audit(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The audit's report for `path` (media not probed), or (None, why it was skipped).

    A data set the audit cannot parse is an input error (exit 2), like any other unreadable input.
    """
    audit, why = audit_function()
    if audit is None:
        return None, why
    try:
        try:
            report = audit(path, check_media=False)
        except TypeError:  # an audit without that keyword
            report = audit(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"data audit failed: {exc}") from None
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    if not isinstance(report, dict):
        return None, f"fgclip.data audit returned {type(report).__name__}, not a dict; FGD301/FGD302 skipped"
    return report, None


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
    if isinstance(caption, str) and _int(count) is not None:
        return [(caption, count)]
    return []
