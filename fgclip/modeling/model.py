"""FGCLIPModel: transformers' CLIP towers with FG-CLIP's long-text, region and hard-negative heads.

Parameter names of the towers are exactly `CLIPModel`'s, so any CLIP checkpoint loads; what it lacks is
initialised the way upstream FG-CLIP does (stretched long positions, long projection copied from
`text_projection`, roi head copied from `visual_projection`, auxiliary scales from the config) and reported
by name in `model.loading_report`. The forward returns named, weighted loss parts and detached statistics;
summing, clamping and step counting belong to the trainer.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import torch
from torch import nn
from transformers import initialization as init
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPTextModel, CLIPVisionModel

import fgclip.modeling.text as text
import fgclip.vocab as V
from fgclip.config import FGCLIPConfig
from fgclip.modeling.forward import FGCLIPForward, FGCLIPOutput
from fgclip.modeling.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss
from fgclip.modeling.memory_bank import RegionMemoryBank
from fgclip.modeling.temporal import AttentionPool
from fgclip.weights.load import foreign_source, hf_report, load_config, load_foreign
from fgclip.weights.names import EXPECTED_NEW_PREFIXES
from fgclip.weights.report import LoadingReport

logger = logging.getLogger(__name__)

HEADS = V.HEADS


class FGCLIPModel(FGCLIPForward, CLIPPreTrainedModel):
    config: FGCLIPConfig
    config_class = FGCLIPConfig

    def __init__(self, config: FGCLIPConfig):
        config.check()
        super().__init__(config)
        text_cfg, vision_cfg = config.text_config, config.vision_config
        self.projection_dim = config.projection_dim
        self.text_embed_dim = text_cfg.hidden_size
        self.vision_embed_dim = vision_cfg.hidden_size
        # CLIPModel's own modules, same names so CLIP checkpoints load unchanged
        self.text_model = CLIPTextModel._from_config(text_cfg)
        self.vision_model = CLIPVisionModel._from_config(vision_cfg)
        self.visual_projection = nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.initial_global_scale)))
        # FG-CLIP's additions
        self.long_position_embedding = nn.Embedding(config.long_text_max_positions, self.text_embed_dim)
        self.text_long_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        self.logit_scale_finegrained = nn.Parameter(torch.tensor(float(config.finegrained_logit_scale_init)))
        self.logit_scale_hardneg = nn.Parameter(torch.tensor(float(config.hardneg_logit_scale_init)))
        self.roi_projection = (
            nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
            if config.region_head == "roi_projection"
            else None
        )
        self.temporal_pool = (
            AttentionPool(self.projection_dim) if config.temporal_pooling == "attention" else None
        )
        self.memory_bank = (
            RegionMemoryBank(
                config.memory_bank_size,
                self.projection_dim,
                config.memory_bank_warmup_steps,
                config.memory_bank_mask_duplicates,
            )
            if config.memory_bank_size > 0
            else None
        )
        # `loss_at_max_scale` of every head is computed at the clamp (ln 100 when there is none)
        top = V.LN_100 if config.logit_scale_max is None else float(config.logit_scale_max)
        self.global_long_loss = GlobalContrastiveLoss("global_long", config.global_long_loss_weight, top)
        self.global_short_loss = GlobalContrastiveLoss("global_short", config.global_short_loss_weight, top)
        self.region_loss = RegionContrastiveLoss(
            config.region_loss_weight,
            config.memory_bank_mask_duplicates,
            mask_near_duplicates=config.mask_near_duplicates,
            mask_contained_captions=config.mask_contained_captions,
            near_duplicate_cosine=config.near_duplicate_cosine,
            max_raw_scale=top,
        )
        self.hard_negative_loss = HardNegativeLoss(config.hard_negative_loss_weight, top)
        self.loading_report: LoadingReport | None = None
        # "fused": every 77-position text of a step in one tower call over the collator's unique list;
        # "separate": upstream's layout, one call per group (the measured baseline; same values)
        self.text_path = "fused"
        self.post_init()
        self._derive_new_weights(
            ["long_position_embedding.weight", "text_long_projection.weight", "roi_projection.weight"]
        )

    # ------------------------------------------------------------------ initialisation and loading
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        factor = self.config.initializer_factor
        if isinstance(module, FGCLIPModel):
            init.normal_(module.text_projection.weight, std=module.text_embed_dim**-0.5 * factor)
            init.normal_(module.visual_projection.weight, std=module.vision_embed_dim**-0.5 * factor)
            init.normal_(module.text_long_projection.weight, std=module.text_embed_dim**-0.5 * factor)
            init.normal_(module.long_position_embedding.weight, std=0.02 * factor)
            if module.roi_projection is not None:
                init.normal_(module.roi_projection.weight, std=module.vision_embed_dim**-0.5 * factor)
            init.constant_(module.logit_scale, float(self.config.initial_global_scale))
            init.constant_(module.logit_scale_finegrained, float(self.config.finegrained_logit_scale_init))
            init.constant_(module.logit_scale_hardneg, float(self.config.hardneg_logit_scale_init))
        elif isinstance(module, RegionMemoryBank):
            init.zeros_(module.image_queue)
            init.zeros_(module.text_queue)
            init.constant_(module.caption_keys, -1)
            init.constant_(module.near_keys, -1)
            init.zeros_(module.caption_words)
            init.constant_(module.entry_step, -1)
            init.zeros_(module.ptr)
            init.zeros_(module.fill)
            init.zeros_(module.optimizer_steps)
            init.constant_(module.activated_step, -1)
            init.constant_(module.warmup_steps, int(self.config.memory_bank_warmup_steps))

    @torch.no_grad()
    def _derive_new_weights(self, names: list[str]) -> dict[str, str]:
        """Fill new heads from the towers the way upstream does; returns name -> how."""
        how: dict[str, str] = {}
        if "long_position_embedding.weight" in names:
            table = self.text_model.embeddings.position_embedding.weight
            self.long_position_embedding.weight.copy_(
                text.stretch_positions(
                    table, self.config.long_text_keep_positions, self.config.long_text_max_positions
                )
            )
            how["long_position_embedding.weight"] = (
                f"4x stretch of text_model.embeddings.position_embedding.weight keeping "
                f"{self.config.long_text_keep_positions} rows"
            )
        if "text_long_projection.weight" in names:
            self.text_long_projection.weight.copy_(self.text_projection.weight)
            how["text_long_projection.weight"] = "copy of text_projection.weight"
        if "roi_projection.weight" in names and self.roi_projection is not None:
            self.roi_projection.weight.copy_(self.visual_projection.weight)
            how["roi_projection.weight"] = "copy of visual_projection.weight"
        for name in ("logit_scale_finegrained", "logit_scale_hardneg"):
            if name in names:
                how[name] = f"config value {float(getattr(self, name)):.4f}"
        return how

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *args: Any, **kwargs: Any):
        """Load our checkpoint, a transformers CLIP folder or hub id, an upstream FG-CLIP folder, or an OpenAI
        CLIP file (safetensors, a state-dict .pt/.bin, or the `clip` package's TorchScript archive, whose code
        is never run); `fgclip_overrides` sets config fields.

        `model.loading_report` accounts for every tensor. Tower tensors the checkpoint lacks raise
        MissingWeightsError (the fgclip-vad loader silently left every q/k/v random) unless
        `strict_towers=False`, which keeps them random and logs a warning.
        """
        overrides = kwargs.pop("fgclip_overrides", None)
        want_info = kwargs.pop("output_loading_info", False)
        strict = kwargs.pop("strict_towers", True)
        config = kwargs.pop("config", None)
        path = str(pretrained_model_name_or_path)
        if config is None:
            hub_kwargs = {
                k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs
            }
            config = load_config(path, overrides, **hub_kwargs)
        source = foreign_source(path)
        if source is not None:
            model, info = load_foreign(
                cls, source, config, dtype=kwargs.get("dtype", kwargs.get("torch_dtype"))
            )
        else:
            model, info = cast(  # output_loading_info=True: (model, info), not the model alone
                tuple[FGCLIPModel, dict[str, Any]],
                super().from_pretrained(path, *args, config=config, output_loading_info=True, **kwargs),
            )
            model.loading_report = hf_report(model, path, info)
        report = model.loading_report
        if model.memory_bank is not None:  # the config states the intended warm-up, also on resume
            model.memory_bank.warmup_steps.fill_(int(config.memory_bank_warmup_steps))
        (logger.warning if report.unexpected_new else logger.info)(report.summary())
        if strict:
            report.check_towers()
        return (model, info) if want_info else model

    # ------------------------------------------------------------------ trainer hooks
    def logit_scales(self) -> dict[str, nn.Parameter]:
        return {
            "global": self.logit_scale,
            "region": self.logit_scale_finegrained,
            "hardneg": self.logit_scale_hardneg,
        }

    @torch.no_grad()
    def clamp_logit_scales(self) -> None:
        """Clamp every raw scale to [0, logit_scale_max] (call after each optimizer step)."""
        if self.config.logit_scale_max is None:
            return
        for scale in self.logit_scales().values():
            scale.clamp_(0.0, float(self.config.logit_scale_max))

    def optimizer_step_completed(self) -> None:
        """Called once per optimizer step, never per forward: the memory bank's warm-up clock."""
        if self.memory_bank is not None:
            self.memory_bank.optimizer_step_completed()


__all__ = ["EXPECTED_NEW_PREFIXES", "FGCLIPModel", "FGCLIPOutput", "LoadingReport", "load_config"]
