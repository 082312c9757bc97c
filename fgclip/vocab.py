"""The shared vocabulary of fgclip and fgdiag: logit-scale constants, head names and statistics keys.

fgclip owns these names (its model writes them into `FGCLIPOutput.stats`, its config uses the constants);
fgdiag imports them from here, so a key renamed in the model is renamed for the diagnostics in the same
edit. This module must stay free of torch and transformers: `fgdiag watch` imports it to read logs.
"""

from __future__ import annotations

import math

# --- logit scales (raw, log space) -------------------------------------------------------------------------
LN_100 = math.log(100.0)  # 4.6052: the scale of every released CLIP checkpoint, and open_clip's clamp
LN_100_TOLERANCE = 0.02  # bf16 stores ln 100 as 4.59375
CLIP_FROM_SCRATCH_SCALE = 2.6592  # ln(1/0.07): CLIP's init for a model trained from scratch
CLIP_FROM_SCRATCH_TOLERANCE = 0.01  # bf16 stores 2.6592 as 2.65625 (0.003 away)


def is_ln100(raw: float) -> bool:
    """ln 100 as saved in fp32 (4.60517), to four decimals (4.6052) or in bf16 (4.59375)."""
    return abs(raw - LN_100) <= LN_100_TOLERANCE


def is_clip_from_scratch(raw: float) -> bool:
    """CLIP's from-scratch ln(1/0.07) = 2.6592, also its bf16 rounding 2.65625."""
    return abs(raw - CLIP_FROM_SCRATCH_SCALE) <= CLIP_FROM_SCRATCH_TOLERANCE


# --- heads -------------------------------------------------------------------------------------------------
GLOBAL, REGION, HARDNEG = "global", "region", "hardneg"
HEADS = (GLOBAL, REGION, HARDNEG)
# head -> the parameter holding its raw logit scale (our spelling; foreign ones are aliases in fgdiag.facts)
SCALE_PARAMS = {
    GLOBAL: "logit_scale",
    REGION: "logit_scale_finegrained",
    HARDNEG: "logit_scale_hardneg",
}

# --- statistics keys of FGCLIPOutput.stats -----------------------------------------------------------------
# per head: the model writes `<key>/<head>` (head in HEADS)
LOGIT_SCALE = "logit_scale"  # raw, log space
LOGIT_SCALE_EXP = "logit_scale_exp"  # exp(raw) = 1/temperature
LOGITS_MIN, LOGITS_MAX, LOGITS_MEAN, LOGITS_STD = "logits_min", "logits_max", "logits_mean", "logits_std"
POS_MEAN, NEG_MEAN = "pos_logit_mean", "neg_logit_mean"
COS_STD = "cos_std"  # spread of cosines across the logits matrix (collapse when tiny)
CANDIDATES = "candidates"  # K: softmax candidates per query
CHANCE = "chance"  # ln K
HEAD_LOSS = "head_loss"  # unweighted loss of the head
LOSS_FLOOR = "loss_floor"  # ln(1 + (K-1) exp(-(pos - neg))) with the current spread
# the head loss recomputed on this step's detached logits at the clamp scale exp(logit_scale_max) (exp(ln 100)
# = 100 without a clamp): equal to head_loss at the clamp; far below it when the temperature holds it back
LOSS_AT_MAX_SCALE = "loss_at_max_scale"
# mean over live rows with a negative of (positive logit - hardest unmasked negative logit) / exp(scale), in
# cosine units (row = query region / image, i2t direction); <= 0: a negative as close as the positive
HARDEST_GAP = "hardest_gap"
HEAD_STATS = (
    LOGIT_SCALE,
    LOGIT_SCALE_EXP,
    LOGITS_MIN,
    LOGITS_MAX,
    LOGITS_MEAN,
    LOGITS_STD,
    POS_MEAN,
    NEG_MEAN,
    COS_STD,
    CANDIDATES,
    CHANCE,
    HEAD_LOSS,
    LOSS_FLOOR,
    LOSS_AT_MAX_SCALE,
    HARDEST_GAP,
)
# duplicate captions among the region loss's candidates (region head only, written `<key>/region`); pairs
# are (valid query region, another valid region of the batch), exact = identical caption (same token ids),
# near = near-duplicate but not identical (same canonical key, or one caption's canonical words all inside
# the other's, or text cosine >= near_duplicate_cosine when set), counted whether masked or not
EXACT_DUP_SHARE = "exact_duplicate_share"  # exact pairs / pairs, in the batch
NEAR_DUP_SHARE = "near_duplicate_share"  # near pairs / pairs, in the batch
# among the negatives the loss actually used (batch + active queue, after masking): the share that are exact
# or near duplicates of the query's caption, i.e. false negatives left in the loss (0 with masking on)
UNMASKED_DUP_SHARE = "unmasked_duplicate_share"
DUPLICATE_STATS = (EXACT_DUP_SHARE, NEAR_DUP_SHARE, UNMASKED_DUP_SHARE)
# memory bank (written whole, no head suffix): `memory_bank/<key>`
MEMORY_BANK = "memory_bank"
MB_ACTIVE = "memory_bank/active"
MB_ACTIVATED_STEP = "memory_bank/activated_step"
MB_FILL = "memory_bank/fill"
MB_PTR = "memory_bank/ptr"
MB_OLDEST_AGE = "memory_bank/oldest_age"
MB_OPTIMIZER_STEPS = "memory_bank/optimizer_steps"  # the bank's clock (FGCLIPCallback advances it)
# queue pairs are (valid query region, filled queue entry), counted before the bank is active as well
MB_DUP_SHARE = "memory_bank/duplicate_share"  # exact pairs / queue pairs
MB_NEAR_DUP_SHARE = "memory_bank/near_duplicate_share"  # near (not exact) pairs / queue pairs
MB_KEY_NORM_MIN = "memory_bank/key_norm_min"
MB_KEY_NORM_MAX = "memory_bank/key_norm_max"
MB_SIZE = "memory_bank/size"  # queue capacity (the callback adds it; fill counts the filled entries)
# regions and boxes of the batch
REGIONS_VALID = "regions/valid"
REGIONS_ZERO_NORM = "regions/zero_norm"
REGIONS_NONFINITE = "regions/nonfinite"
BOXES_DROPPED = "boxes/dropped"
GLOBAL_SHORT_LOSS = "head_loss/global_short"  # the short-caption global loss when long captions also train

# weighted loss parts the model returns in `FGCLIPOutput.losses`
LOSS_PARTS = ("global_long_loss", "global_short_loss", "region_loss", "hard_negative_loss")


def head_metric(key: str, head: str) -> str:
    """`<per-head key>/<head>`, the name a head's statistic carries in stats, events and logs."""
    return f"{key}/{head}"
