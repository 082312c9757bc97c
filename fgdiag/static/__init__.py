"""Static inputs of check-config: readers for configs, launch scripts, safetensors and data sets, the
planning arithmetic, and `check_paths`, the whole static check as a library call.

`check_paths` is imported lazily so that low-level readers (used by `fgdiag.checkpoints`) load without the
rule modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_paths"]


def __getattr__(name: str) -> Any:
    if name == "check_paths":
        from fgdiag.static.check import check_paths

        return check_paths
    raise AttributeError(name)
