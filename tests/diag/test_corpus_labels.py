"""The labelled log corpus (tests/corpus) is well formed: every log has one label file with known keys, codes
like FGD601, a verdict from the list and an exit code 0/1/2; the folder stays within its size limits and
covers each failure class with our own runs and foreign formats. Whether the tool meets the labels is
measured by benchmarks/diag_power.py, not here."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"


def load_labels_module():
    spec = importlib.util.spec_from_file_location(
        "corpus_labels", ROOT / "benchmarks" / "corpus" / "labels.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


labels = load_labels_module()


@pytest.fixture(scope="module")
def corpus():
    entries, problems = labels.load(CORPUS)
    return entries, problems


def test_every_log_has_one_well_formed_label(corpus):
    entries, problems = corpus
    assert problems == []
    assert len(entries) >= 40


def test_sizes_stay_small(corpus):
    entries, _ = corpus
    sizes = {e.log.name: e.log.stat().st_size for e in entries}
    too_big = {name: size for name, size in sizes.items() if size >= 300_000}
    assert too_big == {}
    assert sum(sizes.values()) < 6_000_000


def test_each_failure_class_has_ours_and_foreign_files(corpus):
    entries, _ = corpus
    ours, foreign = Counter(), Counter()
    for e in entries:
        codes = set(e.label.expect) | {c for group in e.label.expect_any for c in group}
        (ours if e.label.origin == "ours-run" else foreign).update(codes)
    for code in ("FGD601", "FGD602", "FGD603", "FGD605", "FGD606", "FGD502", "FGD701", "FGD702"):
        assert ours[code] >= 1 and foreign[code] >= 1, code
    assert foreign["FGD703"] >= 1  # fp16 loss scaling: our trainer refuses fp16, so only foreign logs
    verdicts = Counter(e.label.verdict for e in entries)
    assert verdicts["healthy"] >= 10 and verdicts["crashed"] >= 3
    assert sum(e.label.exit_code == 2 for e in entries) >= 2
    assert sum(bool(e.label.recovered) for e in entries) >= 3


def test_healthy_logs_forbid_the_error_codes(corpus):
    entries, _ = corpus
    for e in entries:
        if e.label.verdict == "healthy":
            assert {"FGD601", "FGD602", "FGD701", "FGD702"} <= set(e.label.forbid), e.name


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"description": "x", "origin": "ours-run", "exit_code": 0, "verdict": "healthy", "colour": 1},
            "unknown key",
        ),
        ({"description": "x", "origin": "ours-run", "verdict": "healthy"}, "missing key 'exit_code'"),
        (
            {
                "description": "x",
                "origin": "ours-run",
                "exit_code": 1,
                "verdict": "failing",
                "expect": ["FGD6"],
            },
            "FGD6",
        ),
        ({"description": "x", "origin": "ours-run", "exit_code": 1, "verdict": "broken"}, "verdict"),
        ({"description": "x", "origin": "ours-run", "exit_code": 3, "verdict": "failing"}, "exit_code"),
        ({"description": "x", "origin": "not-a-log", "exit_code": 2, "verdict": "healthy"}, "omit it"),
        ({"description": "x", "origin": "somewhere", "exit_code": 0, "verdict": "healthy"}, "origin"),
        (
            {"description": "x", "origin": "moco", "exit_code": 0, "verdict": "failing"},
            "goes with exit_code 1",
        ),
        (
            {
                "description": "x",
                "origin": "moco",
                "exit_code": 0,
                "verdict": "healthy",
                "expect": ["FGD601"],
            },
            "healthy",
        ),
        (
            {
                "description": "x",
                "origin": "moco",
                "exit_code": 1,
                "verdict": "failing",
                "expect_any": [["FGD601"]],
            },
            "two or more",
        ),
        (
            {
                "description": "x",
                "origin": "moco",
                "exit_code": 1,
                "verdict": "failing",
                "expect": ["FGD601"],
                "forbid": ["FGD601"],
            },
            "expected and forbidden",
        ),
    ],
)
def test_malformed_labels_are_reported(data, fragment):
    _, problems = labels.check(data)
    assert any(fragment in p for p in problems), problems


def test_a_log_without_a_label_is_reported(tmp_path):
    (tmp_path / "run.log").write_text("{'loss': 1.0}\n")
    (tmp_path / "other.label.toml").write_text('description = "x"\norigin = "hf-trainer"\nexit_code = 2\n')
    entries, problems = labels.load(tmp_path)
    assert entries == []
    assert any("run.log: no label file run.label.toml" in p for p in problems)
    assert any("other.label.toml: 0 logs" in p for p in problems)
