#!/usr/bin/env bash
# Multi-GPU variant: the process count comes from the caller's environment.
set -e
MODEL=${MODEL:-openai/clip-vit-base-patch16}

CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --nproc_per_node $NUM_GPUS --master_port 29501 \
    -m fgclip.train \
    --model_name_or_path $MODEL \
    --finegrained_logit_scale_init 4.6052 \
    --hardneg_logit_scale_init 4.6052 \
    --memory_bank_size 128 \
    --memory_bank_warmup_steps 6 \
    --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 8 \
    --max_steps 240 \
    --learning_rate 5e-6 \
    --head_learning_rate 2e-5 \
    --fp16 True \
    --output_dir "$OUT_DIR"  # where checkpoints go
