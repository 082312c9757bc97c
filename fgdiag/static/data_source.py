"""The data set, as far as check-config needs it: how many records (for the planned steps) and the data
audit's report (its counts are read by `fgdiag.facts.audit` for FGD301/FGD302).

The audit belongs to `fgclip.data` (another part of the project). It is imported lazily, only when a data set
is actually checked, so check-config stays fast and keeps working before that library exists: then the two
data rules are skipped with a note instead of failing.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from fgdiag.facts.values import InputError

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
