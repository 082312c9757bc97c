"""benchmarks/gpu_suite.py runs every section in its CPU smoke mode (a real subprocess, tiny towers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_suite_smoke_runs_every_section(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert result["errors"] == {}
    sections = result["sections"]
    assert set(sections) == {"a_eager", "b_syncs", "c_overhead", "e_video", "d_memory", "x_compiled"}
    eager = sections["a_eager"]
    assert eager["max_abs_loss_diff_fp32"] <= 1e-5 and eager["max_abs_loss_diff_bf16"] == 0.0
    assert eager["unique_texts"] < eager["text_uses"]
    syncs = sections["b_syncs"]
    assert syncs["dispatch_sync_ops_per_step_diag_off"] == syncs["dispatch_sync_ops_per_step_diag_on"] == 0
    assert len(sections["c_overhead"]["ratios"]) == sections["c_overhead"]["alternations"]
    assert 0 <= sections["e_video"]["workers_1"]["wait_share"] <= 1
    assert sections["d_memory"]["without_checkpointing"]["largest"] > 0
