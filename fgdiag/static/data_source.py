"""The data set, as far as check-config needs it: how many records (for the planned steps) and the data
audit's report (its counts are read by `fgdiag.facts.audit` for FGD301/FGD302).

The audit belongs to `fgclip.data` (another part of the project). It is imported lazily, only when a data set
is actually checked, so check-config stays fast and keeps working before that library exists: then the two
data rules are skipped with a note instead of failing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fgdiag.facts.values import InputError


def count_records(path: Path) -> int:
    """Records in a JSON array, a JSONL file, or a directory of them, streamed as training reads them
    (InputError naming the file and line when unreadable, a FIFO or a device)."""
    from fgclip.data.errors import DataFormatError
    from fgclip.data.reader import iter_raw_records

    try:
        return sum(1 for _ in iter_raw_records(path))
    except DataFormatError as exc:
        raise InputError(str(exc.location), exc.reason) from None


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
    except (OSError, ValueError, RecursionError) as exc:
        where, reason = getattr(exc, "location", path), getattr(exc, "reason", str(exc)[:400])
        raise InputError(str(where), f"data audit: {reason}") from None
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    if not isinstance(report, dict):
        return None, f"fgclip.data audit returned {type(report).__name__}, not a dict; FGD301/FGD302 skipped"
    return report, None
