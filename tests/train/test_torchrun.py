"""torchrun with 2 CPU processes (gloo): same queue on both ranks, global loss equal to one process on the
same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import tiny_args

COMMON = (
    "--max_steps",
    "2",
    "--logging_steps",
    "1",
    "--gradient_accumulation_steps",
    "1",
    "--memory_bank_warmup_steps",
    "0",
    "--use_cpu",
    "true",
    "--seed",
    "3",
)


def first_log(out: Path) -> dict:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return next(e for e in history if "loss" in e)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(embedded, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "fgclip.train",
            *tiny_args(single, *COMMON, "--per_device_train_batch_size", "8"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_port()),
            "-m",
            "fgclip.train",
            *tiny_args(multi, *COMMON, "--per_device_train_batch_size", "4", "--ddp_backend", "gloo"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    ranks = json.loads((multi / "memory_bank_ranks.json").read_text())
    assert len(ranks["checksums"]) == 2 and ranks["identical"] is True
    a, b = first_log(single), first_log(multi)
    for part in ("global_long_loss", "global_short_loss"):
        assert abs(a[part] - b[part]) < 1e-4, (part, a[part], b[part])
    # only rank 0 prints the run's log lines
    assert two.stdout.count("param groups:") == 1
