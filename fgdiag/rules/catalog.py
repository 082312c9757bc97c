"""Docs of every rule code, registered on import. The checks live in `config_rules` (static) and
`runtime_rules` (over events, live or from logs); both build findings through `registry.get(code)`."""

from __future__ import annotations

from fgdiag.rules.registry import register

register(
    "FGD101",
    "head-scale-at-clip-init",
    "error",
    what="A region or hard-negative logit scale initialised at CLIP's from-scratch ln(1/0.07) = 2.6592, or more "
    "than 1.0 apart (log space) from the global scale, while fine-tuning from a checkpoint at ln 100.",
    why="With scale exp(2.6592) = 14.3 the region logits span only +-14 while the global head runs at 100; the "
    "seed's region loss sat at chance for days because of exactly this.",
    example="FGCLIPConfig(finegrained_logit_scale_init=2.6592) with a CLIP checkpoint whose logit_scale is 4.6052",
    fix="Initialise every head at the checkpoint's scale: finegrained_logit_scale_init = hardneg_logit_scale_init "
    "= 4.6052 (ln 100).",
)
register(
    "FGD102",
    "scale-unclamped-or-saturated",
    "warning",
    what="A logit scale initialised above the clamp (error), no clamp configured, or a scale sitting at the clamp "
    "while the loss is flat.",
    why="Without a clamp exp(scale) can pass 100 and destabilise training; at the clamp the temperature is frozen "
    "and a flat loss there means the scale is not the lever.",
    example="logit_scale_max = None (upstream FG-CLIP has no clamp)",
    fix="Set logit_scale_max = 4.6052 (ln 100) and initialise every head at or below it.",
)
register(
    "FGD103",
    "scale-decayed-or-frozen",
    "warning",
    what="A logit scale under weight decay, with requires_grad False, missing from the optimizer or present twice, "
    "or that has not moved at all after many optimizer steps below the clamp.",
    why="Decoupled weight decay pulls the raw scale towards 0 (temperature 1); a frozen scale never adapts.",
    example="AdamW(weight_decay=0.01) over named_parameters() including logit_scale_finegrained",
    fix="Put every logit scale in a no-decay group exactly once and keep it trainable (fgclip.train does this).",
)
register(
    "FGD201",
    "memory-bank-never-active",
    "error",
    what="The memory bank cannot activate within the planned run (warm-up >= planned optimizer steps), activates "
    "only in the last part of it, or is not active by the step the configuration implies.",
    why="The bank is what turns 4 in-batch candidates into 132; if it never switches on the region loss trains "
    "against almost no negatives.",
    example="memory_bank_warmup_steps=400 with 240 planned optimizer steps",
    fix="Count the warm-up in optimizer steps and keep it well inside the run (e.g. 5-10 % of the planned steps).",
)
register(
    "FGD202",
    "warmup-in-forward-passes",
    "warning",
    what="A memory-bank warm-up expressed in forward passes (micro-batches), as in the fgclip-vad fork.",
    why="With gradient accumulation G the bank switches on G times later than a step-based reading suggests.",
    example="training_steps >= 200 counted per forward, gradient_accumulation_steps 16 -> 12.5 optimizer steps",
    fix="Express the warm-up in optimizer steps (memory_bank_warmup_steps); fgclip counts optimizer steps.",
)
register(
    "FGD203",
    "queue-size-mismatch",
    "warning",
    what="Queue size against the batch: K so small that the bank adds nothing, so large that most entries are stale "
    "or duplicates, or a target below the floor the temperature allows for that K.",
    why="Chance level ln K and the loss floor depend on K; targets written for another K cannot be met.",
    example="memory_bank_size=4 with 16 regions per step",
    fix="Choose a queue several times the regions per optimizer step and below ~5 % of the data set.",
)
register(
    "FGD301",
    "invalid-boxes-or-region-features",
    "warning",
    what="Invalid boxes above a threshold in the data (zero area, inverted, out of range, non-finite), or zero-norm "
    "/ non-finite region features in a batch.",
    why="RoIAlign returns zeros for empty boxes; zero features normalise to NaN or a constant and poison the "
    "region loss and the queue.",
    example="a box [0.4, 0.4, 0.4, 0.6] (zero width)",
    fix="Validate boxes with a policy (drop, clip or error) and audit the data: fgdiag data-audit DATA.",
)
register(
    "FGD302",
    "repeated-captions",
    "warning",
    what="Captions repeated so often that they become false negatives in contrastive losses.",
    why="Two regions with the same caption are pushed apart; the loss floor rises above what targets assume.",
    example="'People and vehicles pass on city streets.' 36 times among 1,559 records",
    fix="De-duplicate captions or mask equal captions among negatives (memory_bank_mask_duplicates).",
)
register(
    "FGD401",
    "stale-checkpoint",
    "error",
    what="A checkpoint-* whose saved logit scales or memory-bank settings differ from the configuration.",
    why="Resuming silently restores the wrong scale; the seed had to delete such checkpoints by hand.",
    example="checkpoint-100 saved logit_scale_finegrained = 2.6592 while the config says 4.6052",
    fix="Move the checkpoints aside (fgdiag check-config --quarantine) or resume on purpose with "
    "--resume_policy ignore; nothing is deleted.",
)
register(
    "FGD402",
    "non-finite-weights",
    "error",
    what="A checkpoint or model directory holding NaN or Inf in a parameter.",
    why="Training from it produces NaN losses from the first step.",
    example="logit_scale = nan in checkpoint-300/model.safetensors",
    fix="Resume from an earlier checkpoint; find the step where the loss first became non-finite (FGD701).",
)
register(
    "FGD403",
    "unexpected-new-parameters",
    "warning",
    what="A pretrained source that leaves parameters newly initialised beyond the expected new heads.",
    why="The fgclip-vad loader left q/k/v random in all 24 layers; training then starts from a broken tower.",
    example="newly initialised: text_model.encoder.layers.0.self_attn.q_proj.weight",
    fix="Load a complete CLIP checkpoint; only the long-text table, long projection, roi head and the auxiliary "
    "scales may be new.",
)
register(
    "FGD501",
    "learning-rate-or-gradient-imbalance",
    "warning",
    what="New heads on the towers' learning rate, learning rates that make the first steps explode, a gradient-norm "
    "spike, or a new head's gradients dwarfing the towers'.",
    why="A randomly initialised head trained like the pretrained towers can blow up the first steps.",
    example="grad_norm 10x the median of the previous 100 steps",
    fix="Give new heads their own learning rate (--head_learning_rate) and keep max_grad_norm set.",
)
register(
    "FGD601",
    "region-loss-at-chance",
    "error",
    what="The region loss stays within 2 % of chance level ln K for a window after warm-up.",
    why="At chance the region head learns nothing; K changes when the bank activates, so the line is ln K_t.",
    example="region_loss 1.386 for 200 steps with K = 4",
    fix="Check the region scale (FGD101), boxes (FGD301) and pairing of boxes and captions.",
)
register(
    "FGD602",
    "region-loss-above-chance",
    "error",
    what="The region loss sits above chance level ln K for a window.",
    why="Above chance means the targets point to the wrong column (misaligned labels) or negatives are duplicates "
    "of the positive.",
    example="region_loss 5.1 with K = 132 (ln K = 4.88)",
    fix="Check the pairing of boxes and captions and mask duplicate captions in the queue.",
)
register(
    "FGD603",
    "embedding-collapse",
    "warning",
    what="All pairs sit at nearly the same cosine (narrow cosine spread) or logits are nearly constant per row.",
    why="Collapsed embeddings carry no information and the loss cannot go below chance.",
    example="cosine std 0.002 across the logits matrix",
    fix="Lower the learning rate, check the temperature and that features are not detached.",
)
register(
    "FGD604",
    "target-missed",
    "error",
    what="A checkpoint of the target profile (region loss below X at step N) was missed.",
    why="The profile is what a healthy run reaches with margin; missing it means the run is off track.",
    example="ucf profile: region loss < 1.0 @ 50, seen 1.38",
    fix="Look at the other findings at that step; compare with fgdiag run --compare seed.",
)
register(
    "FGD701",
    "non-finite-values",
    "error",
    what="A non-finite loss part or gradient norm (the first step is reported), or fp16 with logit scale 100.",
    why="transformers filters NaN losses out of its logs by default; fp16 overflows at scale 100.",
    example="{'loss': 0.0, 'grad_norm': nan}",
    fix="Use bf16 or fp32; find the first non-finite step and the loss part that produced it.",
)
register(
    "FGD801",
    "ranks-disagree",
    "warning",
    what="Ranks hold different memory-bank queues or report diverging losses.",
    why="The bank must be gathered across ranks so every rank trains against the same negatives.",
    example="queue checksum differs between rank 0 and rank 1",
    fix="Gather keys across ranks before enqueueing (fgclip does).",
)
