"""Fuzz: any bytes or mutated log lines through reading, judging, the summary JSON and the dashboard. A log
is read or refused with LogReadError (exit 2, naming the file); everything else is a Finding."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from hypothesis import given
from rich.console import Console

from fgdiag.render.dashboard import render_dashboard, snapshot_from
from fgdiag.render.summary import summary_dict
from fgdiag.session import LogReadError, read_log

from .strategies import budget, log_bytes

WORK = Path(tempfile.mkdtemp(prefix="fgdiag-fuzz-logs-"))


def judge(path: Path) -> None:
    try:
        read = read_log(path)
    except LogReadError as exc:
        assert str(path) in str(exc)
        return
    summary = summary_dict(read)
    json.dumps(summary, allow_nan=False)
    assert summary["exit_code"] in (0, 1, 2)
    console = Console(file=io.StringIO(), width=110, no_color=True, force_terminal=False)
    console.print(render_dashboard(snapshot_from(read, status="fuzz")))


@budget(150)
@given(log_bytes())
def test_fuzz_training_log(raw: bytes) -> None:
    path = WORK / "training.log"
    path.write_bytes(raw)
    judge(path)


@budget(60)
@given(log_bytes())
def test_fuzz_events_and_trainer_state(raw: bytes) -> None:
    for name in ("events.jsonl", "trainer_state.json"):
        path = WORK / name
        path.write_bytes(raw)
        judge(path)
