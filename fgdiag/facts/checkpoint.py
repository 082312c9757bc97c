"""What check-config knows about one checkpoint or model directory, once `fgdiag.static.checkpoints` read it.

The rules judge these objects and never open a file: tensor data they need (the non-finite scan) comes
through the `Weights` protocol, which the static reader implements.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fgclip.vocab import SCALE_PARAMS

SCALE_HEADS = tuple(SCALE_PARAMS.values())  # logit_scale, logit_scale_finegrained, logit_scale_hardneg
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


class Weights(Protocol):
    """Every tensor of one model directory or weights file (shards and formats merged), data read lazily."""

    files: list[Path]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]

    def nonfinite(self) -> dict[Path, list[str]]:
        """Per file, the names of the tensors holding NaN or Inf."""
        ...


@dataclass
class Scale:
    value: float
    dtype: str
    key: str  # the saved name


@dataclass
class CheckpointInfo:
    """What check-config needs from one checkpoint or model directory."""

    path: Path
    weights: Weights
    naming: str  # fgclip | fork | upstream | clip
    scales: dict[str, Scale]  # by our parameter name (SCALE_HEADS)
    memory_bank_size: int | None
    memory_bank_warmup_steps: int | None  # optimizer steps (ours)
    forward_passes: int | None  # fork `training_steps`: forward passes so far
    step: int | None  # optimizer step (directory name or trainer_state.json)
    config: dict[str, Any] | None  # config.json, when present


def round_to(value: float, dtype: str) -> float:
    """The value a tensor of `dtype` holds nearest to `value` (bf16: round to nearest even on 16 bits)."""
    fmt = {"BF16": "<f", "F32": "<f", "F16": "<e"}.get(dtype)
    if fmt is None:
        return float(value)
    try:
        packed = struct.pack(fmt, value)
    except OverflowError:
        return float(value)
    if dtype != "BF16":
        return float(struct.unpack(fmt, packed)[0])
    bits = struct.unpack("<I", packed)[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])
