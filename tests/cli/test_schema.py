"""docs/events.schema.json is the schema this version reads and writes (kept current by `fgdiag schema
events --out ... --check`, which CI can run), and it describes every record type with its run id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from fgdiag import events as ev
from fgdiag.cli.app import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.schema.json"


def test_docs_schema_is_current():
    result = CliRunner().invoke(app, ["schema", "events", "--out", str(DOC), "--check"])
    assert result.exit_code == 0, result.output
    printed = subprocess.run(
        [sys.executable, "-m", "fgdiag.cli.app", "schema"], capture_output=True, text=True, check=True
    )
    assert printed.stdout == DOC.read_text(encoding="utf-8")


def test_schema_describes_every_record_type_and_the_run_id():
    schema = json.loads(DOC.read_text(encoding="utf-8"))
    assert set(schema["discriminator"]["mapping"]) == {"metrics", "event", "run", "finding"}
    for name in ("MetricsRecord", "EventRecord", "RunRecord", "FindingRecord"):
        assert "run_id" in schema["$defs"][name]["properties"], name
    assert schema["$defs"]["MetricsRecord"]["required"] == ["type", "step", "metrics"]
    # what the writer writes, the reader decodes against the same definitions
    for record in (
        ev.metrics_record(5, {ev.LOSS: 1.0, ev.GRAD_NORM: float("nan")}),
        ev.event_record(5, ev.EVENT_MB_ENABLED, "on", {"candidates_after": 132}),
        ev.run_record({"planned_steps": 10}),
    ):
        decoded = ev.decode_record(json.dumps({**record, "run_id": "r"}))
        assert decoded.run_id == "r" and type(decoded).__name__ in schema["$defs"]


def test_check_says_when_the_file_is_stale(tmp_path):
    stale = tmp_path / "events.schema.json"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("run_id", "runid"), encoding="utf-8")
    result = CliRunner().invoke(app, ["schema", "events", "--out", str(stale), "--check"])
    assert result.exit_code == 1 and "not current" in result.output
    assert CliRunner().invoke(app, ["schema", "bogus"]).exit_code == 2
