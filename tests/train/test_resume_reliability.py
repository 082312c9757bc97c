"""Issue 14.1 and 14.11 in real processes: a corrupt checkpoint in the resume guard, and a rerun of a
finished run (the Trainer used to take one step past max_steps when it is not a multiple of the epoch)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import tiny_args

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ENABLE_RUNTIME_DIAG": "0"}


def cli(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fgclip.train", *tiny_args(out, *extra)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def global_step(folder: Path) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["global_step"]


@pytest.fixture(scope="module")
def corrupt_template(embedded, tmp_path_factory) -> Path:
    """A finished 10-step run whose checkpoint-10 weights were cut (`truncate -s 600000`), made once."""
    out = tmp_path_factory.mktemp("corrupt") / "run"
    first = cli(out, "--max_steps", "10", "--save_steps", "5")
    assert first.returncode == 0, first.stderr[-3000:]
    with (out / "checkpoint-10" / "model.safetensors").open("r+b") as fh:
        fh.truncate(600_000)
    return out


def _corrupt_run(template: Path, out: Path) -> Path:
    shutil.copytree(template, out)
    return out / "checkpoint-10" / "model.safetensors"


def test_corrupt_checkpoint_is_named_set_aside_and_the_newest_intact_one_resumed(corrupt_template, tmp_path):
    out = tmp_path / "run"
    _corrupt_run(corrupt_template, out)
    intact = (out / "checkpoint-5" / "model.safetensors").stat().st_mtime_ns
    run = cli(out, "--max_steps", "12", "--save_steps", "5", "--save_total_limit", "5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "checkpoint-10 is unreadable (model.safetensors:" in run.stdout
    assert "resuming from checkpoint-5, the newest intact checkpoint" in run.stdout
    (manifest_path,) = (out / "quarantine").glob("*/MANIFEST.json")
    manifest = json.loads(manifest_path.read_text())
    (entry,) = manifest["entries"]
    assert entry["status"] == "moved" and entry["original_path"].endswith("checkpoint-10")
    kept = Path(entry["quarantined_path"]) / "model.safetensors"
    assert kept.stat().st_size == 600_000  # the corrupt file itself, never deleted or overwritten
    assert global_step(out) == 12
    assert (out / "checkpoint-5" / "model.safetensors").stat().st_mtime_ns == intact  # resumed, not redone
    assert global_step(out / "checkpoint-10") == 10  # written fresh by the resumed run


def test_resume_policy_ignore_never_reads_the_checkpoints(corrupt_template, tmp_path):
    out = tmp_path / "run"
    weights = _corrupt_run(corrupt_template, out)
    before = weights.stat()
    run = cli(out, "--max_steps", "2", "--resume_policy", "ignore")
    assert run.returncode == 0, run.stderr[-3000:]  # was a SafetensorError traceback, exit 1
    assert "Traceback" not in run.stderr and "unreadable" not in run.stdout
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime == before.st_mtime
    assert not (out / "quarantine").exists()
    (fresh,) = out.glob("fresh-*")
    assert global_step(fresh) == 2


def test_rerunning_a_finished_run_trains_nothing_and_says_how_to_continue(embedded, tmp_path):
    out = (
        tmp_path / "run"
    )  # batch 8 x accumulation 2 over 256 samples: 16 steps per epoch, 3 is not a multiple
    first = cli(out, "--max_steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]
    again = cli(out, "--max_steps", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already reached its plan" in again.stdout and "--max_steps" in again.stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # was checkpoint-4
    assert global_step(out) == 3
    more = cli(out, "--max_steps", "5")  # the way to continue
    assert more.returncode == 0, more.stderr[-3000:]
    assert global_step(out) == 5 and (out / "checkpoint-5").is_dir()


def test_integrity_names_the_cut_file_of_a_real_checkpoint(corrupt_template, tmp_path):
    from fgclip.train.integrity import checkpoint_problem

    good = corrupt_template / "checkpoint-5"
    assert checkpoint_problem(good) is None
    assert "model.safetensors" in checkpoint_problem(corrupt_template / "checkpoint-10")
    for name, cut in (("optimizer.pt", None), ("trainer_state.json", b"{")):
        broken = tmp_path / name
        shutil.copytree(good, broken)
        if cut is None:
            with (broken / name).open("r+b") as fh:
                fh.truncate((broken / name).stat().st_size // 2)
        else:
            (broken / name).write_bytes(cut)
        assert checkpoint_problem(broken).startswith(name), name
