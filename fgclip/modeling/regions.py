"""Region features: CLIPSelf/MaskCLIP value-only last block, torchvision `roi_align`, tracks over frames.

The last vision block is re-run with self-attention replaced by its value path, so each patch token keeps
its own content (with full attention the dense map is nearly inverted, FG-CLIP issue #21). RoIAlign then
pools normalised xyxy boxes scaled to the patch grid (1x1 output, aligned=True, float32). A region of a
video is a box track: its feature is the mean of its RoI features over the frames where it has a box; a
region with no boxed frame has has_box False. Every slot keeps its place (B, R): masks, never selection,
say which regions count, so no shape depends on device data.
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

import fgclip.vocab as V


def value_only_block(layer: CLIPEncoderLayer, hidden: torch.Tensor) -> torch.Tensor:
    """(N, 1 + P, C) input of the last block -> (N, 1 + P, C), attention replaced by v_proj -> out_proj."""
    attn = layer.self_attn
    x = hidden + attn.out_proj(attn.v_proj(layer.layer_norm1(hidden)))
    return x + layer.mlp(layer.layer_norm2(x))


def dense_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1 + P, C) tokens -> (N, C, h, w) patch grid (CLS dropped)."""
    n, p1, c = tokens.shape
    side = round((p1 - 1) ** 0.5)
    if side * side != p1 - 1:
        raise ValueError(f"{p1 - 1} patch tokens do not form a square grid")
    return tokens[:, 1:].transpose(1, 2).reshape(n, c, side, side)  # (N, C, h, w)


def pool_boxes(grid: torch.Tensor, frame_index: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """RoIAlign of normalised xyxy boxes (M, 4) on frames `frame_index` (M,) of grid (F, C, h, w)
    -> (M, C)."""
    h, w = grid.shape[-2:]
    xy = boxes.float().reshape(-1, 2, 2) * torch.stack(  # (M, 2 corners, [x, y]) in grid cells
        (torch.full((), float(w), device=boxes.device), torch.full((), float(h), device=boxes.device))
    )
    rois = torch.cat([frame_index.float().unsqueeze(1), xy.reshape(-1, 4)], dim=1)  # (M, 5)
    pooled = roi_align(
        grid.float(), rois, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    return pooled.flatten(1)  # (M, C)


def track_features(
    grid: torch.Tensor, boxes: torch.Tensor, box_frame_mask: torch.Tensor, frame_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean RoI feature of every region track over its boxed frames.

    Every (sample, frame, region) slot is pooled and the mask applied afterwards, so shapes stay static and
    nothing waits for the device (no nonzero / boolean indexing).

    Args:
        grid: (F, C, h, w) patch grids of the encoded frames.
        boxes: (B, T, R, 4) normalised xyxy per frame and region.
        box_frame_mask: (B, T, R) True where region r has a box on frame t (and the frame is real).
        frame_index: (B, T) row of each (sample, frame) in `grid`, -1 for frames that were not encoded.
    Returns:
        features (B, R, C) and has_box (B, R); regions without any boxed frame are zeros and has_box False.
    """
    b, t, r, _ = boxes.shape
    sel = box_frame_mask & (frame_index >= 0).unsqueeze(-1)  # (B, T, R)
    rows = frame_index.clamp(min=0).unsqueeze(-1).expand(b, t, r)  # (B, T, R)
    safe = torch.where(sel.unsqueeze(-1), boxes, torch.zeros_like(boxes))  # padding may hold anything
    pooled = pool_boxes(grid, rows.reshape(-1), safe.reshape(-1, 4)).reshape(b, t, r, -1)  # (B, T, R, C)
    pooled = torch.where(sel.unsqueeze(-1), pooled, torch.zeros_like(pooled))
    counts = sel.sum(dim=1)  # (B, R)
    features = pooled.sum(dim=1) / counts.clamp(min=1).unsqueeze(-1).to(pooled.dtype)  # (B, R, C)
    return features, counts > 0


MIN_FEATURE_NORM = 1e-6  # below it a region feature is an empty box's zeros


@torch.no_grad()
def usable_regions(features: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Which present regions have a finite, non-zero feature, and the counts the diagnostics read.

    Args:
        features: (B, R, C) pooled region features.
        present: (B, R) True for a region with a box and a caption.
    Returns:
        usable (B, R) and detached counts `regions/valid`, `regions/zero_norm`, `regions/nonfinite`.
    """
    finite = torch.isfinite(features).all(dim=-1)  # (B, R)
    nonzero = features.float().norm(dim=-1) > MIN_FEATURE_NORM  # NaN norms compare False
    usable = present & finite & nonzero
    stats = {
        V.REGIONS_VALID: usable.float().sum(),
        V.REGIONS_ZERO_NORM: (present & finite & ~nonzero).float().sum(),
        V.REGIONS_NONFINITE: (present & ~finite).float().sum(),
    }
    return usable, stats
