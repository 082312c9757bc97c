"""The effective settings of one planned run, as `fgdiag.static.settings` resolves them from configs and
scripts: every value a `Field` that says where it came from (a line, or the assumption it rests on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fgdiag.facts.checkpoint import CheckpointInfo
from fgdiag.facts.deepspeed import DeepSpeedConfig
from fgdiag.facts.values import ConfigValues, Field, as_float, as_int

# our parameter name -> the head's name in messages
SCALE_LABELS = {
    "logit_scale": "global",
    "logit_scale_finegrained": "region",
    "logit_scale_hardneg": "hard-negative",
}


@dataclass
class Settings:
    """Effective values (Fields) of one planned run; `notes` record every assumption made on the way."""

    dialect: str  # fgclip | fork | upstream
    anchor: str  # the file findings about defaults point at
    values: ConfigValues
    entry: str = ""  # the launched training script or module, when a shell script was read
    source: Field | None = None  # model_name_or_path
    source_info: CheckpointInfo | None = None
    source_scale: Field | None = None  # global logit scale of the pretrained source (raw)
    global_init: Field | None = None  # global init when training from scratch
    heads: dict[str, Field] = field(default_factory=dict)  # head -> initial raw scale
    clamp: Field | None = None  # value None: no clamp
    decayed: Field | None = None  # value: why the scales are decayed
    frozen: Field | None = None  # value: why the scales are frozen / missing
    bank_size: Field | None = None
    bank_effective: int | None = None
    warmup: Field | None = None
    warmup_unit: str = "optimizer"  # optimizer | forward
    fields: dict[str, Field] = field(default_factory=dict)  # batch, accum, world_size, lr, ... (Fields)
    new_heads: list[str] = field(default_factory=list)
    boxes_per_sample: int = 4
    targets: list[tuple[int | None, float, str]] = field(
        default_factory=list
    )  # (step, region loss, location)
    bank_active_by: tuple[int, str] | None = None  # (optimizer step, location) from a target profile
    deepspeed: DeepSpeedConfig | None = None  # the DeepSpeed JSON the run uses, when known
    defaults: dict[str, Any] = field(default_factory=dict)  # every option fgclip.train knows -> its default
    unknown: list[tuple[Field, str | None]] = field(default_factory=list)  # (key nobody reads, closest known)
    notes: list[str] = field(default_factory=list)

    def number(self, name: str) -> float | None:
        f = self.fields.get(name)
        return None if f is None else as_float(f)

    def integer(self, name: str) -> int | None:
        f = self.fields.get(name)
        return None if f is None else as_int(f)

    def initial_scales(self) -> list[tuple[str, Field, float]]:
        """(label, field, raw) of every initial scale that is known: the heads, then the global one."""
        out = [(SCALE_LABELS[h], f, v) for h, f in self.heads.items() if (v := as_float(f)) is not None]
        glob = self.source_scale or self.global_init
        if glob is not None and (v := as_float(glob)) is not None:
            out.append(("global", glob, v))
        return out
