#!/usr/bin/env bash
# The fgclip-vad setting (UCF-Crime video, ViT-B/32) on fgclip's entry point, for N GPUs with torchrun.
#   NUM_GPUS=4 DATA=/data/ucf/ucf_fgclip_train_with_timestamps_en.json VIDEOS=/data/ucf bash examples/train_ucf_full.sh
#   DEEPSPEED=1 ... adds ZeRO-2 (examples/zero2.json).
# Check it before step 0:  fgdiag check-config examples/train_ucf_full.sh
# --logging_nan_inf_filter false: transformers' default checks every micro-batch's loss with torch.isnan/isinf
# (2 host syncs each) and logs the running mean in place of a NaN; the diagnostics want to see the NaN.
set -euo pipefail
NUM_GPUS=${NUM_GPUS:-1}
MODEL=${MODEL:-openai/clip-vit-base-patch32}
DATA=${DATA:-/data/ucf/ucf_fgclip_train_with_timestamps_en.json}
VIDEOS=${VIDEOS:-/data/ucf}
OUT=${OUT:-./checkpoints/fgclip_ucf_full}
EXTRA=()
if [ "${DEEPSPEED:-0}" = "1" ]; then EXTRA+=(--deepspeed examples/zero2.json); fi

torchrun --nproc_per_node "$NUM_GPUS" -m fgclip.train \
    --model_name_or_path "$MODEL" \
    --data_path "$DATA" \
    --image_root "$VIDEOS" \
    --data_format video \
    --box_policy drop \
    --num_frames 64 \
    --temporal_pooling attention \
    --region_head roi_projection \
    --finegrained_logit_scale_init 4.6052 \
    --hardneg_logit_scale_init 4.6052 \
    --logit_scale_max 4.6052 \
    --region_loss_weight 0.5 \
    --memory_bank_size 128 \
    --memory_bank_warmup_steps 7 \
    --per_device_train_batch_size 4 \
    --gradient_accumulation_steps 8 \
    --num_train_epochs 5 \
    --learning_rate 5e-6 \
    --head_learning_rate 1e-5 \
    --logit_scale_learning_rate 1e-4 \
    --weight_decay 0.01 \
    --warmup_steps 0.1 \
    --lr_scheduler_type cosine \
    --max_grad_norm 1.0 \
    --bf16 true \
    --gradient_checkpointing true \
    --logging_steps 10 \
    --logging_nan_inf_filter false \
    --save_steps 100 \
    --save_total_limit 3 \
    --dataloader_num_workers 4 \
    --report_to tensorboard \
    --output_dir "$OUT" \
    "${EXTRA[@]}" "$@"
