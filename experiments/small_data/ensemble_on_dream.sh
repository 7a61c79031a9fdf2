#!/usr/bin/env bash
# The chosen recipe, reported ONCE on the DREAM public-leaderboard rows (issue 16 (a)):
# ensemble.py trains N seeds of flags/small_data.flags (plus overrides) on TRAIN.txt and
# writes one ensemble file; evaluate.py scores every member and the ensemble on the
# challenge's subsets (strand-averaged), the first beside the k-mer ridge fitted on the same
# training file. Settings are chosen on validation rows (screen.sh), never here.
#
#   experiments/small_data/ensemble_on_dream.sh TRAIN.txt DREAM_DIR OUT [train flags...]
#
# MEMBERS=N (default 3). Writes OUT/ (the ensemble), OUT/members/seed_K/ and
# */evaluation/dream/dream_score.json; prints one table. Rerunning resumes.
set -euo pipefail
train=$1 dream_dir=$2 out=$3
shift 3
python=${PYTHON:-.venv/bin/python}
started=$(date +%s)
"$python" ensemble.py --flagfile=flags/small_data.flags --train_data="$train" \
    --output_dir="$out" --synthetic_rows=0 --ensemble_members="${MEMBERS:-3}" "$@"
echo "ensemble_training_seconds=$(( $(date +%s) - started ))"
baseline="--baseline_train_data=$train"
for run in "$out"/members/seed_* "$out"; do
    if [[ ! -f $run/evaluation/dream/dream_score.json ]]; then
        "$python" evaluate.py --model="$run/model.keras" --dream_dir="$dream_dir" \
            --output_dir="$run/evaluation/dream" --reverse_complement_average $baseline
    fi
    baseline=""
done
"$python" - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
runs = sorted(glob.glob(os.path.join(out, "members", "seed_*"))) + [out]
names = ["all", "high", "low", "yeast", "random", "challenging", "motif_perturbation",
         "motif_tiling"]
def row(name, score, val=""):
    subsets = score["subsets"]
    cells = [f"{subsets[n]['pearson']:.3f}" if subsets.get(n, {}).get("pearson") is not None
             else "" for n in names]
    return (f"| {name} | {val} | {score['pearson_score']:.3f} | {score['spearman_score']:.3f} | "
            + " | ".join(cells) + " |")
print("| model | val_pearson | Pearson score | Spearman score | r " + " | r ".join(names) + " |")
print("|---" * (4 + len(names)) + "|")
for run in runs:
    score = json.load(open(os.path.join(run, "evaluation", "dream", "dream_score.json")))
    record_path = os.path.join(run, "run.json")
    val = (json.load(open(record_path)).get("best_metrics") or {}).get("val_pearson") \
        if os.path.isfile(record_path) else None
    name = "ensemble" if run == out else os.path.basename(run)
    print(row(name, score, "" if val is None else f"{val:.3f}"))
    if "baseline" in score:
        print(row("k-mer ridge", score["baseline"]))
PY
echo "total_seconds=$(( $(date +%s) - started ))"
