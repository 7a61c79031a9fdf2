#!/usr/bin/env bash
# One small-data experiment: train with flags/small_data.flags plus overrides, then score
# the best epoch on held-out rows beside the k-mer ridge baseline fitted on the same
# training file (evaluate.py --baseline_train_data). Run from the repository root:
#
#   experiments/small_data/run_experiment.sh TRAIN.txt HELDOUT.txt RUN_DIR [train.py flags...]
#
# Writes RUN_DIR/ (the run) and RUN_DIR/evaluation/heldout/metrics.json (model and
# baseline); prints the wall time. Data locations are arguments: nothing is hard-coded.
set -euo pipefail
train=$1 heldout=$2 run_dir=$3
shift 3
python=${PYTHON:-.venv/bin/python}
started=$(date +%s)
"$python" train.py --flagfile=flags/small_data.flags --train_data="$train" \
    --output_dir="$run_dir" --synthetic_rows=0 "$@"
trained=$(date +%s)
"$python" evaluate.py --model="$run_dir/model.keras" --data="$heldout" \
    --output_dir="$run_dir/evaluation/heldout" --baseline_train_data="$train" \
    --allow_implausible ${EVALUATE_FLAGS:-}
echo "train_minutes=$(( (trained - started) / 60 )).$(( (trained - started) % 60 * 10 / 60 ))" \
     "total_seconds=$(( $(date +%s) - started ))"
