"""`python -m fgclip.train --help` / `fgclip-train --help`: our options first, no torch or transformers
import, and every option it shows is one the real (HfArgumentParser) parser accepts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PROBE = (
    "import sys; sys.argv = [{name!r}, {flag!r}]\n"
    "from fgclip.train.main import main\n"
    "code = main()\n"
    "print('IMPORTED', 'torch' in sys.modules, 'transformers' in sys.modules, code)\n"
)


def _help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fgclip.train", *args], env=ENV, capture_output=True, text=True, timeout=120
    )


def test_help_lists_fgclip_options_first_with_the_precedence():
    run = _help("--preset", "embedded", "--help")
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert text.startswith("usage: python -m fgclip.train [--preset NAME] [--config FILE]")
    order = [
        text.index("Where a value comes from"),
        text.index("\nmodel ("),
        text.index("\ndata:"),
        text.index("\ntraining (fgclip):"),
        text.index("\nTrainer options most runs set"),
    ]
    assert order == sorted(order)
    assert "--preset NAME" in text and "--config FILE" in text and "--help-all" in text
    assert "[embedded: 20]" in text  # the preset's memory_bank_warmup_steps next to the option
    assert len(text.splitlines()) < 120  # was 678 lines, ours last


@pytest.mark.parametrize(("name", "prog"), [("fgclip-train", "fgclip-train"), ("x/__main__.py", "python -m")])
def test_help_imports_neither_torch_nor_transformers(name, prog):
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(name=name, flag="--help")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"usage: {prog}" in run.stdout
    assert run.stdout.rstrip().endswith("IMPORTED False False 0")


def test_console_script_usage_names_itself():
    script = Path(sys.executable).with_name("fgclip-train")
    if not script.exists():
        pytest.skip("the fgclip-train console script is not installed next to this python")
    run = subprocess.run([str(script), "-h"], env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage: fgclip-train "), run.stdout[:200]


def test_every_help_option_is_accepted_by_the_real_parser():
    from transformers import TrainingArguments

    from fgclip.train.args import build_parser
    from fgclip.train.help import COMMON_TRAINER_OPTIONS, fast_parser

    real = {option for action in build_parser("p")._actions for option in action.option_strings}
    shown = {option for action in fast_parser("p")._actions for option in action.option_strings}
    assert shown - {"--help-all"} <= real
    trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(COMMON_TRAINER_OPTIONS) <= trainer_fields


def test_help_all_adds_every_trainer_option_after_ours():
    run = _help("--help-all")
    assert run.returncode == 0, run.stderr
    text = run.stdout
    trainer_section = text.index("\nTrainer options (transformers.TrainingArguments):")
    assert text.index("\ntraining (fgclip):") < trainer_section
    from transformers import TrainingArguments

    for f in dataclasses.fields(TrainingArguments):
        if f.init and not f.name.startswith("_"):
            assert f"--{f.name} " in text[trainer_section:] or f"--{f.name}," in text[trainer_section:], (
                f.name
            )
