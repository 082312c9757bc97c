"""`fgdiag run --compare seed` as a user runs it: a real subprocess, two real trainings, the report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from fgdiag.cli.app import app


def test_run_compare_seed_end_to_end(embedded, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fgdiag.cli.app",
            "run",
            "--out",
            str(out),
            "--compare",
            "seed",
            "--no-live",
            "--json",
            "--parallel",
            "--every",
            "1",
            "--",
            "--max_steps",
            "24",
            "--per_device_train_batch_size",
            "16",
            "--gradient_accumulation_steps",
            "1",
            "--memory_bank_warmup_steps",
            "4",
            "--logging_steps",
            "2",
            "--learning_rate",
            "1e-3",
            "--head_learning_rate",
            "1e-3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    fixed, seed = summary["runs"]["fixed"], summary["runs"]["seed"]
    assert fixed["last_step"] == seed["last_step"] == 24
    assert not [f for f in fixed["findings"] if f["severity"] == "error"]
    seed_codes = {f["code"] for f in seed["findings"]}
    assert {"FGD101", "FGD201"} <= seed_codes, seed_codes
    comparison = summary["comparison"]
    assert comparison["memory bank switched on"] == {"fixed": "step 4", "seed": "never"}
    assert comparison["temperature exp(scale) at start"]["seed"].startswith("14.")
    # the seed arm's scales sit on bf16's 2.65625 for the whole run, as in the fork's logs
    assert comparison["logit_scale (region, raw) at start"]["seed"] == "2.6562"
    assert comparison["logit_scale (region, raw) at end"]["seed"] == "2.6562"
    _check_progress_lines(proc.stderr)
    report = out / "report"
    for name in ("report.html", "report.md", "comparison.md"):
        assert (report / name).is_file(), name
    assert list(report.glob("*.png"))
    assert (
        "FGD101" in (report / "report.md").read_text() or "FGD101" in (report / "comparison.md").read_text()
    )
    assert (out / "fixed" / "training.log").read_text().count("logit_scale (finegrained):") >= 10
    # the run's own stdout log (transformers 5 prints values as strings) reads back step by step
    from fgdiag import read_log

    read = read_log(out / "fixed" / "training.log")
    assert sorted(read.rows) == list(range(2, 25, 2))
    assert all(read.rows[s].get("region_loss") is not None for s in read.rows)
    assert not [e for e in read.events if e.get("kind") == "resume"]
    assert read.rows[24]["memory_bank/active"] == 1.0


def _check_progress_lines(stderr: str) -> None:
    """Each run announces itself, both start before either finishes (side by side), and progress lines
    never repeat a step of their run."""
    lines = [line for line in stderr.splitlines() if line.startswith("[fgdiag run]")]
    started = [i for i, line in enumerate(lines) if "training started" in line]
    finished = [i for i, line in enumerate(lines) if ": finished in" in line]
    assert len(started) == len(finished) == 2, lines
    assert max(started) < min(finished), lines
    for name in ("fixed", "seed"):
        steps = [
            int(m.group(1)) for line in lines if (m := re.match(rf"\[fgdiag run\] {name}: step (\d+),", line))
        ]
        assert steps, (name, lines)
        assert steps == sorted(set(steps)), (name, steps)  # strictly increasing: no step printed twice


def test_run_refuses_a_config_with_errors(tmp_path):
    bad = tmp_path / "seed.toml"
    bad.write_text(
        'model_name_or_path = "openai/clip-vit-base-patch32"\nfinegrained_logit_scale_init = 2.6592\n'
        "memory_bank_size = 128\nmemory_bank_warmup_steps = 400\nmax_steps = 240\n"
        'data_path = "missing.json"\noutput_dir = "out"\n'
    )
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "o"), "--no-live"])
    assert result.exit_code == 1
    assert "FGD101" in result.output and "--force" in result.output
    missing = CliRunner().invoke(app, ["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2


def test_a_rerun_moves_the_previous_arm_aside(tmp_path):
    from fgdiag.runs import move_previous

    arm = tmp_path / "fixed"
    assert move_previous(arm) is None  # nothing there yet
    (arm / "checkpoint-400").mkdir(parents=True)
    (arm / "fgdiag").mkdir()
    (arm / "fgdiag" / "events.jsonl").write_text('{"type": "run"}\n')
    moved = move_previous(arm, now=0.0)
    assert moved == tmp_path / "previous" / "19700101T000000Z-fixed" and not arm.exists()
    assert (moved / "checkpoint-400").is_dir() and (moved / "fgdiag" / "events.jsonl").read_text()
    manifest = json.loads((moved / "MANIFEST.json").read_text())
    assert manifest["undo"] == f"mv {moved} {arm}"
    (arm / "x").mkdir(parents=True)
    assert move_previous(arm, now=0.0).name == "19700101T000000Z-fixed-2"  # never over an earlier one
