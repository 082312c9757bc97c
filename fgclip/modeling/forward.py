"""The training step of FGCLIPModel: features, the fixed-shape region path, the losses.

A mixin of `FGCLIPModel` (fgclip/modeling/model.py owns construction and loading). Every shape in the step
follows from the batch's shapes, which the collator fixes on the host: texts arrive as one unique list plus
index maps (fgclip/modeling/text_index.py), region slots keep their (B, R) place and masks say which count,
video frames are picked by a host-made index list, and the memory bank writes through masks. So a step
that does not log never waits for the device (tests/modeling/test_host_syncs.py holds it to zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

import fgclip.modeling.regions as regions
import fgclip.modeling.text as text
import fgclip.modeling.text_index as text_index
import fgclip.vocab as V
from fgclip.modeling.temporal import masked_mean

if TYPE_CHECKING:
    from torch import nn
    from transformers.models.clip.modeling_clip import CLIPTextModel, CLIPVisionModel

    from fgclip.config import FGCLIPConfig
    from fgclip.modeling.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss
    from fgclip.modeling.memory_bank import RegionMemoryBank
    from fgclip.modeling.temporal import AttentionPool


@dataclass
class FGCLIPOutput(ModelOutput):
    """`loss` is the sum of `losses` (already weighted); `stats` are detached device scalars by name."""

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    stats: dict[str, torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None
    long_text_embeds: torch.Tensor | None = None
    short_text_embeds: torch.Tensor | None = None
    region_embeds: torch.Tensor | None = None  # (B, R, D), zeros where region_mask is False
    region_text_embeds: torch.Tensor | None = None  # (B, R, D)
    region_mask: torch.Tensor | None = None  # (B, R) regions with a usable feature


class FGCLIPForward:
    """Features and forward of FGCLIPModel (the towers, heads, losses and bank are built by the model)."""

    if TYPE_CHECKING:  # built by FGCLIPModel.__init__; declared for the type checker only (transformers
        # evaluates the model's class annotations at import, so none are added at run time)
        config: FGCLIPConfig
        projection_dim: int
        text_model: CLIPTextModel
        vision_model: CLIPVisionModel
        visual_projection: nn.Linear
        text_projection: nn.Linear
        text_long_projection: nn.Linear
        long_position_embedding: nn.Embedding
        roi_projection: nn.Linear | None
        temporal_pool: AttentionPool | None
        memory_bank: RegionMemoryBank | None
        logit_scale: nn.Parameter
        logit_scale_finegrained: nn.Parameter
        logit_scale_hardneg: nn.Parameter
        global_long_loss: GlobalContrastiveLoss
        global_short_loss: GlobalContrastiveLoss
        region_loss: RegionContrastiveLoss
        hard_negative_loss: HardNegativeLoss
        text_path: str

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected (un-normalised) CLS features, as `CLIPModel.get_image_features(...).pooler_output`."""
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    def get_text_features(self, input_ids: torch.Tensor, long: bool = False) -> torch.Tensor:
        """Projected (un-normalised) text features: 77-position path, or the long path (248 positions)."""
        if long:
            pooled = text.encode_text(self.text_model, input_ids, self.long_position_embedding.weight)
            return self.text_long_projection(pooled)
        return self.text_projection(self.text_model(input_ids=input_ids).pooler_output)

    def _encode_short_texts(self, texts: text_index.TextIndex) -> dict[str, torch.Tensor]:
        """Normalised float32 embeddings of every 77-position text use, by group: `short` (B, D), `region`
        (B * R, D), `hard` (B * R, 1 + N, D). Padding to the longest text is exact under CLIP's causal mask.

        "fused" encodes each unique row once and gathers; "separate" runs one tower call per group.
        """
        groups = texts.groups()
        if self.text_path == "separate":  # upstream's layout: one tower call per group, no de-duplication
            out = {
                name: self._normalised_text(texts.ids.index_select(0, index.reshape(-1)))
                for name, index in groups.items()
            }
        else:
            unique = self._normalised_text(texts.ids)  # (U, D)
            out = {name: unique.index_select(0, index.reshape(-1)) for name, index in groups.items()}
        if "hard" in out:
            out["hard"] = out["hard"].reshape(-1, texts.hard.shape[-1], out["hard"].shape[-1])
        return out

    def _normalised_text(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[0] == 0:
            return ids.new_zeros((0, self.projection_dim), dtype=torch.float32)
        return F.normalize(self.get_text_features(ids).float(), dim=-1)

    def _encode_frames(
        self,
        pixel_values: torch.Tensor,
        frame_mask: torch.Tensor | None,
        frame_rows: torch.Tensor | None,
        need_dense: bool,
    ):
        """Vision tower over the frames. Returns per-sample global embeds, dense grid, frame index.

        Videos: the collator's `frame_rows` (F,) lists the real frames (flat index into B * T, its length
        known on the host); without it every frame is encoded and `frame_mask` drops the padding ones.
        `frame_index` (B, T) is the row of each frame in the grid, -1 for a frame that does not count.
        """
        device = pixel_values.device
        if pixel_values.dim() != 5:  # one frame per sample: row i of the grid is sample i
            out = self.vision_model(pixel_values=pixel_values, output_hidden_states=need_dense)
            pooled = self.visual_projection(out.pooler_output)  # (B, D)
            frame_index = torch.arange(pixel_values.shape[0], device=device).unsqueeze(1)  # (B, 1)
        else:
            b, t = pixel_values.shape[:2]
            frames = pixel_values.flatten(0, 1)  # (B * T, 3, H, W)
            frame_index = torch.arange(b * t, device=device)  # (B * T,)
            if frame_rows is not None:
                frames = frames.index_select(0, frame_rows)  # (F, 3, H, W)
                missing = torch.full((b * t,), -1, dtype=torch.long, device=device)
                encoded = torch.arange(frame_rows.shape[0], device=device)
                frame_index = missing.scatter(0, frame_rows, encoded)
            frame_index = frame_index.view(b, t)
            if frame_mask is not None:
                frame_index = torch.where(frame_mask, frame_index, -1)  # (B, T)
            real = frame_index >= 0
            out = self.vision_model(pixel_values=frames, output_hidden_states=need_dense)
            per_frame = self.visual_projection(out.pooler_output)  # (F, D)
            dense = per_frame.index_select(0, frame_index.clamp(min=0).reshape(-1)).view(b, t, -1)
            dense = torch.where(real.unsqueeze(-1), dense, 0.0)  # (B, T, D)
            pool = self.temporal_pool if self.temporal_pool is not None else masked_mean
            pooled = pool(dense, real)  # (B, D)
        grid = None
        if need_dense:
            last = self.vision_model.encoder.layers[-1]
            tokens = regions.value_only_block(last, out.hidden_states[-2])  # (F, 1 + P, C)
            grid = regions.dense_grid(self.vision_model.post_layernorm(tokens))  # (F, C, h, w)
        return pooled, grid, frame_index

    def _project_regions(self, feats: torch.Tensor) -> torch.Tensor:
        head = self.roi_projection if self.roi_projection is not None else self.visual_projection
        return head(feats.to(head.weight.dtype))

    def _region_features(self, grid, frame_index, boxes, box_mask, box_frame_mask):
        """Normalised region embeddings (B * R, D), zeros where unusable; usable (B, R); their counts."""
        if boxes.dim() == 3:  # image batch: (B, R, 4) -> one frame per sample
            boxes_t, frame_boxes = boxes.unsqueeze(1), box_mask.unsqueeze(1)  # (B, 1, R, 4), (B, 1, R)
        else:
            boxes_t = boxes  # (B, T, R, 4)
            frame_boxes = (
                box_frame_mask
                if box_frame_mask is not None
                else box_mask.unsqueeze(1).expand(-1, boxes.shape[1], -1)
            )
        feats, has_box = regions.track_features(
            grid, boxes_t, frame_boxes & box_mask.unsqueeze(1), frame_index
        )  # (B, R, C), (B, R)
        usable, stats = regions.usable_regions(feats, box_mask & has_box)
        # zero features (empty boxes) and non-finite ones are masked, never selected: fixed shapes
        feats = torch.where(usable.unsqueeze(-1), feats, 0.0)
        emb = F.normalize(self._project_regions(feats.flatten(0, 1)).float(), dim=-1)  # (B * R, D)
        return emb, usable, stats

    def _region_caption_keys(self, texts: text_index.TextIndex) -> torch.Tensor:
        """Key per region slot (B * R,): equal keys mark the same caption (false negatives to mask)."""
        keys = text.caption_keys(texts.ids, self.config.text_config.eos_token_id)  # (U,)
        return keys.index_select(0, texts.region.reshape(-1))

    def _region_near_keys(self, exact: torch.Tensor, canonical: torch.Tensor | None) -> torch.Tensor:
        """Canonical key per region slot (B * R,) from the collator (equal = near-duplicate captions); a
        batch without them (an older collator's) compares exact captions only."""
        if canonical is None:
            return exact
        return canonical.reshape(-1).to(exact.device)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        long_input_ids: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        short_text_index: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_mask: torch.Tensor | None = None,
        region_text_index: torch.Tensor | None = None,
        hard_text_index: torch.Tensor | None = None,
        hard_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        frame_rows: torch.Tensor | None = None,
        box_frame_mask: torch.Tensor | None = None,
        region_labels: torch.Tensor | None = None,
        region_caption_key: torch.Tensor | None = None,
        region_caption_words: torch.Tensor | None = None,
        boxes_dropped: torch.Tensor | None = None,
        short_input_ids: torch.Tensor | None = None,
        region_input_ids: torch.Tensor | None = None,
        hard_input_ids: torch.Tensor | None = None,
        return_loss: bool = True,
        **unused: Any,
    ) -> FGCLIPOutput:
        """One step's losses and statistics; see fgclip/batch.py for the batch (both text layouts accepted).

        Every shape here follows from the batch's shapes: no op waits for a value computed on the device.
        """
        texts = text_index.from_batch(
            text_input_ids,
            {
                "short_text_index": short_text_index,
                "region_text_index": region_text_index,
                "hard_text_index": hard_text_index,
            },
            {
                "short_input_ids": short_input_ids,
                "region_input_ids": region_input_ids,
                "hard_input_ids": hard_input_ids,
            },
            self.config.text_config.eos_token_id,
        )
        want_regions = (
            boxes is not None and box_mask is not None and texts is not None and texts.region is not None
        )
        image_pooled, grid, frame_index = self._encode_frames(
            pixel_values, frame_mask, frame_rows, want_regions
        )
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
        text_emb = self._encode_short_texts(texts) if texts is not None else {}  # one tower call (fused)
        short_emb = text_emb.get("short")

        region_emb = usable = None
        if want_regions:
            region_emb, usable, region_stats = self._region_features(
                grid, frame_index, boxes, box_mask, box_frame_mask
            )  # (B * R, D), (B, R)
            stats.update(region_stats)
        if boxes_dropped is not None:
            stats[V.BOXES_DROPPED] = boxes_dropped.float().sum()

        if return_loss:
            if long_emb is not None:
                add(*self.global_long_loss(image, long_emb, self.logit_scale), head="global")
            if short_emb is not None:
                part, head_stats = self.global_short_loss(image, short_emb, self.logit_scale)
                losses.update(part)
                if long_emb is None:
                    add({}, head_stats, "global")
                else:
                    stats[V.GLOBAL_SHORT_LOSS] = head_stats[V.HEAD_LOSS]
            if region_emb is not None:
                valid = usable.reshape(-1)  # (B * R,)
                keys = self._region_caption_keys(texts)
                near = self._region_near_keys(keys, region_caption_key)
                words = None  # (B * R, W) canonical word hashes, when the collator made them
                if region_caption_words is not None:
                    words = region_caption_words.reshape(-1, region_caption_words.shape[-1])
                scale = self.logit_scale_finegrained
                part = self.region_loss(
                    region_emb, text_emb["region"], scale, keys, self.memory_bank, valid, near, words
                )
                add(*part, head="region")
                if "hard" in text_emb and hard_mask is not None:
                    hard_valid = hard_mask.reshape(-1) & valid  # (B * R,)
                    part = self.hard_negative_loss(
                        region_emb, text_emb["hard"], self.logit_scale_hardneg, hard_valid
                    )
                    add(*part, head="hardneg")
        loss = torch.stack(list(losses.values())).sum() if losses else None
        shape = box_mask.shape if want_regions else None
        return FGCLIPOutput(
            loss=loss,
            losses=losses,
            stats=stats,
            image_embeds=image,
            long_text_embeds=long_emb,
            short_text_embeds=short_emb,
            region_embeds=region_emb.view(*shape, -1) if region_emb is not None else None,
            region_text_embeds=text_emb["region"].view(*shape, -1) if region_emb is not None else None,
            region_mask=usable,
        )


__all__ = ["FGCLIPForward", "FGCLIPOutput"]
