"""FGCLIPModel: transformers' CLIP towers with FG-CLIP's long-text, region and hard-negative heads.

Parameter names of the towers are exactly `CLIPModel`'s, so any CLIP checkpoint loads; what it lacks is
initialised the way upstream FG-CLIP does (stretched long positions, long projection copied from
`text_projection`, roi head copied from `visual_projection`, auxiliary scales from the config) and reported
by name in `model.loading_report`. The forward returns named, weighted loss parts and detached statistics;
summing, clamping and step counting belong to the trainer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.configuration_utils import PreTrainedConfig
from transformers.models.clip.modeling_clip import CLIPPreTrainedModel, CLIPTextModel, CLIPVisionModel
from transformers.utils import ModelOutput

from fgclip import vocab as V
from fgclip.config import FGCLIPConfig
from fgclip.modeling import regions, text
from fgclip.modeling.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss
from fgclip.modeling.memory_bank import RegionMemoryBank
from fgclip.modeling.temporal import AttentionPool, masked_mean

logger = logging.getLogger(__name__)

# parameters a plain CLIP checkpoint is expected to lack; anything else newly initialised is suspicious
EXPECTED_NEW_PREFIXES = (
    "text_long_projection.",
    "long_position_embedding.",
    "logit_scale_finegrained",
    "logit_scale_hardneg",
    "roi_projection.",
    "temporal_pool.",
    "memory_bank.",
)


@dataclass
class LoadingReport:
    """What `from_pretrained` found missing and how each missing tensor was filled."""

    source: str
    newly_initialized: list[str] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)  # name -> how it was derived
    unexpected_new: list[str] = field(default_factory=list)  # new beyond EXPECTED_NEW_PREFIXES
    unused_checkpoint_keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {self.source}: {len(self.newly_initialized)} tensors newly initialised"]
        for name in self.newly_initialized:
            lines.append(f"  new: {name} ({self.derived.get(name, 'initialised from the config')})")
        if self.unexpected_new:
            lines.append(
                f"  WARNING {len(self.unexpected_new)} tensors beyond the expected new heads are random: "
                + ", ".join(self.unexpected_new[:8])
                + (" ..." if len(self.unexpected_new) > 8 else "")
            )
        if self.unused_checkpoint_keys:
            lines.append(
                f"  {len(self.unused_checkpoint_keys)} checkpoint tensors unused: "
                + ", ".join(self.unused_checkpoint_keys[:8])
            )
        return "\n".join(lines)


@dataclass
class FGCLIPOutput(ModelOutput):
    """`loss` is the sum of `losses` (already weighted); `stats` are detached device scalars by name."""

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    stats: dict[str, torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None
    long_text_embeds: torch.Tensor | None = None
    short_text_embeds: torch.Tensor | None = None
    region_embeds: torch.Tensor | None = None
    region_text_embeds: torch.Tensor | None = None


def load_config(path: str, overrides: dict[str, Any] | None = None, **kwargs: Any) -> FGCLIPConfig:
    """FGCLIPConfig from our own checkpoint, or from a plain CLIP checkpoint's config plus our defaults."""
    config_dict, _ = PreTrainedConfig.get_config_dict(path, **kwargs)
    config_dict = {k: v for k, v in config_dict.items() if k not in ("architectures", "transformers_version")}
    config_dict["model_type"] = FGCLIPConfig.model_type
    config = FGCLIPConfig.from_dict(config_dict)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if not hasattr(config, key):
            raise ValueError(f"unknown FGCLIPConfig field {key!r} in overrides")
        setattr(config, key, value)
    return config.check()


class FGCLIPModel(CLIPPreTrainedModel):
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
        self.global_long_loss = GlobalContrastiveLoss("global_long", config.global_long_loss_weight)
        self.global_short_loss = GlobalContrastiveLoss("global_short", config.global_short_loss_weight)
        self.region_loss = RegionContrastiveLoss(
            config.region_loss_weight, config.memory_bank_mask_duplicates
        )
        self.hard_negative_loss = HardNegativeLoss(config.hard_negative_loss_weight)
        self.loading_report: LoadingReport | None = None
        # "fused": every 77-position text of a step in one de-duplicated tower call; "separate": upstream's
        # four calls (kept for benchmarks and parity tests; same values)
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
        """Load our checkpoint, or a plain CLIP checkpoint plus new heads; `fgclip_overrides` sets config fields.

        `model.loading_report` names every newly initialised tensor (the fgclip-vad loader silently left
        q/k/v random); tensors beyond the expected new heads are logged as a warning.
        """
        overrides = kwargs.pop("fgclip_overrides", None)
        want_info = kwargs.pop("output_loading_info", False)
        config = kwargs.pop("config", None)
        if config is None:
            hub_kwargs = {
                k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs
            }
            config = load_config(str(pretrained_model_name_or_path), overrides, **hub_kwargs)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, config=config, output_loading_info=True, **kwargs
        )
        missing = sorted(info.get("missing_keys", []))
        report = LoadingReport(source=str(pretrained_model_name_or_path), newly_initialized=missing)
        report.derived = model._derive_new_weights(missing)
        report.unexpected_new = [k for k in missing if not k.startswith(EXPECTED_NEW_PREFIXES)]
        report.unused_checkpoint_keys = sorted(info.get("unexpected_keys", []))
        if model.memory_bank is not None:  # the config states the intended warm-up, also on resume
            model.memory_bank.warmup_steps.fill_(int(config.memory_bank_warmup_steps))
        model.loading_report = report
        (logger.warning if report.unexpected_new else logger.info)(report.summary())
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

    # ------------------------------------------------------------------ features
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected (un-normalised) CLS features, as `CLIPModel.get_image_features(...).pooler_output`."""
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    def get_text_features(self, input_ids: torch.Tensor, long: bool = False) -> torch.Tensor:
        """Projected (un-normalised) text features: 77-position path, or the long path (248 positions)."""
        if long:
            pooled = text.encode_text(self.text_model, input_ids, self.long_position_embedding.weight)
            return self.text_long_projection(pooled)
        return self.text_projection(self.text_model(input_ids=input_ids).pooler_output)

    def _encode_short_texts(self, groups: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encode every 77-position text group in one tower call, de-duplicated; returns normalised
        embeddings per group. Padding to the longest text is exact under CLIP's causal mask."""
        groups = [g.reshape(-1, g.shape[-1]) for g in groups]
        sizes = [g.shape[0] for g in groups]
        if sum(sizes) == 0:
            return [g.new_zeros((0, self.projection_dim), dtype=torch.float32) for g in groups]
        if self.text_path == "separate":  # upstream's layout: one tower call per group, no de-duplication
            return [
                F.normalize(self.get_text_features(g).float(), dim=-1)
                if g.shape[0]
                else g.new_zeros((0, self.projection_dim), dtype=torch.float32)
                for g in groups
            ]
        pad_id = self.config.text_config.eos_token_id
        length = max(g.shape[-1] for g in groups)
        ids = torch.cat([text.pad_to(g, length, pad_id) for g in groups], dim=0)  # (M, L)
        unique, inverse = torch.unique(ids, dim=0, return_inverse=True)  # (U, L), (M,)
        emb = F.normalize(self.get_text_features(unique).float(), dim=-1)[inverse]  # (M, D)
        return list(torch.split(emb, sizes, dim=0))

    def _encode_frames(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor | None, need_dense: bool):
        """Vision tower over real frames. Returns per-sample global embeds, dense grid, frame index."""
        video = pixel_values.dim() == 5
        if video:
            b, t = pixel_values.shape[:2]
            if frame_mask is None:
                frame_mask = torch.ones(b, t, dtype=torch.bool, device=pixel_values.device)
            frames = pixel_values[frame_mask]  # (F, 3, H, W)
        else:
            b, t = pixel_values.shape[0], 1
            frame_mask = torch.ones(b, 1, dtype=torch.bool, device=pixel_values.device)
            frames = pixel_values
        if video:
            frame_index = torch.full((b, t), -1, dtype=torch.long, device=pixel_values.device)
            frame_index[frame_mask] = torch.arange(frames.shape[0], device=pixel_values.device)
        else:  # one frame per sample: row i of the grid is sample i (no mask op, no device sync)
            frame_index = torch.arange(b, device=pixel_values.device).unsqueeze(1)  # (B, 1)
        out = self.vision_model(pixel_values=frames, output_hidden_states=need_dense)
        per_frame = self.visual_projection(out.pooler_output)  # (F, D)
        if video:
            dense = per_frame.new_zeros(b, t, per_frame.shape[-1])
            dense[frame_mask] = per_frame  # (B, T, D)
            pooled = (
                self.temporal_pool(dense, frame_mask)
                if self.temporal_pool is not None
                else masked_mean(dense, frame_mask)
            )  # (B, D)
        else:
            pooled = per_frame
        grid = None
        if need_dense:
            last = self.vision_model.encoder.layers[-1]
            tokens = regions.value_only_block(last, out.hidden_states[-2])  # (F, 1 + P, C)
            grid = regions.dense_grid(self.vision_model.post_layernorm(tokens))  # (F, C, h, w)
        return pooled, grid, frame_index

    def _project_regions(self, feats: torch.Tensor) -> torch.Tensor:
        head = self.roi_projection if self.roi_projection is not None else self.visual_projection
        return head(feats.to(head.weight.dtype))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        long_input_ids: torch.Tensor | None = None,
        short_input_ids: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_mask: torch.Tensor | None = None,
        region_input_ids: torch.Tensor | None = None,
        hard_input_ids: torch.Tensor | None = None,
        hard_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        box_frame_mask: torch.Tensor | None = None,
        region_labels: torch.Tensor | None = None,
        boxes_dropped: torch.Tensor | None = None,
        return_loss: bool = True,
        **unused: Any,
    ) -> FGCLIPOutput:
        want_regions = boxes is not None and box_mask is not None and region_input_ids is not None
        image_pooled, grid, frame_index = self._encode_frames(pixel_values, frame_mask, want_regions)
        image = F.normalize(image_pooled.float(), dim=-1)  # (B, D)
        losses: dict[str, torch.Tensor] = {}
        stats: dict[str, torch.Tensor] = {}

        def add(part: dict[str, torch.Tensor], head_stats: dict[str, torch.Tensor], head: str) -> None:
            losses.update(part)
            for key, value in head_stats.items():
                stats[key if key.startswith(f"{V.MEMORY_BANK}/") else V.head_metric(key, head)] = value

        long_emb = None
        if long_input_ids is not None:
            long_emb = F.normalize(
                self.get_text_features(long_input_ids, long=True).float(), dim=-1
            )  # (B, D)

        # regions: features of every valid region track, then their captions and hard negatives
        region_emb = region_ids = None
        hard_rows = torch.zeros(0, dtype=torch.long, device=pixel_values.device)
        hard_ids = None
        if want_regions:
            if boxes.dim() == 3:  # image batch: (B, R, 4) -> one frame per sample
                boxes_t = boxes.unsqueeze(1)  # (B, 1, R, 4)
                frame_boxes = box_mask.unsqueeze(1)  # (B, 1, R)
            else:
                boxes_t = boxes  # (B, T, R, 4)
                frame_boxes = (
                    box_frame_mask
                    if box_frame_mask is not None
                    else box_mask.unsqueeze(1).expand(-1, boxes.shape[1], -1)
                )
            feats, has_box = regions.track_features(
                grid, boxes_t, frame_boxes & box_mask.unsqueeze(1), frame_index
            )
            valid = box_mask & has_box  # (B, R)
            raw = feats[valid]  # (N, C)
            norms = raw.float().norm(dim=-1)
            finite = torch.isfinite(raw).all(dim=-1)
            usable = finite & (norms > 1e-6)  # zero features (empty boxes) never reach the loss or the queue
            stats[V.REGIONS_VALID] = usable.float().sum()
            stats[V.REGIONS_ZERO_NORM] = (finite & (norms <= 1e-6)).float().sum()
            stats[V.REGIONS_NONFINITE] = (~finite).float().sum()
            keep = valid.clone()
            keep[valid] = usable
            region_emb = F.normalize(self._project_regions(feats[keep]).float(), dim=-1)  # (N, D)
            region_ids = region_input_ids[keep]  # (N, L)
            if hard_input_ids is not None and hard_mask is not None:
                hard_sel = (hard_mask & keep)[keep]  # (N,)
                hard_rows = hard_sel.nonzero(as_tuple=True)[0]  # (H,)
                hard_ids = hard_input_ids[hard_mask & keep]  # (H, 1 + N_neg, L)
        if boxes_dropped is not None:
            stats[V.BOXES_DROPPED] = boxes_dropped.float().sum()

        # every 77-position text of the step in one tower call
        groups = [
            short_input_ids
            if short_input_ids is not None
            else pixel_values.new_zeros((0, 1), dtype=torch.long)
        ]
        groups.append(region_ids if region_ids is not None else groups[0][:0])
        groups.append(hard_ids.reshape(-1, hard_ids.shape[-1]) if hard_ids is not None else groups[0][:0])
        short_emb, region_text_emb, hard_emb = self._encode_short_texts(groups)

        if return_loss:
            if long_emb is not None:
                add(*self.global_long_loss(image, long_emb, self.logit_scale), head="global")
            if short_input_ids is not None:
                part, head_stats = self.global_short_loss(image, short_emb, self.logit_scale)
                losses.update(part)
                if long_emb is None:
                    add({}, head_stats, "global")
                else:
                    stats[V.GLOBAL_SHORT_LOSS] = head_stats[V.HEAD_LOSS]
            if region_emb is not None:
                keys = text.caption_keys(region_ids, self.config.text_config.eos_token_id)  # (N,)
                add(
                    *self.region_loss(
                        region_emb, region_text_emb, self.logit_scale_finegrained, keys, self.memory_bank
                    ),
                    head="region",
                )
                if hard_ids is not None:
                    hard_texts = hard_emb.reshape(
                        hard_rows.shape[0], hard_ids.shape[1], hard_emb.shape[-1]
                    )  # (H, 1+N, D)
                    add(
                        *self.hard_negative_loss(region_emb[hard_rows], hard_texts, self.logit_scale_hardneg),
                        head="hardneg",
                    )
        loss = torch.stack(list(losses.values())).sum() if losses else None
        return FGCLIPOutput(
            loss=loss,
            losses=losses,
            stats=stats,
            image_embeds=image,
            long_text_embeds=long_emb,
            short_text_embeds=short_emb if short_input_ids is not None else None,
            region_embeds=region_emb,
            region_text_embeds=region_text_emb,
        )


__all__ = ["FGCLIPModel", "FGCLIPOutput", "LoadingReport", "load_config", "EXPECTED_NEW_PREFIXES"]
