#!/usr/bin/env bash
# A seed ensemble against its own members, on held-out rows, with one command each:
# ensemble.py trains the members (flags/small_data.flags plus overrides) and writes the
# ensemble file; evaluate.py scores every member and the ensemble, both strand-averaged
# (--reverse_complement_average), the first one also beside the k-mer ridge fitted on the
# same training file. Run from the repository root:
#
#   experiments/small_data/ensemble_vs_members.sh TRAIN.txt HELDOUT.txt OUT [flags...]
#
# e.g. MEMBERS=3 ... OUT --epochs=6. Writes OUT/ (the ensemble), OUT/members/seed_K/
# and */evaluation/heldout/metrics.json; prints one table. Data
# locations are arguments: nothing is hard-coded.
set -euo pipefail
train=$1 heldout=$2 out=$3
shift 3
python=${PYTHON:-.venv/bin/python}
started=$(date +%s)
"$python" ensemble.py --flagfile=flags/small_data.flags --train_data="$train" \
    --output_dir="$out" --synthetic_rows=0 --ensemble_members="${MEMBERS:-3}" "$@"
echo "ensemble_training_seconds=$(( $(date +%s) - started ))"
baseline="--baseline_train_data=$train"
for run in "$out"/members/seed_* "$out"; do
    "$python" evaluate.py --model="$run/model.keras" --data="$heldout" \
        --output_dir="$run/evaluation/heldout" --reverse_complement_average $baseline
    baseline=""
done
"$python" - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
runs = sorted(glob.glob(os.path.join(out, "members", "seed_*"))) + [out]
print("| model | val_pearson | held-out r | held-out rho |")
print("|---|---|---|---|")
for run in runs:
    metrics = json.load(open(os.path.join(run, "evaluation", "heldout", "metrics.json")))
    record_path = os.path.join(run, "run.json")
    val = (json.load(open(record_path)).get("best_metrics") or {}).get("val_pearson") \
        if os.path.isfile(record_path) else None
    name = "ensemble" if run == out else os.path.basename(run)
    print(f"| {name} | {'' if val is None else f'{val:.3f}'} | {metrics['pearson']:.3f} "
          f"| {metrics['spearman']:.3f} |")
    if "baseline" in metrics:
        ridge = metrics["baseline"]
        print(f"| k-mer ridge | | {ridge['pearson']:.3f} | {ridge['spearman']:.3f} |")
PY
echo "total_seconds=$(( $(date +%s) - started ))"
