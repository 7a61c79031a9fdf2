#!/usr/bin/env bash
# Screen small-data candidates on VALIDATION rows only (issue 16): each candidate trains
# flags/small_data.flags plus its overrides on TRAIN.txt (the package's own 10 % validation
# split, seeded) and reports its best val_pearson. Nothing held out is read here.
#
#   experiments/small_data/screen.sh TRAIN.txt OUT_ROOT SEEDS CANDIDATE [CANDIDATE ...]
#
# SEEDS is comma-separated (e.g. 0,1,2). Each run goes to OUT_ROOT/CANDIDATE/seed<S>; a
# finished run is skipped, a killed one resumes. One line per run is appended to
# OUT_ROOT/screen.tsv: candidate, seed, best epoch, best val_pearson, train seconds.
set -euo pipefail
train=$1 out_root=$2 seeds=$3
shift 3
python=${PYTHON:-.venv/bin/python}

# The first recipe (flags/small_data.flags before distillation), and its distillation
# variants; every candidate spells out what differs, so the screen does not depend on the
# flagfile's current contents.
first="--teacher= --pretrain_epochs=0 --learning_rate=3e-4 --epochs=30"
distill="--teacher=ridge --pretrain_epochs=2 --pretrain_steps_per_epoch=469 \
--pretrain_learning_rate=3e-4 --learning_rate=1e-4 --epochs=20"
evoaug="--augment_mutation_rate=0.05 --augment_insertion_max=10 --augment_deletion_max=10 \
--augment_translocation_max=10 --augment_probability=0.5 --final_unaugmented_epochs=5"

candidate_flags() {
    case $1 in
        base) echo "$first" ;;                              # the first recipe (R3)
        distill) echo "$distill" ;;                         # 60,032 ridge-labelled designs
        distill_long) echo "${distill/--pretrain_epochs=2/--pretrain_epochs=6}" ;;  # 180k
        distill_ema) echo "$distill --ema_momentum=0.99" ;;
        distill_evoaug) echo "$distill $evoaug" ;;
        distill_mutate) echo "$distill --pretrain_generator=mutate --pretrain_mutation_rate=0.2" ;;
        # the chosen recipe (6 pre-training epochs) on mutated training rows (10 % of bases)
        distill_long_mutate) echo "${distill/--pretrain_epochs=2/--pretrain_epochs=6} \
--pretrain_generator=mutate --pretrain_mutation_rate=0.1" ;;
        evoaug) echo "$first $evoaug" ;;
        *) echo "unknown candidate: $1" >&2; return 1 ;;
    esac
}

mkdir -p "$out_root"
for candidate in "$@"; do
    extra=$(candidate_flags "$candidate")
    for seed in ${seeds//,/ }; do
        run_dir=$out_root/$candidate/seed$seed
        if [[ -f $run_dir/run.json ]] && grep -q '"status": "completed"' "$run_dir/run.json"; then
            continue
        fi
        started=$(date +%s)
        # shellcheck disable=SC2086
        "$python" train.py --flagfile=flags/small_data.flags --train_data="$train" \
            --cache_path="$out_root/$candidate.seed$seed.cache.h5" --output_dir="$run_dir" \
            --synthetic_rows=0 --seed="$seed" $extra
        seconds=$(( $(date +%s) - started ))
        "$python" - "$run_dir" "$candidate" "$seed" "$seconds" >> "$out_root/screen.tsv" <<'EOF'
import json, sys
run_dir, candidate, seed, seconds = sys.argv[1:]
record = json.load(open(f"{run_dir}/run.json"))
# best_metrics is null when no epoch had a finite val_pearson (a diverged run): nan.
val_pearson = (record.get("best_metrics") or {}).get("val_pearson")
print(candidate, seed, record.get("best_epoch"),
      f'{float("nan") if val_pearson is None else val_pearson:.4f}', seconds, sep="\t")
EOF
    done
done
cat "$out_root/screen.tsv"
