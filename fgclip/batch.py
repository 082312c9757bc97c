"""The batch contract between `fgclip.data` (collate) and `fgclip.modeling` (forward).

One dict of tensors; every key below is what the model's `forward(**batch)` accepts. Text is token ids of a
CLIP tokenizer (bos 49406-style start, eos = pad, pooled at the first eos); texts are padded to the longest
text of the batch, which under CLIP's causal mask is exactly equivalent to padding to 77.

Everything whose size depends on the data is decided by the collator on the host, so the model's step has
fixed shapes and never waits for the device: the 77-position texts come de-duplicated with index maps,
region slots are padded with a mask, decoded video frames are listed by index.

Image batches (B samples, R = max boxes per sample, U = unique 77-position texts, L = their padded length,
N = hard negatives per box):
    pixel_values          float (B, 3, H, W)
    long_input_ids        long  (B, L_long)          long captions, L_long <= long_text_max_positions
    text_input_ids        long  (U, L)               unique short captions, region captions, negatives
    short_text_index      long  (B,)                 row of each sample's short caption
    boxes                 float (B, R, 4)            normalised xyxy in [0, 1]; padding rows are zeros
    box_mask              bool  (B, R)               True for a valid region (box and caption present)
    region_text_index     long  (B, R)               row of each region's caption (padding slots: 0)
    region_caption_key    long  (B, R)               optional: canonical key of each region caption (equal =
                                                     near-duplicates, fgclip/data/caption_key.py; padding: 0)
    region_caption_words  long  (B, R, W)            optional: hashes of its canonical words, W <= 16 (the
                                                     batch's longest), 0-padded (containment; all 0: unknown)
    hard_text_index       long  (B, R, 1 + N)        optional: rows of the positive caption then N negatives
    hard_mask             bool  (B, R)               optional: True where the box has hard negatives
    region_labels         long  (B, R)               optional: 1 abnormal, 0 normal, -1 padding (video data)
    boxes_dropped         long  (B,)                 optional: boxes the validation policy dropped

Video batches add a time axis T (frames sampled per clip):
    pixel_values          float (B, T, 3, H, W)
    frame_mask            bool  (B, T)               True for real (decoded) frames
    frame_rows            long  (F,)                 flat indices (b * T + t) of the real frames
    boxes                 float (B, T, R, 4)         per-frame boxes of each region track (interpolated)
    box_frame_mask        bool  (B, T, R)            True where region r has a box on frame t
    box_mask              bool  (B, R)               True for a region with at least one boxed frame

The per-group layout of older collators is still accepted by the model (converted on the device without
de-duplication; a batch mixing both layouts is refused):
    short_input_ids       long  (B, L_short)
    region_input_ids      long  (B, R, L_reg)        padding rows: just bos+eos
    hard_input_ids        long  (B, R, 1 + N, L_hard)
"""

from __future__ import annotations

IMAGE_KEYS = (
    "pixel_values",
    "long_input_ids",
    "text_input_ids",
    "short_text_index",
    "boxes",
    "box_mask",
    "region_text_index",
)
OPTIONAL_KEYS = (
    "region_caption_key",
    "region_caption_words",
    "hard_text_index",
    "hard_mask",
    "region_labels",
    "boxes_dropped",
    "frame_mask",
    "frame_rows",
    "box_frame_mask",
)
LEGACY_TEXT_KEYS = ("short_input_ids", "region_input_ids", "hard_input_ids")
