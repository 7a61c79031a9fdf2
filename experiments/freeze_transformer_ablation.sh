#!/usr/bin/env bash
# What fixing the notebook's untrained transformer is worth, under one budget.
#
#   bash experiments/freeze_transformer_ablation.sh [WORK_DIR] [ROWS] [EPOCHS]
#
# Trains the quickstart recipe (flags/quickstart.flags) twice on the same synthetic rows,
# once as this package trains it and once with --freeze_transformer (the original's
# effective network: attention adds 0, feed-forward layers frozen at their random init),
# then evaluates both on the same 5,000 held-out synthetic rows. Prints one line per run.
set -euo pipefail
work="${1:-runs/ablation}"
rows="${2:-20000}"
epochs="${3:-3}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$work"
# Both runs read one copy of the recipe, taken now.
[ -f "$work/recipe.flags" ] || cp flags/quickstart.flags "$work/recipe.flags"
[ -f "$work/heldout.txt" ] || "$python" -m dream_keras.cli.synthetic --output="$work/heldout.txt" --rows=5000 --seed=1
for variant in trained frozen; do
  extra=""
  [ "$variant" = frozen ] && extra="--freeze_transformer"
  start=$(date +%s)
  "$python" train.py --flagfile="$work/recipe.flags" --train_data="$work/train.txt" \
    --synthetic_rows="$rows" --epochs="$epochs" --output_dir="$work/$variant" $extra
  "$python" evaluate.py --model="$work/$variant/model.keras" --data="$work/heldout.txt" \
    --output_dir="$work/$variant/heldout" --allow_implausible > /dev/null
  "$python" - "$work/$variant" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
run, seconds = sys.argv[1], sys.argv[2]
record = json.load(open(f"{run}/run.json"))
held = json.load(open(f"{run}/heldout/metrics.json"))
# best_metrics is null when no epoch had a finite val_pearson (a diverged run): nan.
val_pearson = (record.get("best_metrics") or {}).get("val_pearson")
print(f"{run}: best epoch {record.get('best_epoch')}, val_pearson "
      f"{float('nan') if val_pearson is None else val_pearson:.4f}, "
      f"held-out pearson {held['pearson']:.4f}, spearman {held['spearman']:.4f}, {seconds} s")
PY
done
