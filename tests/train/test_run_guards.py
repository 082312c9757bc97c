"""Issue 14.3, 14.4 and 14.8 on real files and processes: data whose boxes are unusable, two runs into one
output folder (and a SIGKILLed holder), impossible configuration and training values. Each stops before
step 0 with exit 2 and a message naming the file / option, never a traceback."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgclip.config import FGCLIPConfig, FGCLIPConfigError
from fgclip.train.lock import HOLDER_NAME
from fgclip.train.main import main

from .conftest import tiny_args

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ENABLE_RUNTIME_DIAG": "0"}


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fgclip.train", *tiny_args(out, *extra)]


def cli(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, *extra), env=ENV, capture_output=True, text=True, timeout=300)


def bad_boxes(embedded, tmp_path: Path, share: float) -> Path:
    """The embedded annotations with the first `share` of the records' boxes inverted (x0 > x1)."""
    records = json.loads(Path(embedded["data_path"]).read_text())
    for record in records[: round(share * len(records))]:
        for region in record["bbox_info"]:
            x0, y0, x1, y1 = region["bbox"]
            region["bbox"] = [x1, y0, x0, y1]
    path = tmp_path / f"boxes-{share}.json"
    path.write_text(json.dumps(records))
    return path


def data_args(embedded, path: Path) -> tuple[str, ...]:
    return ("--data_path", str(path), "--image_root", embedded["image_root"], "--max_steps", "2")


# ---------------------------------------------------------------- 14.3 boxes
def test_all_invalid_boxes_stop_before_step_0_with_the_counts_and_the_audit_command(embedded, tmp_path):
    path = bad_boxes(embedded, tmp_path, 1.0)
    run = cli(tmp_path / "run", *data_args(embedded, path))
    assert run.returncode == 2, run.stdout[-2000:]  # was exit 0, trained without a single region
    assert "Traceback" not in run.stderr
    assert "no usable region" in run.stderr and "0 usable regions" in run.stderr
    assert "inverted=" in run.stderr
    assert f"fgdiag data-audit {path} --policy drop --grid-size 8" in run.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
    # the printed command shows the same boxes
    line = next(x for x in run.stderr.splitlines() if "See every dropped box:" in x)
    printed = shlex.split(line.split(":", 1)[1])
    assert printed[0] == "fgdiag"
    audit = subprocess.run(
        [sys.executable, "-c", "from fgdiag.cli.app import main; main()", *printed[1:], "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(audit.stdout)
    assert result["invalid"]["inverted"] == result["boxes"] > 0, audit.stderr


def test_dropped_share_threshold_is_configurable(embedded, tmp_path, capsys):
    path = bad_boxes(embedded, tmp_path, 0.6)
    assert main(tiny_args(tmp_path / "a", *data_args(embedded, path))) == 2
    assert "more than max_dropped_box_ratio=0.5" in capsys.readouterr().err
    assert main(tiny_args(tmp_path / "b", *data_args(embedded, path), "--max_dropped_box_ratio", "0.7")) == 0


def test_box_policy_error_exits_with_the_record_not_a_traceback(embedded, tmp_path):
    path = bad_boxes(embedded, tmp_path, 1.0)
    run = cli(tmp_path / "run", *data_args(embedded, path), "--box_policy", "error")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"{path}:1 (record 0) bbox_info[0].bbox: invalid box: inverted" in run.stderr


# ---------------------------------------------------------------- 14.4 one run per output folder
def _wait_for_holder(out: Path, pid: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads((out / HOLDER_NAME).read_text())["pid"] == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the first run never took the lock (exit {proc.poll()})")


def test_second_run_into_the_same_folder_is_refused_and_a_killed_holder_does_not_block(embedded, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        command(out, "--max_steps", "100000"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_holder(out, first.pid, first)
        second = cli(out, "--max_steps", "2")
        assert second.returncode == 2, second.stderr[-2000:]  # was exit 0, both writing checkpoints
        assert f"pid {first.pid} on " in second.stderr and "started " in second.stderr
        assert "another training is writing into this output folder" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    third = cli(out, "--max_steps", "2")  # the kernel released the dead run's lock
    assert third.returncode == 0, third.stderr[-2000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


# ---------------------------------------------------------------- 14.8 impossible values
@pytest.mark.parametrize(
    "values",
    [
        {"memory_bank_size": -128},
        {"memory_bank_warmup_steps": -1},
        {"max_boxes_per_sample": 0},
        {"num_hard_negatives": -3},
        {"region_loss_weight": -0.1},
        {"hard_negative_loss_weight": float("nan")},
        {"finegrained_logit_scale_init": float("inf")},
        {"logit_scale_max": float("nan")},
    ],
)
def test_fgclip_config_refuses_impossible_values_at_construction(values):
    (field,) = values
    with pytest.raises(FGCLIPConfigError, match=rf"FGCLIPConfig\.{field}=") as exc:
        FGCLIPConfig(**values)
    assert exc.value.field == field


def test_impossible_training_values_exit_2_naming_option_and_source(embedded, tmp_path):
    run = cli(
        tmp_path / "run",
        "--per_device_train_batch_size",
        "-1",
        "--gradient_accumulation_steps",
        "0",
        "--max_steps",
        "0",
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr  # was a ZeroDivisionError traceback
    for option in ("per_device_train_batch_size -1", "gradient_accumulation_steps 0", "max_steps 0"):
        assert f"--{option} (the command line): must be" in run.stderr, option
    bank = cli(tmp_path / "bank", "--memory_bank_size", "-128")
    assert bank.returncode == 2 and "Traceback" not in bank.stderr
    assert "FGCLIPConfig.memory_bank_size=-128" in bank.stderr and "from the command line" in bank.stderr


def test_config_file_values_are_refused_with_file_and_line(embedded, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('preset = "embedded"\n\n[training]\nlogging_steps = 2\nmax_steps = -5\n')
    assert main(["--config", str(cfg), "--output_dir", str(tmp_path / "o")]) == 2
    assert f"--max_steps -5 ({cfg}:5): must be >= 1" in capsys.readouterr().err
    cfg.write_text('preset = "embedded"\n[training]\nmax_stepz = 10\n')
    assert main(["--config", str(cfg), "--output_dir", str(tmp_path / "o")]) == 2
    assert f"{cfg}:3: unknown option 'max_stepz'; did you mean 'max_steps'?" in capsys.readouterr().err
    assert main(tiny_args(tmp_path / "o", "--max_stepz", "3")) == 2
    assert "unknown option '--max_stepz'; did you mean '--max_steps'?" in capsys.readouterr().err
