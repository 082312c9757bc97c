"""The dashboard is a pure function from a snapshot to a rich renderable: rendered here with a capture
console of fixed width and no colour."""

from __future__ import annotations

import io
import math

from logs_fixtures import our_log, vad_log
from rich.console import Console

from fgdiag import read_log
from fgdiag.render.dashboard import (
    DashboardSnapshot,
    build_snapshot,
    render_dashboard,
    snapshot_from,
    sparkline,
)


def render(snapshot: DashboardSnapshot, width: int = 100) -> str:
    console = Console(width=width, no_color=True, color_system=None, record=True, file=io.StringIO())
    console.print(render_dashboard(snapshot))
    return console.export_text()


def test_watch_dashboard_renders_losses_scales_bank_and_findings(tmp_path):
    path = tmp_path / "vad.log"
    path.write_text(vad_log(steps=40, ga=2), encoding="utf-8")
    text = render(snapshot_from(read_log(path, targets="ucf"), status="read once"))
    assert "step 40/40" in text and "FAILING" in text
    assert "region" in text and "1.3863" in text  # chance ln K beside the region loss
    assert "<1@50" in text  # the next target
    assert "logit_scale region  4.593750 (exp 98.86)" in text
    assert "memory bank" in text and "off 0/128" in text
    assert "FGD601" in text and "FGD201" in text
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "\x1b[" not in text


def test_watch_dashboard_from_plain_rows_for_other_commands():
    rows = {
        s: {
            "loss": 2.0 - s / 100,
            "head_loss/region": 1.0 - s / 200,
            "candidates/region": 132.0,
            "chance/region": math.log(132),
            "memory_bank/active": 1.0,
            "memory_bank/fill": 128.0,
            "memory_bank/size": 128.0,
            "grad_norm": 1.0,
            "learning_rate": 1e-5,
        }
        for s in range(10, 110, 10)
    }
    snap = build_snapshot(
        rows,
        [],
        [],
        [{"code": "FGD604", "reason": "FGD604: not judged: no target profile"}],
        title="run",
        planned_steps=200,
    )
    text = render(snap, width=80)
    assert "step 100/200" in text and "HEALTHY" in text
    assert "on 128/128" in text and "K=132" in text
    assert "findings: none so far" in text and "not judged: no target profile" in text


def test_watch_dashboard_empty_and_sparkline():
    text = render(build_snapshot({}, title="nothing yet", status="waiting for the file"))
    assert "EMPTY" in text and "waiting for the file" in text
    assert sparkline([1.0, 2.0, 3.0, float("nan")], width=4) == "▁▅█!"
    assert sparkline([2.0, 2.0], width=4) == "▁▁"


def test_watch_dashboard_ours(tmp_path):
    path = tmp_path / "ours.log"
    path.write_text(our_log(), encoding="utf-8")
    text = render(snapshot_from(read_log(path)))
    assert "since step" in text and "K=132" in text
