"""`--help` and `--help-all` of `python -m fgclip.train` / `fgclip-train`.

`--help` imports neither torch nor transformers: it is rendered from the torch-free option dataclasses
(`options.py`) with argparse's formatter, fgclip's options first, then the most used Trainer options by
name. `--help-all` builds the real HfArgumentParser and adds every `TrainingArguments` option after ours.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from fgclip.train.options import OPTION_GROUPS

DESCRIPTION = """\
Fine-tune an FG-CLIP model (global long/short, region and hard-negative losses, a memory bank of region
negatives) with transformers' Trainer.

Where a value comes from (a later source wins):
  1. the option's default (below)
  2. --preset NAME   named settings, shown as [NAME: value] next to the options they set
  3. --config FILE   TOML or JSON with the same option names, flat or in [model]/[data]/[training] sections
  4. the command line

Presets:
{presets}

Examples:
  {prog} --preset embedded --output_dir runs/e --max_steps 100
  {prog} --config run.toml --learning_rate 1e-5
"""
PRESET_HELP = {"embedded": "synthetic images and a tiny CLIP generated under $FGCLIP_HOME; 2 CPU cores"}
# the Trainer options most runs set, with a one-line reminder; every other one is behind --help-all
COMMON_TRAINER_OPTIONS = {  # name: (metavar, help)
    "output_dir": ("DIR", "checkpoints, logs and the final model (one run at a time: the folder is locked)"),
    "max_steps": ("N", "optimizer steps to train (-1: num_train_epochs)"),
    "num_train_epochs": ("E", "epochs when max_steps is -1"),
    "per_device_train_batch_size": ("B", "samples per device per forward pass"),
    "gradient_accumulation_steps": ("K", "forward passes per optimizer step"),
    "learning_rate": ("LR", "peak lr of the towers"),
    "weight_decay": ("WD", "decoupled weight decay (never on biases, norms, embeddings, scales)"),
    "warmup_steps": ("N", "lr warm-up (steps, or a ratio below 1)"),
    "lr_scheduler_type": ("NAME", "linear, cosine, ..."),
    "max_grad_norm": ("NORM", "gradient clipping (0: off)"),
    "logging_steps": ("N", "log every N optimizer steps"),
    "save_steps": ("N", "checkpoint every N optimizer steps"),
    "save_total_limit": ("N", "checkpoints kept"),
    "bf16": ("[true|false]", "bf16 mixed precision (default on a GPU that supports it; fp16 is refused)"),
    "report_to": ("NAME", "tensorboard, wandb, none, ..."),
    "seed": ("N", "random seed"),
    "use_cpu": ("[true|false]", "train on the CPU even if a GPU is present"),
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36, width=110)


def prog_name() -> str:
    """How the user started us: the console script, or `python -m fgclip.train`."""
    return "fgclip-train" if Path(sys.argv[0]).name == "fgclip-train" else "python -m fgclip.train"


def _metavar(hint: object) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(hint))) + "}"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # X | None
        return _metavar(args[0])
    if hint is bool:
        return "[true|false]"
    return getattr(hint, "__name__", str(hint)).upper()


def _describe(name: str, help_text: str, default: object, presets: dict[str, dict]) -> str:
    parts = [help_text]
    if default not in (None, MISSING):
        parts.append(f"(default: {default})")
    parts += [f"[{preset}: {values[name]}]" for preset, values in presets.items() if name in values]
    return " ".join(parts)


def fast_parser(prog: str) -> argparse.ArgumentParser:
    """An argparse parser used only to format `--help`; real runs parse with HfArgumentParser."""
    from fgclip.train.presets import PRESETS

    lines = "\n".join(f"  {name:<10} {PRESET_HELP.get(name, '')}".rstrip() for name in PRESETS)
    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [--preset NAME] [--config FILE] [OPTIONS]",
        description=DESCRIPTION.format(presets=lines, prog=prog),
        formatter_class=_Formatter,
        add_help=False,
        epilog=f"Every Trainer option ({prog} --help-all) is accepted on the command line and in --config.\n",
    )
    parser.add_argument("-h", "--help", action="store_true", help="this help")
    parser.add_argument("--help-all", action="store_true", help="this help plus every Trainer option")
    for group_type in OPTION_GROUPS:
        group = parser.add_argument_group(group_type._argument_group_name)
        hints = typing.get_type_hints(group_type)
        for f in fields(group_type):
            help_text = _describe(f.name, f.metadata.get("help", ""), f.default, PRESETS)
            metavar = f.metadata.get("metavar") or _metavar(hints[f.name])
            group.add_argument(f"--{f.name}", metavar=metavar, help=help_text)
    trainer = parser.add_argument_group("Trainer options most runs set (transformers.TrainingArguments)")
    for name, (metavar, help_text) in COMMON_TRAINER_OPTIONS.items():
        trainer.add_argument(f"--{name}", metavar=metavar, help=_describe(name, help_text, None, PRESETS))
    return parser


def full_help(prog: str) -> str:
    """`--help-all`: fgclip's options, then every TrainingArguments option (imports transformers)."""
    from transformers import HfArgumentParser, TrainingArguments
    from transformers.hf_argparser import DataClassType

    class AllTrainerOptions(TrainingArguments):  # only to title the group in the help
        _argument_group_name = "Trainer options (transformers.TrainingArguments)"

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, _Formatter):
        pass

    short = fast_parser(prog)
    parser = HfArgumentParser(
        [DataClassType(t) for t in (*OPTION_GROUPS, AllTrainerOptions)],
        prog=prog,
        usage=short.usage,
        description=short.description,
        formatter_class=Formatter,
    )
    return parser.format_help()


def print_help(argv: list[str]) -> None:
    prog = prog_name()
    print(full_help(prog) if "--help-all" in argv else fast_parser(prog).format_help(), end="")


def wants_help(argv: list[str]) -> bool:
    return any(token in ("-h", "--help", "--help-all") for token in argv)


__all__ = ["COMMON_TRAINER_OPTIONS", "fast_parser", "full_help", "print_help", "prog_name", "wants_help"]
