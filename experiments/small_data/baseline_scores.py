"""Held-out scores of the k-mer ridge baseline: one JSON line per (train, test) pair.

    python experiments/small_data/baseline_scores.py --train=FILE --test=FILE [--rows=N]

--rows keeps the first N training rows (a learning-curve point). Prints k, penalty,
fit seconds and the held-out metrics (dream_keras.metrics names).
"""
import json
import time

from absl import app, flags

from dream_keras.baseline import fit_kmer_ridge
from dream_keras.data.readers import read_expression_file
from dream_keras.evaluation import regression_metrics

_TRAIN = flags.DEFINE_string("train", None, "Labelled training file.")
_TEST = flags.DEFINE_string("test", None, "Labelled held-out file.")
_ROWS = flags.DEFINE_integer("rows", 0, "Keep only the first N training rows (0: all).")
flags.mark_flags_as_required(["train", "test"])


def main(argv):
    del argv
    sequences, values = read_expression_file(_TRAIN.value)
    if _ROWS.value:
        sequences, values = sequences[:_ROWS.value], values[:_ROWS.value]
    started = time.time()
    baseline = fit_kmer_ridge(sequences, values)
    seconds = time.time() - started
    test_sequences, test_values = read_expression_file(_TEST.value)
    metrics = regression_metrics(baseline.predict(test_sequences), test_values)
    metrics.pop("mse"), metrics.pop("r2")  # on the raw scale here; correlations are scale-free
    print(json.dumps({"train": _TRAIN.value, "test": _TEST.value, "train_rows": len(values),
                      "k": baseline.k, "penalty": baseline.penalty,
                      "fit_seconds": round(seconds, 1), **metrics}))


if __name__ == "__main__":
    app.run(main)
