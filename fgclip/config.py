"""FGCLIPConfig: transformers' CLIPConfig plus every FG-CLIP training knob, each documented and validated.

The fields that caused the seed's silent failures live here with safe defaults: region and hard-negative
logit scales start at ln 100 (what a CLIP checkpoint's global scale is), a clamp at ln 100, and a memory-bank
warm-up counted in optimizer steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from transformers import CLIPConfig

if TYPE_CHECKING:
    from transformers import CLIPTextConfig, CLIPVisionConfig

from fgclip.vocab import CLIP_FROM_SCRATCH_SCALE, LN_100

REGION_HEADS = ("shared", "roi_projection")
TEMPORAL_POOLINGS = ("mean", "attention")


class FGCLIPConfigError(ValueError):
    """A config field holds a value the model cannot train with; the message (and `field`) name it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FGCLIPConfig(CLIPConfig):
    r"""CLIP config extended with FG-CLIP's region / hard-negative heads, memory bank and video settings.

    Added fields (all validated by `check()`, called at model construction):
        global_logit_scale_init: initial raw (log-space) global scale for a model built from scratch; a
            pretrained checkpoint's own `logit_scale` wins. None means `logit_scale_init_value`.
        finegrained_logit_scale_init: initial raw scale of the region head. ln 100 by default: fine-tuning
            starts from checkpoints at ln 100, and a new head at CLIP's from-scratch 2.6592 caps the logits
            at +-14 and kept the seed's region loss at chance.
        hardneg_logit_scale_init: initial raw scale of the hard-negative head (ln 100, same reason).
        logit_scale_max: clamp applied to every raw scale after each optimizer step (None: no clamp).
        global_long_loss_weight / global_short_loss_weight / region_loss_weight / hard_negative_loss_weight:
            weights of the four loss parts (upstream: 1, 1, 0.1, 0.5).
        long_text_max_positions: positions of the long-caption table (248 = 4*77 - 3*20 in upstream).
        long_text_keep_positions: leading positions copied verbatim when stretching the 77-row table (20).
        max_boxes_per_sample: regions kept per sample (upstream 4).
        num_hard_negatives: negatives per hard box (upstream 10, so 11-way).
        region_head: "shared" projects RoI features with `visual_projection` (upstream), "roi_projection" adds
            a separate head initialised as a copy of `visual_projection` (fgclip-vad).
        memory_bank_size: queue length of region negatives (0 disables the bank).
        memory_bank_warmup_steps: optimizer steps before queued negatives join the loss.
        memory_bank_mask_duplicates: mask negatives (in the batch and in the queue) whose caption equals the
            positive's caption: they are false negatives. False masks nothing (the near-duplicate fields
            below then have no effect; the duplicate statistics are still reported).
        mask_near_duplicates: also mask near-duplicate captions ("a person walking" / "A person is
            walking."): equal canonical keys, computed by the collator (fgclip/data/caption_key.py: case,
            punctuation, stop words, plural and -ing folded). True by default: repeated captions with small
            wording changes are frequent in real annotations.
        mask_contained_captions: also mask candidates whose caption's canonical words contain the positive's,
            or are contained in them ("red circle" / "a large red circle in the top left", "a person
            walking" / "a person walking on the street"): the caption that says less may describe the other
            region too. Words count as a set (order ignored). True by default (measured in
            benchmarks/near_duplicates.py).
        near_duplicate_cosine: also mask candidates whose caption's text embedding has cosine >= this
            value with the positive's (detached, on the device); None (default) turns it off. It depends on
            the text tower: a real CLIP puts unrelated short captions at 0.6-0.9, so keep it high (0.95+);
            a tiny tower that cannot yet tell captions apart masks true negatives (measured in
            benchmarks/near_duplicates.py).
        num_frames: frames per video clip (1 for images).
        temporal_pooling: "mean" (masked mean of frame features) or "attention" (learned attention pooling).
    """

    model_type = "fgclip"

    if TYPE_CHECKING:  # CLIPConfig types these Optional; after its __post_init__ they are always set
        text_config: CLIPTextConfig
        vision_config: CLIPVisionConfig
        projection_dim: int
        logit_scale_init_value: float
        initializer_factor: float

    global_logit_scale_init: float | None = None
    finegrained_logit_scale_init: float = LN_100
    hardneg_logit_scale_init: float = LN_100
    logit_scale_max: float | None = LN_100
    global_long_loss_weight: float = 1.0
    global_short_loss_weight: float = 1.0
    region_loss_weight: float = 0.1
    hard_negative_loss_weight: float = 0.5
    long_text_max_positions: int = 248
    long_text_keep_positions: int = 20
    max_boxes_per_sample: int = 4
    num_hard_negatives: int = 10
    region_head: str = "shared"
    memory_bank_size: int = 0
    memory_bank_warmup_steps: int = 0
    memory_bank_mask_duplicates: bool = True
    mask_near_duplicates: bool = True
    mask_contained_captions: bool = True
    near_duplicate_cosine: float | None = None
    num_frames: int = 1
    temporal_pooling: str = "mean"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check()  # at construction: FGCLIPConfig(memory_bank_size=-128) must not exist

    def check(self) -> FGCLIPConfig:
        """Validate every added field; raise FGCLIPConfigError naming the field, its value and the fix.
        Runs at construction and again after overrides are set (`load_config`, model construction)."""

        def fail(field: str, why: str) -> None:
            raise FGCLIPConfigError(f"FGCLIPConfig.{field}={getattr(self, field)!r}: {why}", field)

        value = self.logit_scale_init_value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail("logit_scale_init_value", "must be a finite raw (log-space) scale, e.g. 4.6052 = ln 100")

        for field in ("finegrained_logit_scale_init", "hardneg_logit_scale_init", "global_logit_scale_init"):
            value = getattr(self, field)
            if value is None and field == "global_logit_scale_init":
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(field, "must be a finite number (raw log-space scale, e.g. 4.6052 = ln 100)")
            if value < 0:
                fail(
                    field, "a negative raw scale means temperature > 1; use a log-space value such as 4.6052"
                )
            if 0 < value < 0.6:
                fail(field, "looks like a temperature (e.g. 0.07), but this field is log-space: use ln(1/T)")
        if self.logit_scale_max is not None:
            if not isinstance(self.logit_scale_max, (int, float)) or not math.isfinite(self.logit_scale_max):
                fail("logit_scale_max", "must be a finite raw scale or None")
            for field in (
                "finegrained_logit_scale_init",
                "hardneg_logit_scale_init",
                "global_logit_scale_init",
            ):
                value = getattr(self, field)
                if value is not None and value > self.logit_scale_max + 1e-3:  # 4.6052 vs ln 100 = 4.60517
                    fail(field, f"initialised above the clamp logit_scale_max={self.logit_scale_max}")
        for field in (
            "global_long_loss_weight",
            "global_short_loss_weight",
            "region_loss_weight",
            "hard_negative_loss_weight",
        ):
            value = getattr(self, field)
            finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not finite or value < 0:
                fail(field, "must be a finite number >= 0")
        for field in ("long_text_max_positions", "long_text_keep_positions"):
            if not isinstance(getattr(self, field), int) or isinstance(getattr(self, field), bool):
                fail(field, "must be an integer")
        text_positions = self.text_config.max_position_embeddings
        if self.long_text_keep_positions < 1 or self.long_text_keep_positions >= text_positions:
            fail("long_text_keep_positions", f"must be in [1, {text_positions - 1}]")
        stretched = 4 * text_positions - 3 * self.long_text_keep_positions
        if not (text_positions <= self.long_text_max_positions <= stretched):
            fail(
                "long_text_max_positions",
                f"must lie in [{text_positions}, {stretched}] (the 4x stretch of {text_positions} positions "
                f"keeping {self.long_text_keep_positions})",
            )
        for field, low in (("max_boxes_per_sample", 1), ("num_hard_negatives", 1), ("num_frames", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                fail(field, f"must be an integer >= {low}")
        for field, unit in (
            ("memory_bank_size", " (0 turns the bank off)"),
            ("memory_bank_warmup_steps", " (optimizer steps, not forward passes)"),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(field, f"must be an integer >= 0{unit}")
        for field in ("memory_bank_mask_duplicates", "mask_near_duplicates", "mask_contained_captions"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "must be true or false")
        cosine = self.near_duplicate_cosine
        if cosine is not None:
            if isinstance(cosine, bool) or not isinstance(cosine, (int, float)) or not 0 < cosine <= 1:
                fail(
                    "near_duplicate_cosine", "must be a cosine in (0, 1] (e.g. 0.95), or None to turn it off"
                )
            if not self.memory_bank_mask_duplicates:
                fail(
                    "near_duplicate_cosine",
                    "masks near-duplicates but memory_bank_mask_duplicates=False masks nothing: "
                    "set memory_bank_mask_duplicates=True or near_duplicate_cosine=None",
                )
        if self.region_head not in REGION_HEADS:
            fail("region_head", f"must be one of {REGION_HEADS}")
        if self.temporal_pooling not in TEMPORAL_POOLINGS:
            fail("temporal_pooling", f"must be one of {TEMPORAL_POOLINGS}")
        return self

    @property
    def initial_global_scale(self) -> float:
        return (
            self.logit_scale_init_value
            if self.global_logit_scale_init is None
            else float(self.global_logit_scale_init)
        )


__all__ = ["CLIP_FROM_SCRATCH_SCALE", "LN_100", "FGCLIPConfig", "FGCLIPConfigError"]
