"""`accelerate launch` with 2 CPU processes (gloo): the README's accelerate command, run for a few steps.

accelerate starts several CPU processes only through its torchrun launcher (`--multi_gpu`); with `--cpu`
it runs one process whatever `--num_processes` says (multi-CPU there needs MPI). The training arguments
then pick the CPU and gloo. No accelerate config file is read: HF_HOME points into the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import tiny_args


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(port: int, out: Path, *extra: str) -> list[str]:
    """The README line: accelerate launch --multi_gpu --num_processes 2 -m fgclip.train --preset embedded
    ... --use_cpu true --ddp_backend gloo (plus the machine flags that keep accelerate from guessing)."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    return [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        "-m",
        "fgclip.train",
        *tiny_args(out, *extra),
        "--use_cpu",
        "true",
        "--ddp_backend",
        "gloo",
    ]


def test_accelerate_two_cpu_processes_share_one_memory_bank(embedded, tmp_path):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the accelerate launcher is not installed next to this python")
    out = tmp_path / "acc"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf")}
    extra = ("--max_steps", "3", "--per_device_train_batch_size", "4", "--memory_bank_warmup_steps", "1")
    run = subprocess.run(
        accelerate_command(_port(), out, *extra),
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = json.loads((out / "memory_bank_ranks.json").read_text())
    assert len(ranks["checksums"]) == 2 and ranks["identical"] is True, ranks
    assert ranks["checksums"][0] != 0.0  # the bank received keys (warm-up 1 of 3 steps)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert run.stdout.count("param groups:") == 1  # only rank 0 prints the run's log lines
