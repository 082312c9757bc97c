"""check-config on what `python -m fgclip.train` leaves behind (issue 13 item 7, issue 14 item 7): a run
folder or one of its checkpoints, given alone, is judged by the configuration it ran with (config.json,
trainer_state.json, training_args.bin read as data); the training lock files are ignored; quarantine
manifests written by fgclip.train are read like ours. Real training runs on the embedded data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fgdiag.check import check_paths
from fgdiag.diagnostic import Severity, exit_code
from fgdiag.facts.values import InputError
from fgdiag.runs import SEED_SETTINGS
from fgdiag.static.inputs import classify
from fgdiag.static.run_folder import LOCK_FILES

REPO = Path(__file__).resolve().parents[2]
SHORT = [
    "--max_steps",
    "8",
    "--save_steps",
    "4",
    "--logging_steps",
    "4",
    "--per_device_train_batch_size",
    "4",
]
SHORT += ["--disable_tqdm", "true", "--dataloader_pin_memory", "false"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose FGCLIP_HOME holds the embedded data and a 3-step tiny CLIP (built on first
    use)."""
    root = tmp_path_factory.mktemp("fgclip_home")
    return dict(os.environ, FGCLIP_HOME=str(root), FGCLIP_PRETRAIN_STEPS="3", PYTHONPATH=str(REPO))


def train(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fgclip.train", "--preset", "embedded", "--output_dir", str(out)]
    done = subprocess.run([*command, *SHORT, *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def seed_run(home: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed arm of `fgdiag run --compare seed` (heads at 2.6592, warm-up 100000), 8 steps."""
    out = tmp_path_factory.mktemp("runs") / "seed"
    train(home, out, *SEED_SETTINGS)
    return out


def codes(findings, severity=None):
    return {f.code for f in findings if severity is None or f.severity is severity}


def test_seed_run_folder_and_checkpoint_give_fgd101_and_fgd201(seed_run: Path) -> None:
    """Before: the folder gave FGD101 from its weights only, its checkpoint-8 nothing but FGD401; neither
    read the warm-up of 100000 written in their config.json."""
    assert {p.name for p in seed_run.iterdir()} >= set(LOCK_FILES)  # the lock files are there, and ignored
    for path in (seed_run, seed_run / "checkpoint-8"):
        findings, summary = check_paths([path])
        config = path / "config.json"
        lines = config.read_text().splitlines()
        warmup_line = next(i for i, t in enumerate(lines, 1) if '"memory_bank_warmup_steps"' in t)
        heads = [f for f in findings if f.code == "FGD101" and f.location.startswith(str(config))]
        assert {f.location.rsplit(":", 1)[-1] for f in heads} == {
            "finegrained_logit_scale_init",
            "hardneg_logit_scale_init",
        }
        [bank] = [f for f in findings if f.code == "FGD201"]
        assert bank.location == f"{config}:{warmup_line}:memory_bank_warmup_steps"
        assert "100000" in bank.message and "plans 8 optimizer steps" in bank.message
        assert {"FGD101", "FGD201"} <= codes(findings, Severity.ERROR) and exit_code(findings) == 1
        assert summary["plan"]["per_device_train_batch_size"] == 4  # from training_args.bin
        assert any("read as data (never unpickled)" in n for n in summary["notes"])
    done = subprocess.run(
        [sys.executable, "-m", "fgdiag.cli.app", "check-config", str(seed_run / "checkpoint-8")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1"),
        timeout=120,
    )
    assert done.returncode == 1 and "FGD201" in done.stdout and "FGD101" in done.stdout


def test_a_healthy_run_folder_is_clean_of_both(home: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "fixed"
    train(home, out, "--memory_bank_warmup_steps", "2")
    findings, _ = check_paths([out])
    assert not codes(findings) & {"FGD101", "FGD201", "FGD401", "FGD001", "FGD002"}


def test_a_given_configuration_wins_over_the_folders(seed_run: Path, tmp_path: Path) -> None:
    config = tmp_path / "fixed.toml"
    config.write_text('preset = "embedded"\n')
    findings, summary = check_paths([config, seed_run])
    assert not any(
        f.code == "FGD201" for f in findings
    )  # the warm-up of the configuration (20 < 8?) is judged
    assert summary["plan"]["memory_bank_warmup"] == 20
    assert "FGD401" in codes(findings)  # its checkpoints hold the heads at 2.6592


def test_lock_files_are_not_data(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    for name in LOCK_FILES:
        (folder / name).write_text('{"pid": 1}')
    with pytest.raises(InputError, match="holds no checkpoint"):
        classify(folder)


def test_fgclip_train_quarantine_manifest_is_read(home: dict[str, str], tmp_path: Path) -> None:
    """fgclip.train sets an unreadable checkpoint aside with its own manifest; check-config reports it."""
    out = tmp_path / "run"
    train(home, out, "--max_steps", "4", "--save_steps", "2")
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    train(home, out, "--max_steps", "6", "--save_steps", "2")
    [manifest] = list(out.glob("quarantine/*/MANIFEST.json"))
    assert json.loads(manifest.read_text())["tool"] == "fgclip.train (unreadable checkpoints)"
    _, summary = check_paths([out])
    [note] = [n for n in summary["notes"] if n.startswith(str(manifest))]
    assert "fgclip.train (unreadable checkpoints)" in note and "checkpoint-4 moved" in note
    assert "model.safetensors" in note


class Payload:
    """Pickles as a call of os.system: what a hostile training_args.bin would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Holder:
    """Stands in for TrainingArguments: an object rebuilt with a field dict."""


def test_hostile_training_args_are_read_as_data_never_run(tmp_path: Path) -> None:
    """training_args.bin is a pickle; one that asks for os.system is interpreted as data (the call becomes
    an inert record), the payload never runs, the plain fields are still read."""
    import pickle
    import zipfile

    from fgdiag.static.pickled_fields import Opaque, PickleFieldsError, read_pickle_data, training_arguments

    marker = tmp_path / "PWNED"
    holder = Holder()
    fields = {"per_device_train_batch_size": 3, "learning_rate": 1e-5, "report_to": Payload(marker)}
    holder.__dict__.update(fields)
    path = tmp_path / "training_args.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("training_args/data.pkl", pickle.dumps(holder, protocol=2))
    name, found = training_arguments(path)
    assert name.endswith("Holder") and found["per_device_train_batch_size"] == 3
    call = Opaque("posix.system" if os.name == "posix" else "nt.system", (f"touch {marker}",))
    assert found["report_to"] == call and not marker.exists()  # an inert record of the call
    assert read_pickle_data(pickle.dumps(Payload(marker), protocol=2)) == call
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PickleFieldsError):
        training_arguments(path)
