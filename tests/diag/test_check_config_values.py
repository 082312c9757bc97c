"""check-config on nonsense and hostile configurations (issue 14 items 6 and 8) and on presets (issue 13
item 7): impossible values are FGD001 errors at their line, typos FGD002 with the closest option, repeated
JSON keys FGD003 naming both lines; TOML duplicates, huge integers and deep nesting exit 2 naming the file;
a preset is applied as fgclip.train applies it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fgclip.config import FGCLIPConfig, FGCLIPConfigError
from fgclip.train.presets import PRESETS
from fgclip.vocab import CLIP_FROM_SCRATCH_SCALE, LN_100
from fgdiag.check import check_paths
from fgdiag.diagnostic import Severity, exit_code
from fgdiag.facts.values import InputError
from fgdiag.rules.configuration import MINIMUM

REPO = Path(__file__).resolve().parents[2]


def check_process(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fgdiag.cli.app", "check-config", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def by_code(findings, code):
    return [f for f in findings if f.code == code]


def test_impossible_values_are_errors_at_their_line(tmp_path: Path) -> None:
    """Before: exit 0, and FGD203 judged a bank of -128 entries against -8 regions per step."""
    path = tmp_path / "neg.toml"
    path.write_text(
        "[model]\nmemory_bank_size = -128\nmemory_bank_warmup_steps = -3\n[training]\n"
        "per_device_train_batch_size = -2\ngradient_accumulation_steps = 0\nmax_steps = -5\n"
        "learning_rate = -1e-5\n"
    )
    findings, summary = check_paths([path])
    errors = {f.location: f for f in by_code(findings, "FGD001")}
    assert set(errors) == {
        f"{path}:2:memory_bank_size",
        f"{path}:3:memory_bank_warmup_steps",
        f"{path}:5:per_device_train_batch_size",
        f"{path}:6:gradient_accumulation_steps",
        f"{path}:7:max_steps",
        f"{path}:8:learning_rate",
    }
    assert all(f.severity is Severity.ERROR for f in errors.values())
    assert "-128" in errors[f"{path}:2:memory_bank_size"].message
    assert not by_code(findings, "FGD203")  # an impossible queue is not judged as a queue
    assert summary["plan"]["per_device_train_batch_size"] == 1 and exit_code(findings) == 1
    done = check_process(str(path))
    assert done.returncode == 1 and f"{path}:2:memory_bank_size: FGD001" in done.stdout


@pytest.mark.parametrize(("field", "low"), sorted(MINIMUM.items()))
def test_minimums_are_fgclip_configs_own(field: str, low: int) -> None:
    """The bounds check-config applies are the ones FGCLIPConfig refuses (fgclip.config needs transformers,
    so the rule keeps a table; this holds it to the source)."""
    with pytest.raises(FGCLIPConfigError, match=field):
        FGCLIPConfig(**{field: low - 1})
    FGCLIPConfig(**{field: low})


def test_choices_and_scales_as_fgclip_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"region_head": "roi", "finegrained_logit_scale_init": 0.07, "region_loss_weight": -1})
    )
    messages = {f.location.rsplit(":", 1)[-1]: f.message for f in by_code(check_paths([path])[0], "FGD001")}
    assert "shared, roi_projection" in messages["region_head"]
    assert "temperature" in messages["finegrained_logit_scale_init"]
    assert ">= 0" in messages["region_loss_weight"]
    for field, value in (("region_head", "roi"), ("finegrained_logit_scale_init", 0.07)):
        with pytest.raises(FGCLIPConfigError):
            FGCLIPConfig(**{field: value})


def test_unknown_keys_and_tables_name_the_closest(tmp_path: Path) -> None:
    """Before: `max_stepz` and `[bogus]` were ignored without a word."""
    path = tmp_path / "typo.toml"
    path.write_text("max_stepz = 400\nper_device_train_batch_size = 4\n\n[bogus]\nx = 1\n[trainig]\ny = 2\n")
    found = {f.location: f for f in by_code(check_paths([path])[0], "FGD002")}
    assert set(found) == {f"{path}:1:max_stepz", f"{path}:4:bogus", f"{path}:6:trainig"}
    assert "did you mean 'max_steps'?" in found[f"{path}:1:max_stepz"].message
    assert "unknown table [bogus]" in found[f"{path}:4:bogus"].message
    assert "did you mean 'training'?" in found[f"{path}:6:trainig"].message
    assert all(f.severity is Severity.WARNING for f in found.values())
    script = tmp_path / "train.sh"
    script.write_text("python -m fgclip.train --max_stepz 10 --learning-rate 1e-5\n")
    found_script = by_code(check_paths([script])[0], "FGD002")
    assert [f.location for f in found_script] == [f"{script}:1:max_stepz"]


def test_fork_scripts_are_not_judged_against_our_options() -> None:
    fork = REPO / "tests" / "diag" / "fixtures_check_config" / "train_ucf_full.sh"
    assert not by_code(check_paths([fork])[0], "FGD002")


def test_repeated_json_keys_are_reported_with_both_lines(tmp_path: Path) -> None:
    """Before: the last value won silently."""
    path = tmp_path / "dup.json"
    path.write_text('{\n "max_steps": 400,\n "learning_rate": 1e-5,\n "max_steps": 40\n}\n')
    [dup] = by_code(check_paths([path])[0], "FGD003")
    assert dup.location == f"{path}:4:max_steps" and "lines 2 and 4" in dup.message and "(40)" in dup.message


def test_toml_duplicates_exit_2_naming_file_and_both_lines(tmp_path: Path) -> None:
    """tomllib says "Cannot overwrite a value (at end of document)" for a key repeated on the last line."""
    path = tmp_path / "dup.toml"
    path.write_text("[training]\nmax_steps = 400\nlearning_rate = 1e-5\nmax_steps = 40")
    with pytest.raises(InputError) as info:
        check_paths([path])
    assert f"{path}:4: field training.max_steps:" in str(info.value) and "lines 2 and 4" in str(info.value)
    tables = tmp_path / "tables.toml"
    tables.write_text("[model]\nmemory_bank_size = 1\n[model]\nnum_frames = 2\n")
    done = check_process(str(tables))
    assert done.returncode == 2 and f"{tables}:3" in done.stderr and "[model] is set twice" in done.stderr


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_hostile_configs_exit_2_naming_the_file(tmp_path: Path, suffix: str) -> None:
    """Before: a RecursionError / ValueError traceback and exit 1."""
    deep = tmp_path / f"deep{suffix}"
    nest = "[" * 100_000 + "]" * 100_000
    deep.write_text(f'{{"a": {nest}}}' if suffix == ".json" else f"a = {nest}\n")
    huge = tmp_path / f"huge{suffix}"
    digits = "9" * 5000
    huge.write_text(f'{{\n"max_steps": {digits}\n}}' if suffix == ".json" else f"\nmax_steps = {digits}\n")
    for path, words in ((deep, "nested too deeply"), (huge, "5000 digits")):
        done = check_process(str(path))
        assert done.returncode == 2, done.stderr
        assert str(path) in done.stderr and words in done.stderr and "Traceback" not in done.stderr
    assert f"{huge}:2: field max_steps" in check_process(str(huge)).stderr


def test_a_400_digit_integer_is_a_field_error(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("max_steps = " + "9" * 400 + "\n")
    done = check_process(str(path))
    assert done.returncode == 2 and f"{path}:1: field max_steps: expected a number" in done.stderr


def test_preset_values_reach_the_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `preset = "embedded"` plus both heads at 2.6592 gave 0 errors (the preset's source was never
    seen), and examples/embedded.toml was warned about the transformers default lr 5e-05."""
    monkeypatch.setenv("FGCLIP_HOME", str(tmp_path / "home"))  # the tiny CLIP is not built here
    path = tmp_path / "preset.toml"
    path.write_text(
        f'preset = "embedded"\n[model]\nfinegrained_logit_scale_init = {CLIP_FROM_SCRATCH_SCALE}\n'
        f"hardneg_logit_scale_init = {CLIP_FROM_SCRATCH_SCALE}\n"
    )
    findings, summary = check_paths([path])
    heads = by_code(findings, "FGD101")
    assert {f.location for f in heads} == {
        f"{path}:3:finegrained_logit_scale_init",
        f"{path}:4:hardneg_logit_scale_init",
    }
    assert all(f.severity is Severity.ERROR for f in heads) and exit_code(findings) == 1
    assert summary["plan"]["planned_optimizer_steps"] == PRESETS["embedded"]["max_steps"]
    assert summary["plan"]["memory_bank_size"] == PRESETS["embedded"]["memory_bank_size"]
    assert any("built on the first training run" in n for n in summary["notes"])
    example, _ = check_paths([REPO / "examples" / "embedded.toml"])
    assert not by_code(example, "FGD101")
    assert not any("5e-05" in f.message for f in example)
    lr = by_code(example, "FGD501")
    assert lr and all(f"{PRESETS['embedded']['learning_rate']:g}" in f.message for f in lr)


def test_config_and_command_line_override_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'preset = "embedded"\nmax_steps = 10\nfinegrained_logit_scale_init = {LN_100}\n')
    _, summary = check_paths([path])
    assert summary["plan"]["planned_optimizer_steps"] == 10
    script = tmp_path / "train.sh"
    script.write_text(
        "python -m fgclip.train --preset embedded --max_steps 7 --gradient_accumulation_steps 4\n"
    )
    _, summary = check_paths([script])
    plan = summary["plan"]
    assert (plan["planned_optimizer_steps"], plan["gradient_accumulation_steps"]) == (7, 4)
    assert plan["per_device_train_batch_size"] == PRESETS["embedded"]["per_device_train_batch_size"]
    unknown = tmp_path / "u.toml"
    unknown.write_text('preset = "tiny"\n')
    with pytest.raises(InputError, match=r"u\.toml:1: field preset: unknown preset 'tiny'"):
        check_paths([unknown])


def test_counts_beyond_any_run_are_errors_not_overflows(tmp_path: Path) -> None:
    """Found by tests/fuzz: `num_train_samples = "1e308"` or epochs at 1e300 raised OverflowError in the
    plan arithmetic; they are FGD001 now and the plan treats them as unknown."""
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"num_train_samples": "1e308", "num_train_epochs": 1e300, "max_steps": -1}))
    findings, summary = check_paths([path])
    assert {f.location.rsplit(":", 1)[-1] for f in by_code(findings, "FGD001")} >= {
        "num_train_samples",
        "num_train_epochs",
    }
    assert summary["plan"]["planned_optimizer_steps"] is None and summary["plan"]["data_size"] is None
