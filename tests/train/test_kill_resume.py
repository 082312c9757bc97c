"""SIGKILL after a checkpoint, resume: the loss trajectory and the memory bank equal an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from .conftest import tiny_args

ARGS = (
    "--max_steps",
    "30",
    "--save_steps",
    "10",
    "--logging_steps",
    "1",
    "--gradient_accumulation_steps",
    "1",
    "--save_total_limit",
    "5",
)


def run(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ENABLE_RUNTIME_DIAG": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "fgclip.train", *tiny_args(out, *ARGS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}


def test_sigkill_then_resume_matches_uninterrupted(embedded, tmp_path):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = run(ref_dir)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    cut = run(cut_dir)
    marker = cut_dir / "checkpoint-10" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and cut.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "no checkpoint-10 before the deadline"
    time.sleep(0.2)
    cut.send_signal(signal.SIGKILL)
    cut.wait(timeout=30)
    assert cut.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (cut_dir / "model.safetensors").exists()

    resumed = run(cut_dir)  # default resume_policy: resume from the newest matching checkpoint
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = losses(ref_dir), losses(cut_dir)
    after = [s for s in a if s > 10]
    assert after and all(abs(a[s] - b[s]) < 1e-4 for s in after), [(s, a[s], b[s]) for s in after]
    ref_state, cut_state = load_file(ref_dir / "model.safetensors"), load_file(cut_dir / "model.safetensors")
    for key in (
        "memory_bank.image_queue",
        "memory_bank.ptr",
        "memory_bank.optimizer_steps",
        "memory_bank.activated_step",
        "logit_scale_finegrained",
    ):
        assert torch.allclose(ref_state[key].float(), cut_state[key].float(), atol=1e-5), key
    assert cut_state["memory_bank.optimizer_steps"].item() == 30
