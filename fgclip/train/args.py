"""Command-line / config-file arguments of `python -m fgclip.train`, parsed by transformers' HfArgumentParser.

Precedence, lowest first: dataclass defaults < `--preset` < `--config FILE` (TOML or JSON, flat or in
[model]/[data]/[training] sections) < explicit command-line flags. `parse_with_sources` also says where each
value came from, so a refusal can name the file and line (or the command line, or the preset).
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import DataClassType

from fgclip.train.errors import TrainingRefused
from fgclip.train.options import DataArguments, FGCLIPOptions, ModelArguments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FP16_REFUSAL = (
    "fp16 is refused: with logit scale exp(4.6052) = 100 the similarity logits reach +-100 and "
    "fp16 softmax/exp overflow (FG-CLIP's README reports NaN). Use --bf16 true on GPU, fp32 on CPU."
)
USAGE = "%(prog)s [--preset NAME] [--config FILE] [OPTIONS]   (--help: fgclip's options, --help-all: all)"


@dataclass
class FGCLIPTrainingArguments(TrainingArguments, FGCLIPOptions):
    """TrainingArguments plus FG-CLIP's learning rates, resume policy, presets and config file."""


FOREIGN_KEYS = {
    "memory_bank_warmup_forward_passes": "fgclip counts memory-bank warm-up in optimizer steps: set "
    "memory_bank_warmup_steps = forward passes / gradient_accumulation_steps (fgdiag check-config FGD202)",
}
ARGUMENT_TYPES = (ModelArguments, DataArguments, FGCLIPTrainingArguments)


def known_fields() -> set[str]:
    return {f.name for dtype in ARGUMENT_TYPES for f in fields(dtype)}


def closest(name: str, known: set[str]) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _line_of(text: str, key: str) -> int | None:
    """1-based line where `key` is set in a TOML (`key =`) or JSON (`"key":`) text."""
    pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*[=:]|"{re.escape(key)}"\s*:', re.MULTILINE)
    found = pattern.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Flat dict of argument values from TOML or JSON ([model]/[data]/[training] merged), and the
    `file:line` each value was read from. Unknown keys are refused with the closest known name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise TrainingRefused(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingRefused(f"{path}: cannot read config file: {exc}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TrainingRefused(f"{path}: cannot parse config: {exc}") from None
    if not isinstance(raw, dict):
        raise TrainingRefused(f"{path}: a config file holds a table/object of options")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in ("model", "data", "training"):
            flat.update(value)
        else:
            flat[key] = value
    where = {key: f"{path}:{line}" if (line := _line_of(text, key)) else str(path) for key in flat}
    known = known_fields()
    for key in flat:
        if key in FOREIGN_KEYS:
            raise TrainingRefused(f"{where[key]}: field {key!r} is not accepted: {FOREIGN_KEYS[key]}")
        if key not in known:
            raise TrainingRefused(f"{where[key]}: unknown option {key!r}{closest(key, known)}")
    return flat, where


def to_argv(values: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def _option_value(argv: list[str], name: str) -> str | None:
    for i, token in enumerate(argv):
        if token == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(f"--{name}="):
            return token.split("=", 1)[1]
    return None


def _command_line_names(argv: list[str]) -> set[str]:
    return {t[2:].split("=", 1)[0].replace("-", "_") for t in argv if t.startswith("--")}


def _refuse_fp16(full: list[str]) -> None:
    value = _option_value(full, "fp16")
    if (value or "").lower() in ("true", "1", "yes") or ("--fp16" in full and value in (None, "")):
        raise TrainingRefused(FP16_REFUSAL)


def build_parser(prog: str) -> HfArgumentParser:
    return HfArgumentParser([DataClassType(t) for t in ARGUMENT_TYPES], prog=prog, usage=USAGE)


def parse_with_sources(
    argv: list[str] | None = None, prog: str = "python -m fgclip.train"
) -> tuple[ModelArguments, DataArguments, FGCLIPTrainingArguments, dict[str, str]]:
    """Parse with precedence defaults < preset < config file < command line; also return, per option
    set anywhere, where its value came from ("the command line", "FILE:LINE", "preset NAME")."""
    from fgclip.train.presets import PRESETS

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = _option_value(argv, "config")
    from_file, file_lines = read_config_file(config_path) if config_path is not None else ({}, {})
    sources: dict[str, str] = {}
    layered: list[str] = []
    preset = _option_value(argv, "preset") or from_file.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise TrainingRefused(f"--preset {preset!r}: unknown preset; known: {', '.join(PRESETS)}")
        layered += to_argv(PRESETS[preset])
        sources.update({key: f"preset {preset}" for key in PRESETS[preset]})
    layered += to_argv(from_file)
    sources.update(file_lines)
    sources.update({name: "the command line" for name in _command_line_names(argv)})
    full = layered + argv
    _refuse_fp16(full)
    if _option_value(full, "bf16") is None and _option_value(full, "fp16") is None and "--fp16" not in full:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            full += ["--bf16", "true"]  # bf16 on GPU by default; fp32 on CPU
    parser = build_parser(prog)
    try:
        model_args, data_args, train_args, rest = parser.parse_args_into_dataclasses(
            args=full, return_remaining_strings=True
        )
    except ValueError as exc:  # TrainingArguments.__post_init__ refusing a value
        raise TrainingRefused(f"TrainingArguments: {exc}") from None
    if rest:
        known = {f"--{name}" for name in known_fields()}
        unknown = next((t for t in rest if t.startswith("-")), rest[0])
        raise TrainingRefused(
            f"the command line: unknown option {unknown!r}{closest(unknown.split('=')[0], known)}"
        )
    return model_args, data_args, train_args, sources


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, FGCLIPTrainingArguments]:
    """Parse with precedence defaults < preset < config file < command line."""
    model_args, data_args, train_args, _ = parse_with_sources(argv)
    return model_args, data_args, train_args


__all__ = [
    "FP16_REFUSAL",
    "DataArguments",
    "FGCLIPTrainingArguments",
    "ModelArguments",
    "parse_args",
    "parse_with_sources",
    "read_config_file",
    "to_argv",
]
