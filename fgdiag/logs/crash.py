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
# what a shell or launcher prints when the process died without a Python traceback (a signal, the host's
# out-of-memory killer, a non-zero exit status); matched at the end of a line (a tqdm bar may precede it)
SIGNAL_RE = re.compile(
    r"(?:^|[\s\]|])(Killed|Terminated|已终止|已杀死|Segmentation fault|Aborted|Bus error)"
    r"(?: \(core dumped\))?\s*$"
)
EXIT_RE = re.compile(
    r"(?:exit ?code|exit status|exited with code|Exit Code)\s*[:=]?\s*(-?\d+)", re.IGNORECASE
)


def is_oom(text: str) -> bool:
    return any(marker in text for marker in OOM_MARKERS)


def killed(line: str) -> str | None:
    """Why the process died, for a line that says it was killed or exited non-zero; else None."""
    if "xit" in line:
        m = EXIT_RE.search(line)
        if m is not None and int(m.group(1)) != 0:
            return f"the process exited with status {m.group(1)}: {line.strip()[:200]}"
        return None
    m = SIGNAL_RE.search(line)
    if m is None:
        return None
    return f"process ended by a signal ({m.group(1)}; a kill, or the host's out-of-memory killer)"


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
