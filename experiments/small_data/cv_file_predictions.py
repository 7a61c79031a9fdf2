"""Keep what each fold's ONE-FILE ensemble predicts on its held-out rows, beside the member
predictions of cv_member_predictions.sh, so that cv_ensemble_table.py --combine=file scores
the file a user would load (its PlausibleMean judges each member's output on each strand;
the table's --combine=plausible_mean can only judge the members' strand averages):

    python experiments/small_data/cv_file_predictions.py --fold_dir=FOLD_DIR \\
        --prefix=PREFIX --results_dir=experiments/small_data/results/cv_distill

PREFIX_fold<i>/model.keras is the fold's ensemble file (cross_validate_ensemble.sh writes
it: `ensemble.py --members=...` over the fold's member runs). Per fold it writes
RESULTS_DIR/fold<i>_file.txt (the strand-averaged predictions, expression scale, one per
line in test.txt's order) and then fold<i>_file.json (the SHA-256 of test.txt and of the
model file, the members' seeds and how many predictions are implausible), each whole.
"""
import json
import os

import numpy as np
from absl import app, flags

from dream_keras import atomic_files
from dream_keras.data.cache import file_sha256
from dream_keras.data.readers import read_expression_file
from dream_keras.inference import load_run, predict_sequences
from dream_keras.plausibility import implausible_mask

_FOLD_DIR = flags.DEFINE_string("fold_dir", None, "Folds of make_folds.py: fold<i>/test.txt.")
_PREFIX = flags.DEFINE_string("prefix", None, "The ensembles: PREFIX_fold<i>/model.keras.")
_RESULTS_DIR = flags.DEFINE_string("results_dir", None, "Where fold<i>_file.txt/.json go.")
_FOLDS = flags.DEFINE_list("folds", ["0", "1", "2", "3", "4"], "Folds to predict.")
flags.mark_flags_as_required(["fold_dir", "prefix", "results_dir"])


def keep_fold(fold_dir: str, prefix: str, results_dir: str, fold: str) -> dict:
    test = os.path.join(fold_dir, f"fold{fold}", "test.txt")
    run = f"{prefix}_fold{fold}"
    sequences, _ = read_expression_file(test)
    model, scaler = load_run(run)
    values = predict_sequences(model, scaler, sequences, reverse_complement_average=True)
    with open(os.path.join(run, "ensemble.json")) as handle:
        members = [member.get("seed") for member in json.load(handle)["members"]]
    base = os.path.join(results_dir, f"fold{fold}_file")
    with atomic_files.replacing_open(base + ".txt") as handle:
        np.savetxt(handle, values, fmt="%.7g")
    summary = {"fold": int(fold), "member_seeds": members, "test_rows": len(values),
               "test_sha256": file_sha256(test),
               "model_sha256": file_sha256(os.path.join(run, "model.keras")),
               "implausible": int(implausible_mask(values, scaler).sum())}
    atomic_files.write_text(base + ".json", json.dumps(summary, indent=1) + "\n")  # last
    return summary


def main(argv):
    del argv
    os.makedirs(_RESULTS_DIR.value, exist_ok=True)
    for fold in _FOLDS.value:
        print(keep_fold(_FOLD_DIR.value, _PREFIX.value, _RESULTS_DIR.value, fold), flush=True)


if __name__ == "__main__":
    app.run(main)
