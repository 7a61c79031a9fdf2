#!/usr/bin/env bash
# Distillation on real rows (issue 16, first measurement): pre-train the unchanged model on
# generated sequences of the training file's design labelled by the k-mer ridge (fitted on
# the run's training rows only), then fine-tune on the real rows; score the best epoch on
# the DREAM public-leaderboard rows beside the ridge baseline fitted on the same file.
#
#   experiments/small_data/distill_real.sh TRAIN.txt DREAM_DIR RUN_DIR [train.py flags...]
#
# 2 pre-training epochs of 469 batches of 64 = 60,032 generated sequences at RMSprop 3e-4,
# then up to 20 fine-tuning epochs at 1e-4 (patience 5), the rest as flags/small_data.flags
# (reverse-complement augmentation in fine-tuning, strand-averaged evaluation).
set -euo pipefail
train=$1 dream_dir=$2 run_dir=$3
shift 3
python=${PYTHON:-.venv/bin/python}
started=$(date +%s)
"$python" train.py --flagfile=flags/small_data.flags --train_data="$train" \
    --cache_path="$run_dir.cache.h5" --output_dir="$run_dir" --synthetic_rows=0 \
    --teacher=ridge --pretrain_epochs=2 --pretrain_steps_per_epoch=469 \
    --pretrain_learning_rate=3e-4 --learning_rate=1e-4 --epochs=20 "$@"
trained=$(date +%s)
"$python" evaluate.py --model="$run_dir/model.keras" --dream_dir="$dream_dir" \
    --output_dir="$run_dir/evaluation/dream" --baseline_train_data="$train" \
    --reverse_complement_average --allow_implausible
echo "train_seconds=$(( trained - started )) total_seconds=$(( $(date +%s) - started ))"
