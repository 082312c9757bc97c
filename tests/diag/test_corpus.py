"""Every labelled log of tests/corpus meets its label: `fgdiag watch FILE --once --json [label args]` (typer's
runner, in process) is scored by benchmarks/diag_power.py's own `judge`: the expected codes fire, the
forbidden ones do not, no error finding on a healthy or warnings log, the verdict, the exit code and the
recovery are the label's. The labels say what an expert concludes from each log (tests/corpus/README.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from fgdiag.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


power = _module("corpus_diag_power", ROOT / "benchmarks" / "diag_power.py")
ENTRIES, PROBLEMS = power.load(CORPUS)


def watch(entry) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, ["watch", str(entry.log), "--once", "--json", *entry.label.args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    try:
        summary = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        summary = None
    return result.exit_code, summary, result.stderr


def test_corpus_is_well_formed():
    assert PROBLEMS == [] and len(ENTRIES) >= 40


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_corpus_file_meets_its_label(entry):
    rc, summary, stderr = watch(entry)
    if entry.label.exit_code == 2:  # not a log: exit 2, the formats tried, and a JSON error object
        assert rc == 2 and "formats tried" in stderr, stderr
        assert summary is not None and summary["exit_code"] == 2 and summary["formats_tried"]
        return
    outcome = power.judge(entry, rc, summary, stderr, 0.0)
    assert not outcome.violations, (
        f"missing {outcome.missing}, forbidden {outcome.forbidden}, false errors {outcome.false_errors}, "
        f"verdict {outcome.verdict} (want {entry.label.verdict}), exit {rc} (want {entry.label.exit_code}), "
        f"recovered {outcome.recovered} (want {entry.label.recovered})"
    )
    assert summary is not None
    for finding in summary["findings"]:  # every finding says what it rests on
        assert finding["message"] and finding["help"], finding
