#!/usr/bin/env bash
# Score runs trained separately (train.py --seed=K ...) as ensemble_vs_members.sh scores an
# ensemble's members: the one-file ensemble of them (ensemble.py --members), then every run
# and the ensemble strand-averaged on held-out rows, the first run also beside the k-mer
# ridge fitted on TRAIN. Settings are never chosen here. Run from the repository root:
#
#   experiments/small_data/score_runs.sh TRAIN.txt HELDOUT ENSEMBLE_OUT RUN_DIR...
#
# HELDOUT is a labelled file (--data, into */evaluation/heldout/metrics.json) or a DREAM
# directory (--dream_dir, into */evaluation/dream/dream_score.json). Rerunning skips the
# ensemble file and evaluations already written; prints one table.
set -euo pipefail
train=$1 heldout=$2 out=$3
shift 3
python=${PYTHON:-.venv/bin/python}
if [[ -d $heldout ]]; then
    kind=dream data="--dream_dir=$heldout" result=dream_score.json
else
    kind=heldout data="--data=$heldout" result=metrics.json
fi
if [[ ! -f $out/model.keras ]]; then
    "$python" ensemble.py --members="$(IFS=,; echo "$*")" --output_dir="$out"
fi
baseline="--baseline_train_data=$train"
for run in "$@" "$out"; do
    if [[ ! -f $run/evaluation/$kind/$result ]]; then
        "$python" evaluate.py --model="$run/model.keras" "$data" \
            --output_dir="$run/evaluation/$kind" --reverse_complement_average $baseline \
            --allow_implausible
    fi
    baseline=""
done
"$python" experiments/small_data/scores_table.py "$kind" "$result" "$@" "$out"
