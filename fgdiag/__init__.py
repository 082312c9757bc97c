"""fgdiag: diagnostics for fine-grained CLIP training.

The public API is imported lazily so that `import fgdiag` stays cheap (no torch, no pandas):
`fgdiag.read_log(path)` reads and judges any supported training log, `fgdiag.RuleEngine` judges metric rows
as they stream, `fgdiag.write_report(log_read, out_dir)` draws the report.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "read_log": ("fgdiag.session", "read_log"),
    "LogRead": ("fgdiag.session", "LogRead"),
    "LogReadError": ("fgdiag.session", "LogReadError"),
    "RuleEngine": ("fgdiag.rules.engine", "RuleEngine"),
    "RuleParams": ("fgdiag.rules.engine", "RuleParams"),
    "TargetProfile": ("fgdiag.targets", "TargetProfile"),
    "get_profile": ("fgdiag.targets", "get_profile"),
    "write_report": ("fgdiag.render.report", "write_report"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fgdiag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
