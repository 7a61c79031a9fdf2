#!/usr/bin/env bash
# Train and score one set of flags on every fold made by make_folds.py, one fold at a
# time (each fold: flags/small_data.flags + the overrides, strand-averaged evaluation on
# the fold's held-out rows beside the ridge baseline fitted on its training rows):
#
#   experiments/small_data/cross_validate.sh FOLD_DIR RUN_PREFIX [train.py flags...]
#
# Writes RUN_PREFIX_fold<i>/ per fold; summarise with
#   python experiments/small_data/summarise_runs.py RUN_PREFIX_fold*
set -euo pipefail
fold_dir=$1 prefix=$2
shift 2
for fold in "$fold_dir"/fold*/; do
    name=$(basename "$fold")
    EVALUATE_FLAGS=--reverse_complement_average \
        "$(dirname "$0")/run_experiment.sh" "$fold/train.txt" "$fold/test.txt" \
        "${prefix}_$name" "$@"
done
