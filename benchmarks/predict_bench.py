"""Benchmark prediction through predict.py's path, and its overhead over the bare model.

Why: the challenge's test set is 71,103 sequences; a user runs `predict.py` on a text file
and gets a TSV. This times exactly the functions predict.py calls (inference.load_run then
inference.predict_file: read, validate, encode, tf.data one-hot, model.predict, inverse
scaling, TSV writing) and, in the same process, `model.predict_on_batch` on one-hot
batches already in memory. Their ratio is the share of the model's speed our I/O keeps.
The model is the full architecture with fresh weights: speed does not depend on training.

    python benchmarks/predict_bench.py --rows=71103
"""
from __future__ import annotations

import argparse
import os
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

CHALLENGE_TEST_ROWS = 71_103
BATCH_SIZE = 1024


def save_fresh_run(run_dir: str) -> str:
    """A run directory (model.keras + target_scaler.json) holding the faithful model."""
    from dream_keras.model import build_model
    from dream_keras.run_directory import MODEL_FILE, SCALER_FILE
    from dream_keras.data.splits import TargetScaler

    os.makedirs(run_dir, exist_ok=True)
    model_path = os.path.join(run_dir, MODEL_FILE)
    build_model().save(model_path)
    TargetScaler(mean=11.0, std=2.5).save(os.path.join(run_dir, SCALER_FILE))
    return model_path


def raw_predict_sequences_per_second(model, rows: int, batches: int = 4) -> float:
    """Best seq/s of model.predict_on_batch on pre-encoded float32 one-hot [1024, T, 4]."""
    import numpy as np

    seq_len = model.inputs[0].shape[1]
    codes = np.random.default_rng(0).integers(0, 5, size=(BATCH_SIZE, seq_len))
    one_hot = np.concatenate([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])[codes]
    model.predict_on_batch(one_hot)  # trace
    best = float("inf")
    for _ in range(batches):
        started = time.perf_counter()
        model.predict_on_batch(one_hot)
        best = min(best, time.perf_counter() - started)
    return BATCH_SIZE / best


def run(rows: int, bench_dir: str) -> list:
    from dream_keras.inference import load_run, predict_file

    figures = []
    input_path = cached_dream_file(bench_dir, rows, seed=1)
    model_path = save_fresh_run(os.path.join(bench_dir, "predict_bench_run"))
    output_path = os.path.join(bench_dir, "predict_bench_predictions.tsv")

    started = time.perf_counter()
    model, scaler = load_run(model_path)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predict_file(model, scaler, input_path, output_path, batch_size=BATCH_SIZE,
                 overwrite=True)
    predict_seconds = time.perf_counter() - started
    file_rate = rows / predict_seconds
    raw_rate = raw_predict_sequences_per_second(model, rows)

    figures.append(report(Figure("predict_load_run_seconds", load_seconds, "s",
                                 "inference.load_run (model.keras + scaler)")))
    figures.append(report(Figure("predict_file_sequences_per_second", file_rate, "seq/s",
                                 f"inference.predict_file, {rows:,} rows, file to TSV")))
    figures.append(report(Figure(
        "predict_challenge_test_seconds", load_seconds + CHALLENGE_TEST_ROWS / file_rate, "s",
        f"load_run + {CHALLENGE_TEST_ROWS:,} sequences at the measured rate", "< 25")))
    figures.append(report(Figure("predict_raw_sequences_per_second", raw_rate, "seq/s",
                                 f"model.predict_on_batch, one-hot in memory, batch {BATCH_SIZE}")))
    figures.append(report(Figure("predict_file_fraction_of_raw", file_rate / raw_rate, "",
                                 "predict_file seq/s / predict_on_batch seq/s (1 = no I/O "
                                 "overhead)")))
    report_ratio(f"predict_file keeps {file_rate / raw_rate:.2f} of the bare model's speed; "
                 f"{CHALLENGE_TEST_ROWS:,} sequences take "
                 f"{load_seconds + CHALLENGE_TEST_ROWS / file_rate:.0f} s")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=CHALLENGE_TEST_ROWS,
                        help="Sequences in the synthetic input file (the challenge's test "
                             "set has 71,103); the 71,103 figure is scaled from the rate.")
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR,
                        help="Where the input file, run directory and TSV are written.")
    args = parser.parse_args()
    run(args.rows, args.bench_dir)


if __name__ == "__main__":
    main()
