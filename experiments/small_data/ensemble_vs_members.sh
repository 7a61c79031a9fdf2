#!/usr/bin/env bash
# A seed ensemble against its own members, on held-out rows, with one command each:
# ensemble.py trains the members (flags/small_data.flags plus overrides) and writes the
# ensemble file; evaluate.py scores every member and the ensemble, both strand-averaged
# (--reverse_complement_average), the first one also beside the k-mer ridge fitted on the
# same training file. Settings are chosen on validation rows (screen.sh), never here.
# Run from the repository root:
#
#   experiments/small_data/ensemble_vs_members.sh TRAIN.txt HELDOUT OUT [flags...]
#
# HELDOUT is a labelled file (scored with --data, into */evaluation/heldout/metrics.json)
# or a DREAM directory (scored on the challenge's subsets with --dream_dir, into
# */evaluation/dream/dream_score.json). MEMBERS=N (default 3), e.g.
# MEMBERS=3 ... OUT --epochs=6. Writes OUT/ (the ensemble) and OUT/members/seed_K/; prints
# one table. Rerunning resumes a killed ensemble and skips evaluations already written.
# Data locations are arguments: nothing is hard-coded.
set -euo pipefail
train=$1 heldout=$2 out=$3
shift 3
python=${PYTHON:-.venv/bin/python}
started=$(date +%s)
if ! grep -qs '"status": "completed"' "$out/ensemble.json"; then
    "$python" ensemble.py --flagfile=flags/small_data.flags --train_data="$train" \
        --output_dir="$out" --synthetic_rows=0 --ensemble_members="${MEMBERS:-3}" "$@"
fi
echo "ensemble_training_seconds=$(( $(date +%s) - started ))"
# Scoring is score_runs.sh's: the ensemble file exists, so it evaluates the members and
# the file and prints the table.
PYTHON=$python experiments/small_data/score_runs.sh "$train" "$heldout" "$out" \
    "$out"/members/seed_*
echo "total_seconds=$(( $(date +%s) - started ))"
