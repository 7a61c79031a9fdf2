#!/usr/bin/env bash
# Cross-validation members of flags/small_data.flags, one (fold, seed) at a time, keeping
# what each member predicts on its fold's held-out rows IN THE REPOSITORY, so that a CV
# of 15+ runs (5-7 hours on 2 CPU cores) can be accumulated over several sessions and the
# seed ensembles scored from the kept predictions (cv_ensemble_table.py). Run from the
# repository root:
#
#   experiments/small_data/cv_member_predictions.sh FOLD_DIR RUN_PREFIX RESULTS_DIR \
#       "FOLDS" "SEEDS" [train.py flags...]
#
# FOLD_DIR holds fold<i>/{train,test}.txt (make_folds.py --folds=5 --seed=0); FOLDS and
# SEEDS are space-separated lists, e.g. "3 2" "0 1 2". Per pair: train.py into
# RUN_PREFIX_fold<i>/seed_K (skipped when its run.json says completed; a killed run
# resumes), then predict.py --reverse_complement_average on the fold's test.txt (into the
# run directory), whose prediction column goes to RESULTS_DIR/fold<i>_seed<K>.txt (one
# number per line, in test.txt's order: a few KB to commit), and the run's summary to
# RESULTS_DIR/fold<i>_seed<K>.json (best epoch, val r, diverged and rolled-back epochs,
# the run's target scaler, and the SHA-256 of the test.txt predicted). A member whose
# files exist is skipped. Implausible predictions are kept (--allow_implausible): the
# table leaves them out of the ensemble's mean by the rule the one-file ensemble uses
# (cv_ensemble_table.py).
# Each member's files are written whole (a temporary file renamed into place, the summary
# last), so a kill never leaves a member that looks done. A member whose training,
# prediction or summary fails, or whose run ends other than completed (stopped_on_nan), is
# named and skipped; the others still run, and the script then exits with status 1.
set -euo pipefail
fold_dir=$1 prefix=$2 results=$3 folds=$4 seeds=$5
shift 5
python=${PYTHON:-.venv/bin/python}
mkdir -p "$results"
failed=()
run_status() {  # the status in a run directory's run.json; none without a readable one
    "$python" -c 'import json, sys
try:
    print(json.load(open(sys.argv[1])).get("status"))
except (OSError, ValueError):
    print("none")' "$1/run.json"
}
for fold in $folds; do
    data="$fold_dir/fold$fold"
    for seed in $seeds; do
        run="${prefix}_fold$fold/seed_$seed"
        base="$results/fold${fold}_seed$seed"
        [[ -f $base.txt && -f $base.json ]] && continue
        status=$(run_status "$run")
        if [[ $status == none || $status == running ]]; then  # new, or killed: resumes
            if ! "$python" train.py --flagfile=flags/small_data.flags \
                    --train_data="$data/train.txt" --output_dir="$run" --synthetic_rows=0 \
                    --seed="$seed" "$@"; then
                echo "fold $fold seed $seed: training failed (see its output above); skipped" >&2
                failed+=("fold $fold seed $seed")
                continue
            fi
            status=$(run_status "$run")
        fi
        if [[ $status != completed ]]; then
            echo "fold $fold seed $seed: $run ended with status '$status', not completed;" \
                "skipped (train it again with --overwrite, or leave the seed out)" >&2
            failed+=("fold $fold seed $seed")
            continue
        fi
        if ! "$python" predict.py --model="$run/model.keras" --input="$data/test.txt" \
            --output="$run/heldout_predictions.tsv" --reverse_complement_average --overwrite \
            --allow_implausible
        then
            echo "fold $fold seed $seed: prediction failed; skipped" >&2
            failed+=("fold $fold seed $seed")
            continue
        fi
        if ! "$python" - "$run" "$base" "$fold" "$seed" "$data/test.txt" <<'EOF'
import json, os, sys
from dream_keras.data.cache import file_sha256
run, base, fold, seed, test = sys.argv[1:]
with open(run + "/heldout_predictions.tsv") as handle:
    header, *lines = handle.read().splitlines()
assert header.split("\t")[-1] == "prediction", header
predictions = [line.split("\t")[-1] for line in lines]
run_json = run + "/run.json"
with open(run_json) as handle:
    record = json.load(handle)
summary = {
    "fold": int(fold), "seed": int(seed), "status": record.get("status"),
    "epochs_completed": record.get("epochs_completed"),
    "best_epoch": record.get("best_epoch"),
    "best_val_pearson": (record.get("best_metrics") or {}).get("val_pearson"),
    "diverged_epochs": record.get("diverged_epochs", []),
    "rolled_back_epochs": record.get("rolled_back_epochs", []),
    "test_rows": len(predictions), "test_sha256": file_sha256(test),
}
with open(run + "/target_scaler.json") as handle:  # the table's plausibility rule needs it
    summary["target_scaler"] = json.load(handle)
def write_whole(path, text):
    with open(path + ".partial", "w") as handle:
        handle.write(text)
    os.replace(path + ".partial", path)

write_whole(base + ".txt", "\n".join(predictions) + "\n")
write_whole(base + ".json", json.dumps(summary, indent=1) + "\n")  # last: marks it done
EOF
        then
            echo "fold $fold seed $seed: its summary could not be written; skipped" >&2
            failed+=("fold $fold seed $seed")
        fi
    done
done
if (( ${#failed[@]} )); then
    printf 'members not kept (see the messages above): %s\n' \
        "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
