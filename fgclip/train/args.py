"""Command-line / config-file arguments of `python -m fgclip.train`, parsed by transformers' HfArgumentParser.

Precedence, lowest first: dataclass defaults < `--preset` < `--config FILE` (TOML or JSON, flat or in
[model]/[data]/[training] sections) < explicit command-line flags.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class ModelArguments:
    """Where the towers come from, plus overrides of FGCLIPConfig fields (None keeps the checkpoint's)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "CLIP or FG-CLIP checkpoint (dir or hub id)"}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "defaults to model_name_or_path"}
    )
    finegrained_logit_scale_init: float | None = field(
        default=None, metadata={"help": "raw region scale (ln 100)"}
    )
    hardneg_logit_scale_init: float | None = field(default=None, metadata={"help": "raw hard-negative scale"})
    logit_scale_max: float | None = field(default=None, metadata={"help": "clamp after each optimizer step"})
    global_long_loss_weight: float | None = None
    global_short_loss_weight: float | None = None
    region_loss_weight: float | None = None
    hard_negative_loss_weight: float | None = None
    region_head: str | None = field(default=None, metadata={"help": "shared | roi_projection"})
    memory_bank_size: int | None = None
    memory_bank_warmup_steps: int | None = field(default=None, metadata={"help": "in optimizer steps"})
    memory_bank_mask_duplicates: bool | None = None
    max_boxes_per_sample: int | None = None
    num_hard_negatives: int | None = None
    num_frames: int | None = None
    temporal_pooling: str | None = field(default=None, metadata={"help": "mean | attention"})

    def config_overrides(self) -> dict[str, Any]:
        skip = {"model_name_or_path", "tokenizer_name_or_path"}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


@dataclass
class DataArguments:
    data_path: str | None = field(
        default=None, metadata={"help": "annotation JSON/JSONL (image or video records)"}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "folder the records' paths are relative to"}
    )
    data_format: str = field(default="auto", metadata={"help": "image | video | auto"})
    box_policy: str = field(default="drop", metadata={"help": "drop | clip | error"})


@dataclass
class FGCLIPTrainingArguments(TrainingArguments):
    """TrainingArguments plus FG-CLIP's learning rates, resume policy and presets."""

    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "lr of new heads (roi_projection, long-text projection and positions); "
            "default: learning_rate"
        },
    )
    logit_scale_learning_rate: float | None = field(default=None, metadata={"help": "lr of the logit scales"})
    resume_policy: str = field(
        default="refuse",
        metadata={
            "help": "refuse: stop on stale checkpoints; ignore: start fresh beside them; "
            "resume: resume from the newest checkpoint"
        },
    )
    compile_text_tower: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the text tower (GPU: removes per-call overhead; "
            "H100 step 113 -> 89 ms at batch 32)"
        },
    )
    bf16_parameter_storage: str | None = field(
        default=None,
        metadata={
            "help": "comma-separated parameter names kept on the bf16 grid (rounded after every optimizer "
            "step), as in a model cast to bf16 like the fgclip-vad fork's: e.g. logit_scale_finegrained"
        },
    )
    preset: str | None = field(default=None, metadata={"help": "embedded: generate data + tiny CLIP, train"})
    config: str | None = field(default=None, metadata={"help": "TOML/JSON file with these arguments"})
    remove_unused_columns: bool = False


FOREIGN_KEYS = {
    "memory_bank_warmup_forward_passes": "fgclip counts memory-bank warm-up in optimizer steps: set "
    "memory_bank_warmup_steps = forward passes / gradient_accumulation_steps (fgdiag check-config FGD202)",
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Flat dict of argument values from TOML or JSON; sections [model]/[data]/[training] are merged."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise SystemExit(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot parse config: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in ("model", "data", "training"):
            flat.update(value)
        else:
            flat[key] = value
    for key in flat:
        if key in FOREIGN_KEYS:
            raise SystemExit(f"{path}: field {key!r} is not accepted: {FOREIGN_KEYS[key]}")
    return flat


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


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, FGCLIPTrainingArguments]:
    """Parse with precedence defaults < preset < config file < command line."""
    from fgclip.train.presets import PRESETS

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = _option_value(argv, "config")
    from_file = read_config_file(config_path) if config_path is not None else {}
    layered: list[str] = []
    preset = _option_value(argv, "preset") or from_file.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise SystemExit(f"--preset {preset!r}: unknown preset; known: {', '.join(PRESETS)}")
        layered += to_argv(PRESETS[preset])
    layered += to_argv(from_file)
    full = layered + argv
    if (_option_value(full, "fp16") or "").lower() in ("true", "1", "yes") or (
        "--fp16" in full and _option_value(full, "fp16") in (None, "")
    ):
        from fgclip.train.main import FP16_REFUSAL

        raise SystemExit(FP16_REFUSAL)
    if _option_value(full, "bf16") is None and _option_value(full, "fp16") is None and "--fp16" not in full:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            full += ["--bf16", "true"]  # bf16 on GPU by default; fp32 on CPU
    parser = HfArgumentParser((ModelArguments, DataArguments, FGCLIPTrainingArguments))
    model_args, data_args, train_args = parser.parse_args_into_dataclasses(args=full)
    return model_args, data_args, train_args
