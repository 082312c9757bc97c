"""benchmarks/diag_power.py scores the real `fgdiag watch` against labels: a label the tool meets counts as
met, a label it misses is reported file by file, and --strict turns a miss into exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "diag_power.py"
CORPUS = ROOT / "tests" / "corpus"


def score(corpus: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--corpus", str(corpus), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_met_and_missed_labels(tmp_path):
    # a real healthy run of our trainer, labelled as the corpus labels it: met
    for name in ("ours_healthy_s2_plain.log", "ours_healthy_s2_plain.label.toml"):
        shutil.copy(CORPUS / name, tmp_path / name)
    # the same log labelled as a crash that must raise FGD702 and recover: every part of that label is missed
    shutil.copy(CORPUS / "ours_healthy_s2_plain.log", tmp_path / "mislabelled.log")
    (tmp_path / "mislabelled.label.toml").write_text(
        'description = "x"\norigin = "ours-run"\nverdict = "crashed"\nexit_code = 1\nexpect = ["FGD702"]\n'
        'expect_any = [["FGD605", "FGD606"]]\nrecovered = true\n'
    )
    proc = score(tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    files = {f["name"]: f for f in result["files"]}
    ok, bad = files["ours_healthy_s2_plain"], files["mislabelled"]
    assert ok["exit_code"] == 0 and ok["verdict"] == "healthy" and ok["missing"] == [] and ok["verdict_ok"]
    assert bad["missing"] == ["FGD702", "FGD605/FGD606"]
    assert bad["verdict_ok"] is False and bad["exit_ok"] is False and bad["recovered_ok"] is False
    summary = result["summary"]
    assert summary["recall"]["FGD702"] == {"fired": 0, "expected": 1}
    assert summary["verdict"] == {"right": 1, "total": 2}
    assert summary["files_with_misses"] == 1

    table = score(tmp_path)
    assert (
        "| mislabelled | crashed / healthy (recovery not said) | 1 / 0 | FGD702, FGD605/FGD606 |"
        in table.stdout
    )
    assert score(tmp_path, "--strict").returncode == 1
    assert score(tmp_path, "--strict", "--only", "ours_healthy_s2_plain").returncode == 0


def test_a_malformed_corpus_is_reported(tmp_path):
    (tmp_path / "orphan.log").write_text("{'loss': 1.0}\n")
    proc = score(tmp_path, "--strict")
    assert proc.returncode == 2
    assert "orphan.log: no label file orphan.label.toml" in proc.stderr
