"""Severity words in every finding line (colour is extra), plain output when piped or NO_COLOR, and
progress: rich bars on a terminal, plain lines at a steady cadence that never repeat a count."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fgdiag.diagnostic import Finding, Severity
from fgdiag.render.progress import ProgressBoard, report_progress
from fgdiag.render.terminal import finding_line, finding_text, plain_output, tally


@pytest.mark.parametrize("severity", list(Severity))
def test_every_finding_line_says_its_severity(severity):
    f = Finding(
        "FGD101", severity, "region scale at 2.6592", location="run.sh:12:finegrained_logit_scale_init"
    )
    assert (
        finding_line(f)
        == f"run.sh:12:finegrained_logit_scale_init: {severity.value} FGD101: region scale at 2.6592"
    )
    assert finding_line(Finding("FGD604", severity, "missed", step=50)).startswith(
        f"step 50: {severity.value} "
    )
    text = finding_text(f)
    assert text.plain == finding_line(f)
    styled = {text.plain[span.start : span.end] for span in text.spans}
    assert styled == {f"{severity.value} FGD101"}  # the word is coloured, and there without colour too


def test_plain_output_when_piped_or_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert plain_output(io.StringIO()) and not plain_output(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert plain_output(Tty())
    assert tally(1, 2) == "1 error, 2 warnings" and tally(0, 1, 3) == "0 errors, 1 warning, 3 info"


def test_plain_progress_lines_keep_a_cadence_and_never_repeat():
    lines, now = [], [0.0]
    board = ProgressBoard(bars=False, echo=lines.append, every=10.0, clock=lambda: now[0])
    board.add("fixed", "[fgdiag run] fixed", None, unit="step")
    for t, step in ((1, 5), (3, 10), (12, 10), (13, 15), (25, 20), (26, 25)):
        now[0] = t
        board.update("fixed", step, total=400 if step >= 10 else None, note=f"{t} s")
    board.update("fixed", 25, force=True)  # forced: printed although 1 s passed
    board.update("fixed", 25, force=True)  # the same step again: never repeated
    assert lines == [
        "[fgdiag run] fixed: step 5, 1 s",
        "[fgdiag run] fixed: step 10/400, 12 s",  # 11 s after the last line; step 15 at 13 s is not
        "[fgdiag run] fixed: step 20/400, 25 s",
        "[fgdiag run] fixed: step 25/400",
    ]


def test_bars_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    board = ProgressBoard(bars=True, console=console)
    step = report_progress(board)
    for done in range(4):
        step(done, 7, "memory_bank")
    board.add("fixed", "[fgdiag run] fixed", None, unit="step")  # brackets are text, not rich markup
    board.update("fixed", 60, total=400, note="region loss 0.52 [ln K 5.13]")
    console.print(board.renderable)
    text = out.getvalue()
    assert "rendering the report" in text and "3/7" in text and "memory_bank" in text
    assert "[fgdiag run] fixed" in text and "60/400" in text and "[ln K 5.13]" in text
    assert report_progress(None)(1, 2, "x") is None  # no board: nothing to do
