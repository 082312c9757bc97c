"""`fgdiag check-config` as a command: JSON schema and key order, human output, exit codes 0/1/2 through
typer's runner and through a real subprocess, errors on stderr naming the file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgdiag.cli.app import app

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b

FINDING_KEYS = ["code", "severity", "message", "location", "help"]
SUMMARY_KEYS = [
    "errors",
    "warnings",
    "infos",
    "exit_code",
    "inputs",
    "dialect",
    "plan",
    "checkpoints",
    "models",
    "notes",
    "quarantine",
]
PLAN_KEYS = [
    "world_size",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "data_size",
    "planned_optimizer_steps",
    "memory_bank_size",
    "memory_bank_candidates",
    "memory_bank_warmup",
    "memory_bank_warmup_unit",
    "memory_bank_activation_step",
    "regions_per_forward",
    "regions_per_optimizer_step",
]
CHECKPOINT_KEYS = [
    "path",
    "step",
    "naming",
    "logit_scale",
    "memory_bank_size",
    "memory_bank_warmup_steps",
    "training_steps",
    "tensors",
]


def invoke(*args: str):
    return CliRunner().invoke(app, ["check-config", *args])


@pytest.fixture
def seed_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    b.seed_checkpoint(out, 20)
    return out


def test_check_config_json_schema_is_stable(seed_out: Path) -> None:
    result = invoke(str(b.HERE / "seed.toml"), str(seed_out), "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["findings", "summary"]
    assert all(list(f) == FINDING_KEYS for f in data["findings"])
    assert list(data["summary"]) == SUMMARY_KEYS
    assert list(data["summary"]["plan"]) == PLAN_KEYS
    assert list(data["summary"]["checkpoints"][0]) == CHECKPOINT_KEYS
    assert data["summary"]["errors"] == sum(f["severity"] == "error" for f in data["findings"])
    assert {f["code"] for f in data["findings"]} >= {"FGD101", "FGD201", "FGD202", "FGD401"}
    again = json.loads(invoke(str(b.HERE / "seed.toml"), str(seed_out), "--json").stdout)
    assert again == data  # deterministic order


def test_check_config_human_output(seed_out: Path) -> None:
    result = invoke(str(b.HERE / "seed.toml"), str(seed_out))
    lines = result.stdout.splitlines()
    assert (
        f"{b.HERE / 'seed.toml'}:6:finegrained_logit_scale_init: FGD101 region logit scale" in result.stdout
    )
    assert any(line.startswith("  help: ") for line in lines)
    assert "\x1b[" not in result.stdout  # no colour without a terminal
    assert lines[-1].startswith("4 error(s)")


def test_check_config_exit_codes_runner(tmp_path: Path, seed_out: Path) -> None:
    assert invoke(str(b.HERE / "fixed.toml")).exit_code == 0
    assert invoke(str(b.HERE / "train_ucf_full.sh")).exit_code == 0  # warnings only
    assert invoke(str(b.HERE / "seed.toml"), str(seed_out)).exit_code == 1
    assert invoke(str(b.HERE / "seed.toml"), str(seed_out), "--ignore", "FGD1,FGD201,FGD401").exit_code == 0
    only = json.loads(invoke(str(b.HERE / "seed.toml"), str(seed_out), "--json", "--select", "FGD2").stdout)
    assert {f["code"] for f in only["findings"]} == {"FGD201", "FGD202"}
    missing = invoke(str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "nope.toml: does not exist" in missing.stderr
    assert invoke(str(b.HERE / "fixed.toml"), "--select", "XYZ").exit_code == 2
    assert invoke().exit_code == 2  # no path: usage error


def test_check_config_bad_input_names_file_line_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[training]\nmax_steps = 40\nlearning_rate = = 5e-6\n")
    result = invoke(str(broken))
    assert result.exit_code == 2 and f"{broken}:3: invalid TOML" in result.stderr
    typed = tmp_path / "typed.toml"
    typed.write_text('[training]\nmax_steps = 40\ngradient_accumulation_steps = "eight"\n')
    result = invoke(str(typed))
    assert result.exit_code == 2
    assert f"{typed}:3: field gradient_accumulation_steps: expected a number, got 'eight'" in result.stderr
    assert result.stdout == ""


def run_process(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "fgdiag.cli.app", "check-config", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_check_config_exit_codes_subprocess(tmp_path: Path, seed_out: Path) -> None:
    clean = run_process(str(b.HERE / "fixed.toml"), "--json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["summary"]["exit_code"] == 0
    errors = run_process(str(b.HERE / "seed.toml"), str(seed_out))
    assert errors.returncode == 1 and "FGD401" in errors.stdout
    unreadable = tmp_path / "model"
    unreadable.mkdir()
    (unreadable / "model.safetensors").write_bytes(b"\x00" * 4)
    bad = run_process(str(unreadable))
    assert bad.returncode == 2 and "model.safetensors" in bad.stderr and bad.stdout == ""
