"""How findings read on a terminal and in plain output: every finding line carries its severity as a word
(error / warning / info), so piped output, `NO_COLOR` and colour-blind readers lose nothing that colour says.

Commands print findings through `finding_text` (a rich Text, coloured on a terminal) or `finding_line` (a
plain string); `plain_output()` says whether a stream gets plain text.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def plain_output(stream: TextIO | None = None) -> bool:
    """Plain text (no colour, no bars, no live redraws): NO_COLOR set, TERM=dumb, or not a terminal."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return True
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def console_for(stream: TextIO | None = None, *, width: int = 110) -> Console:
    """A rich Console for `stream`: colours on a terminal, plain text of a fixed width otherwise."""
    stream = sys.stdout if stream is None else stream
    plain = plain_output(stream)
    return Console(
        file=stream,
        no_color=plain,
        highlight=False,
        soft_wrap=True,
        force_terminal=False if plain else None,
        width=width if plain else None,
    )


def severity_of(finding: Any) -> str:
    severity = finding.severity
    return str(getattr(severity, "value", severity))


def finding_line(finding: Any, *, where: str | None = None) -> str:
    """`<where>: <severity> <code>: <message>`; `where` defaults to the finding's location (or its step)."""
    if where is None:
        where = finding.location or (f"step {finding.step}" if finding.step is not None else "")
    prefix = f"{where}: " if where else ""
    return f"{prefix}{severity_of(finding)} {finding.code}: {finding.message}"


def finding_text(finding: Any, *, where: str | None = None) -> Text:
    """`finding_line` as a rich Text: the severity word and the code in the severity's colour."""
    line = finding_line(finding, where=where)
    text = Text(line)
    word = f"{severity_of(finding)} {finding.code}"
    start = line.find(word)
    if start >= 0:
        text.stylize(SEVERITY_STYLE.get(severity_of(finding), ""), start, start + len(word))
    return text


def tally(errors: int, warnings: int, infos: int = 0) -> str:
    """`2 errors, 1 warning, 0 info` with the words spelled out."""
    parts = [f"{errors} error{'s' * (errors != 1)}", f"{warnings} warning{'s' * (warnings != 1)}"]
    if infos:
        parts.append(f"{infos} info")
    return ", ".join(parts)
