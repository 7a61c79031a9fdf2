#!/usr/bin/env bash
# Replay the recipe's first pre-training epoch (plus one fine-tuning epoch, for a
# validation r) for runs whose first epoch diverged, with extra train.py flags (issue 16,
# "no diverged epoch"): the runs are deterministic, so without extra flags a replay
# reproduces the original run's epoch-1 training loss, and with them shows what they change.
# Validation rows only; nothing held out is read.
#
#   experiments/small_data/first_epoch_replays.sh OUT_ROOT "TRAIN.txt:SEED ..." [FLAGS...]
#
# Each replay goes to OUT_ROOT/<train file's folder>_seed<S>; one line per replay is
# appended to OUT_ROOT/replays.tsv: train file, seed, the pre-training epoch's mean
# training loss, its validation r, the fine-tuning epoch's mean training loss and
# validation r, and the flags.
set -euo pipefail
out_root=$1 pairs=$2
shift 2
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out_root"
for pair in $pairs; do
    train=${pair%:*} seed=${pair##*:}
    out="$out_root/$(basename "$(dirname "$train")")_seed$seed"
    "$python" train.py --flagfile=flags/small_data.flags --train_data="$train" \
        --output_dir="$out" --synthetic_rows=0 --seed="$seed" --pretrain_epochs=1 \
        --epochs=1 "$@"
    "$python" - "$out/history.csv" "$train" "$seed" "$*" >> "$out_root/replays.tsv" <<'EOF'
import sys

import pandas as pd

history = pd.read_csv(sys.argv[1])
cells = [sys.argv[2], sys.argv[3]]
for _, row in history.iterrows():
    cells += [f"{row['loss']:.3g}", f"{row['val_pearson']:.3f}"]
print("\t".join(cells + [sys.argv[4]]))
EOF
done
