"""fgclip's own command-line options, as plain dataclasses that import neither torch nor transformers.

`args.py` hands them to transformers' HfArgumentParser for real runs (and mixes `FGCLIPOptions` into
`TrainingArguments`); `help.py` renders `--help` from the same fields without importing transformers, so
`python -m fgclip.train --help` starts in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


@dataclass
class ModelArguments:
    """Where the towers come from, plus overrides of FGCLIPConfig fields (None keeps the checkpoint's)."""

    _argument_group_name = "model (FGCLIPConfig overrides; unset keeps the checkpoint's value)"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "metavar": "PATH",
            "help": (
                "CLIP or FG-CLIP checkpoint (folder or hub id), or an OpenAI CLIP file (.pt/.safetensors)"
            ),
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"metavar": "PATH", "help": "tokenizer folder or hub id (default: model_name_or_path)"},
    )
    finegrained_logit_scale_init: float | None = field(
        default=None, metadata={"help": "raw (log-space) region scale at start; ln 100 = 4.6052"}
    )
    hardneg_logit_scale_init: float | None = field(
        default=None, metadata={"help": "raw hard-negative scale at start"}
    )
    logit_scale_max: float | None = field(
        default=None, metadata={"help": "clamp of every raw scale after each optimizer step"}
    )
    global_long_loss_weight: float | None = field(default=None, metadata={"help": "weight (upstream 1)"})
    global_short_loss_weight: float | None = field(default=None, metadata={"help": "weight (upstream 1)"})
    region_loss_weight: float | None = field(default=None, metadata={"help": "weight (upstream 0.1)"})
    hard_negative_loss_weight: float | None = field(default=None, metadata={"help": "weight (upstream 0.5)"})
    region_head: Literal["shared", "roi_projection"] | None = field(
        default=None, metadata={"help": "project regions with visual_projection, or a separate head"}
    )
    memory_bank_size: int | None = field(default=None, metadata={"help": "queued region negatives (0: off)"})
    memory_bank_warmup_steps: int | None = field(
        default=None, metadata={"help": "optimizer steps (not forward passes) before the bank joins"}
    )
    memory_bank_mask_duplicates: bool | None = field(
        default=None, metadata={"help": "mask negatives whose caption equals the positive's"}
    )
    mask_near_duplicates: bool | None = field(
        default=None,
        metadata={
            "help": "also mask near-duplicate captions (same canonical key: case, punctuation, stop "
            "words, plurals, -ing folded); default true"
        },
    )
    mask_contained_captions: bool | None = field(
        default=None,
        metadata={
            "help": "also mask captions whose words contain the positive's or are contained in them "
            "('red circle' / 'a large red circle in the top left'); default true"
        },
    )
    near_duplicate_cosine: float | None = field(
        default=None,
        metadata={
            "help": "also mask captions whose text embeddings have cosine >= this (e.g. 0.95); default off"
        },
    )
    max_boxes_per_sample: int | None = field(default=None, metadata={"help": "regions kept per sample"})
    num_hard_negatives: int | None = field(default=None, metadata={"help": "negatives per hard box"})
    num_frames: int | None = field(default=None, metadata={"help": "frames per video clip"})
    temporal_pooling: Literal["mean", "attention"] | None = field(
        default=None, metadata={"help": "how frame features become a clip feature"}
    )

    def config_overrides(self) -> dict[str, Any]:
        """The FGCLIPConfig fields set on the command line / in the config file / by the preset."""
        skip = {"model_name_or_path", "tokenizer_name_or_path"}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


@dataclass
class DataArguments:
    _argument_group_name = "data"

    data_path: str | None = field(
        default=None, metadata={"metavar": "FILE", "help": "annotation JSON/JSONL (image or video records)"}
    )
    image_root: str | None = field(
        default=None, metadata={"metavar": "DIR", "help": "folder the records' media paths are relative to"}
    )
    data_format: Literal["auto", "image", "video"] = field(
        default="auto", metadata={"help": "record layout (auto: from the first record)"}
    )
    box_policy: Literal["drop", "clip", "error"] = field(
        default="drop", metadata={"help": "invalid boxes: drop them, clip them, or stop with the record"}
    )
    max_dropped_box_ratio: float = field(
        default=0.5,
        metadata={
            "help": "stop before step 0 when the box policy drops more than this share of the boxes "
            "(1 turns the check off; data without any valid region always stops a region loss)"
        },
    )


@dataclass
class FGCLIPOptions:
    """fgclip's training options; `FGCLIPTrainingArguments` adds them to transformers' TrainingArguments."""

    _argument_group_name = "training (fgclip)"

    preset: str | None = field(
        default=None,
        metadata={
            "metavar": "NAME",
            "help": "named settings under --config and the command line (see Presets)",
        },
    )
    config: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE",
            "help": "TOML/JSON file with any of these options (see precedence above)",
        },
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "lr of new heads (roi_projection, long-text projection and positions); "
            "default: learning_rate"
        },
    )
    logit_scale_learning_rate: float | None = field(
        default=None, metadata={"help": "lr of the logit scales (default: learning_rate)"}
    )
    resume_policy: Literal["refuse", "ignore", "resume"] = field(
        default="refuse",
        metadata={
            "help": "checkpoints already in output_dir: refuse = stop on ones that disagree with the "
            "configuration, else resume the newest intact one; resume = the same; ignore = never read "
            "them, train into a fresh subfolder"
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
            "metavar": "NAMES",
            "help": "comma-separated parameter names kept on the bf16 grid (rounded after every optimizer "
            "step), as in a model cast to bf16 like the fgclip-vad fork's: e.g. logit_scale_finegrained",
        },
    )


OPTION_GROUPS = (ModelArguments, DataArguments, FGCLIPOptions)


def option_names() -> list[str]:
    """Every fgclip option name, in help order."""
    return [f.name for group in OPTION_GROUPS for f in fields(group)]


__all__ = ["OPTION_GROUPS", "DataArguments", "FGCLIPOptions", "ModelArguments", "option_names"]
