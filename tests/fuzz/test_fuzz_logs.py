"""Fuzz: any bytes or mutated log lines through reading, judging, the summary JSON and the dashboard. A log
is read or refused with LogReadError (exit 2, naming the file); everything else is a Finding."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
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


@budget(500)
@given(log_bytes())
def test_fuzz_training_log(raw: bytes) -> None:
    path = WORK / "training.log"
    path.write_bytes(raw)
    judge(path)


@budget(200)
@given(log_bytes())
def test_fuzz_events_and_trainer_state(raw: bytes) -> None:
    for name in ("events.jsonl", "trainer_state.json"):
        path = WORK / name
        path.write_bytes(raw)
        judge(path)


def test_scales_beyond_exp_range_are_judged_not_crashed(tmp_path: Path) -> None:
    """Issue 14.2, found again by this suite: `logit_scale/region: 710` in an events line, or a run record's
    `logit_scale_max: 1000`, raised OverflowError in watch/report; they are findings now."""
    records = [{"type": "run", "step": 0, "info": {"logit_scale_max": 1000, "planned_steps": 40}}]
    records += [
        {
            "type": "metrics",
            "step": step,
            "time": 1.0,
            "metrics": {"loss": 2.0, "logit_scale/global": 4.6, "logit_scale/region": 710.0},
        }
        for step in range(5, 45, 5)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    command = [sys.executable, "-m", "fgdiag.cli.app"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for args in (
        ["watch", str(path), "--once", "--json"],
        ["report", str(path), "--out", str(tmp_path / "r")],
    ):
        done = subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(
        subprocess.run(
            [*command, "watch", str(path), "--once", "--json"], capture_output=True, text=True, env=env
        ).stdout
    )
    assert any(f["code"] == "FGD101" and "710" in f["message"] for f in summary["findings"])
