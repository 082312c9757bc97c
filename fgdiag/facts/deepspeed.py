"""A DeepSpeed JSON config as check-config read it: the values the Trainer must agree with, each a `Field`
with its line, and the blocks that change what the Trainer does (an `optimizer` or `scheduler` of its own).

transformers fills every `"auto"` value from the TrainingArguments and refuses an explicit value that
disagrees (at start, after the model is loaded); a missing `gradient_clipping` means no clipping at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fgdiag.facts.values import Field

# dotted keys the rules compare with the Trainer's arguments
STAGE = "zero_optimization.stage"
BF16 = "bf16.enabled"
FP16 = "fp16.enabled"
CLIPPING = "gradient_clipping"
ACCUMULATION = "gradient_accumulation_steps"
MICRO_BATCH = "train_micro_batch_size_per_gpu"
TRAIN_BATCH = "train_batch_size"
KEYS = (STAGE, BF16, FP16, CLIPPING, ACCUMULATION, MICRO_BATCH, TRAIN_BATCH)


@dataclass
class DeepSpeedConfig:
    path: str
    values: dict[str, Field] = field(default_factory=dict)  # dotted key -> Field (only keys present)
    blocks: set[str] = field(default_factory=set)  # top-level keys present (optimizer, scheduler, ...)

    def get(self, key: str) -> Field | None:
        return self.values.get(key)

    @property
    def anchor(self) -> str:
        return self.path
