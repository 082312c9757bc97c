#!/bin/bash
# Full UCF-Crime training of FG-CLIP (fgclip-vad style): one GPU, no DeepSpeed.
# Usage: bash scripts/train_ucf_full.sh

export CUDA_VISIBLE_DEVICES=0
export PYTHONPATH=$(pwd)
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

DATA_ROOT=/data/zyy/dataset/UCF_Crimes_Videos
OUTPUT_DIR=./checkpoints/fgclip_ucf_full
BATCH_SIZE=2
GRAD_ACC=16

mkdir -p $OUTPUT_DIR

python3 fgclip/train/train_fgclip.py \
    --model_name_or_path ViT-B/32 \
    --from_openai True \
    --data_path ${DATA_ROOT}/ucf_fgclip_train_with_timestamps_en.json \
    --image_folder ${DATA_ROOT} \
    --output_dir $OUTPUT_DIR \
    --is_video True \
    --num_frames 256 \
    --add_box_loss True \
    --per_device_train_batch_size $BATCH_SIZE \
    --gradient_accumulation_steps $GRAD_ACC \
    --num_train_epochs 5 \
    --learning_rate 5e-6 \
    --text_model_lr 2e-6 \
    --weight_decay 0.01 \
    --warmup_ratio 0.1 \
    --lr_scheduler_type cosine \
    --max_grad_norm 1.0 \
    --bf16 True \
    --tf32 True \
    --gradient_checkpointing True \
    --save_steps 100 \
    --save_total_limit 3 \
    --logging_steps 10 \
    --auto_resume False \
    --report_to tensorboard \
    --seed 42 \
    2>&1 | tee $OUTPUT_DIR/training.log

echo "Training finished"
