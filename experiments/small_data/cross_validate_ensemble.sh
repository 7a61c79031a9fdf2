#!/usr/bin/env bash
# 5-fold CV of a seed ensemble of flags/small_data.flags (plus overrides): per fold, the
# members' runs (train.py --seed=K: what `ensemble.py --ensemble_members=N` trains as
# member K), the one-file ensemble of them (ensemble.py --members) and the strand-averaged
# evaluation of the ensemble on the fold's held-out rows beside the k-mer ridge fitted on
# its training rows. Run from the repository root:
#
#   experiments/small_data/cross_validate_ensemble.sh FOLD_DIR PREFIX SEEDS [flags...]
#
# SEEDS is a space-separated list, e.g. "0 1". Writes PREFIX_fold<i>/members/seed_K/ and
# PREFIX_fold<i>/ (the ensemble, its evaluation in evaluation/heldout/metrics.json).
# Rerunning skips finished members and evaluations (a killed member resumes), so members
# trained earlier can be placed (or linked) as PREFIX_fold<i>/members/seed_K beforehand.
# Summarise with: python experiments/small_data/summarise_runs.py PREFIX_fold*
set -euo pipefail
fold_dir=$1 prefix=$2 seeds=$3
shift 3
python=${PYTHON:-.venv/bin/python}
for fold in "$fold_dir"/fold*/; do
    out="${prefix}_$(basename "$fold")"
    members=()
    for seed in $seeds; do
        run="$out/members/seed_$seed"
        members+=("$run")
        if ! grep -qs '"status": "completed"' "$run/run.json"; then
            "$python" train.py --flagfile=flags/small_data.flags --train_data="$fold/train.txt" \
                --output_dir="$run" --synthetic_rows=0 --seed="$seed" "$@"
        fi
    done
    if [[ ! -f $out/model.keras ]]; then
        "$python" ensemble.py --members="$(IFS=,; echo "${members[*]}")" --output_dir="$out"
    fi
    if [[ ! -f $out/evaluation/heldout/metrics.json ]]; then
        "$python" evaluate.py --model="$out/model.keras" --data="$fold/test.txt" \
            --output_dir="$out/evaluation/heldout" --reverse_complement_average \
            --baseline_train_data="$fold/train.txt" --allow_implausible
    fi
done
