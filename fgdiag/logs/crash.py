"""Tracebacks and out-of-memory messages in the middle of a log: the run died here.

A traceback is the header line, indented frames, and a closing `Name: message` line; chained tracebacks
(`During handling...`, `The above exception...`) continue it. The result is an event, never a parse error.
"""

from __future__ import annotations

import re

TB_HEADER = "Traceback (most recent call last)"
EXCEPTION_RE = re.compile(
    r"^([A-Za-z_][\w.]*?(?:Error|Exception|Interrupt|Exit|Failure|Warning|Killed)\w*)"
    r"(?::\s?(.*))?$"
)
CONTINUATION = ("During handling of the above exception", "The above exception was the direct cause")
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUDA error: out of memory", "HIP out of memory")


def is_oom(text: str) -> bool:
    return any(marker in text for marker in OOM_MARKERS)


class Traceback:
    """Collects one traceback; `line()` returns the crash (kind, message) when the closing line arrives,
    None while it continues, or ("open", "") when the line does not belong to it (the traceback was cut)."""

    __slots__ = ("frames", "start")

    def __init__(self, start: int):
        self.start = start
        self.frames = 0

    def line(self, text: str) -> tuple[str, str] | None:
        stripped = text.strip()
        if not stripped or text[:1] in (" ", "\t") or stripped.startswith(('File "', "^", "~")):
            self.frames += 1
            return None
        if stripped.startswith(CONTINUATION) or stripped.startswith(TB_HEADER):
            return None
        m = EXCEPTION_RE.match(stripped)
        if m:
            return ("oom" if is_oom(stripped) else "crash"), stripped[:500]
        return "open", ""
