"""The batch contract between `fgclip.data` (collate) and `fgclip.modeling` (forward).

One dict of tensors; every key below is what the model's `forward(**batch)` accepts. Text is token ids of a
CLIP tokenizer (bos 49406-style start, eos = pad, pooled at the first eos); texts are padded to the longest
text of the batch, which under CLIP's causal mask is exactly equivalent to padding to 77.

Image batches (B samples, R = max boxes per sample, L = text length, N = hard negatives per box):
    pixel_values          float (B, 3, H, W)
    long_input_ids        long  (B, L_long)          long captions, L_long <= long_text_max_positions
    short_input_ids       long  (B, L_short)         short captions, L_short <= 77
    boxes                 float (B, R, 4)            normalised xyxy in [0, 1]; padding rows are zeros
    box_mask              bool  (B, R)               True for a valid region (box and caption present)
    region_input_ids      long  (B, R, L_reg)        region captions (padding rows: just bos+eos)
    hard_input_ids        long  (B, R, 1 + N, L_hard) optional: positive caption then N negatives
    hard_mask             bool  (B, R)               optional: True where the box has hard negatives
    region_labels         long  (B, R)               optional: 1 abnormal, 0 normal, -1 padding (video data)
    boxes_dropped         long  (B,)                 optional: boxes the validation policy dropped

Video batches add a time axis T (frames sampled per clip):
    pixel_values          float (B, T, 3, H, W)
    frame_mask            bool  (B, T)               True for real (decoded) frames
    boxes                 float (B, T, R, 4)         per-frame boxes of each region track (interpolated)
    box_frame_mask        bool  (B, T, R)            True where region r has a box on frame t
    box_mask              bool  (B, R)               True for a region with at least one boxed frame
"""

from __future__ import annotations

IMAGE_KEYS = (
    "pixel_values",
    "long_input_ids",
    "short_input_ids",
    "boxes",
    "box_mask",
    "region_input_ids",
)
OPTIONAL_KEYS = (
    "hard_input_ids",
    "hard_mask",
    "region_labels",
    "boxes_dropped",
    "frame_mask",
    "box_frame_mask",
)
