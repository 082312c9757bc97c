#!/bin/bash
# FG-CLIP v1 stage-2 recipe (upstream scripts/train.sh style).
name=qihoo360/fg-clip-base
name=openai/clip-vit-base-patch16

deepspeed --num_gpus 8 fgclip/train/train_mem.py \
    --deepspeed scripts/zero2.json \
    --model_name_or_path $name \
    --base_model $name \
    --data_path data/finegrit.json \
    --image_folder data/images \
    --output_dir ./checkpoints/fgclip_stage2 \
    --num_train_epochs 1 \
    --per_device_train_batch_size 512 \
    --gradient_accumulation_steps 1 \
    --learning_rate 1e-6 \
    --weight_decay 0.001 \
    --warmup_steps 200 \
    --lr_scheduler_type cosine \
    --bf16 True --tf32 True \
    --add_box_loss True --use_hard_neg True --from_openai True
