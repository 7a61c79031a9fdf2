"""The k-mer ridge on a run's own split: fitted on the run's training rows, scored on its
validation rows, so that a screen compares candidates with the baseline on the SAME rows
(nothing held out is read).

    python experiments/small_data/ridge_on_validation.py RUN_DIR [RUN_DIR ...]

Prints one JSON line per run: k, penalty and the validation Pearson/Spearman of the ridge
beside the run's best val_pearson.
"""
import json
import sys

from dream_keras.baseline import fit_kmer_ridge
from dream_keras.data.sequences import decode
from dream_keras.data.training_data import load_training_rows
from dream_keras.evaluation import regression_metrics
from dream_keras.training_config import TrainingConfig


def ridge_on_validation(run_dir: str) -> dict:
    with open(f"{run_dir}/run.json") as handle:
        record = json.load(handle)
    config = TrainingConfig(**record["flags"])
    rows = load_training_rows(config, seq_len=record["flags"]["model"]["seq_len"])
    ridge = fit_kmer_ridge(decode(rows.train_codes), rows.train_targets)
    metrics = regression_metrics(ridge.predict(decode(rows.validation_codes)),
                                 rows.validation_targets)
    return {"run": run_dir, "k": ridge.k, "penalty": ridge.penalty,
            "ridge_val_pearson": metrics["pearson"], "ridge_val_spearman": metrics["spearman"],
            "run_val_pearson": (record.get("best_metrics") or {}).get("val_pearson")}


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    for run_dir in argv[1:]:
        print(json.dumps(ridge_on_validation(run_dir)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
