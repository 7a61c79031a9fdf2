"""Benchmark the tf.data training pipeline alone, against what a train step consumes.

Why: the input pipeline (shuffle an index range, gather uint8 codes in NumPy, one-hot in
TF) must never be what training waits for. This measures the sequences/s that
dataset.training_dataset delivers from a prepared cache with no model attached, for a few
parallel_calls / prefetch settings, and divides by the train step's sequences/s (measured
here, or passed in by run_all from the train benchmark). Target: >= 20x.

    python benchmarks/pipeline_bench.py --rows=200000 --batches=200
"""
from __future__ import annotations

import argparse
import os
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

BATCH_SIZE = 1024
# (parallel_calls, prefetch); -1 = tf.data.AUTOTUNE, the training default.
SETTINGS = ((-1, -1), (1, 1), (2, 2), (1, -1))


def cached_codes(bench_dir: str, rows: int):
    """(codes uint8 [rows, 110], targets float32 [rows]) from a prepared HDF5 cache."""
    from dream_keras.data.cache import load_cache, prepare_cache

    cache_path = os.path.join(bench_dir, f"pipeline_bench_{rows}.h5")
    if not os.path.exists(cache_path):
        prepare_cache(cached_dream_file(bench_dir, rows), cache_path)
    cache = load_cache(cache_path)
    return cache.codes, cache.expression


def pipeline_sequences_per_second(codes, targets, batches: int, parallel_calls: int,
                                  prefetch: int) -> float:
    """Sequences/s delivered by training_dataset over `batches` batches (after 5 warm-up
    batches that fill the shuffle buffer and the prefetch queue)."""
    import tensorflow as tf

    from dream_keras.dataset import training_dataset

    autotune = lambda value: tf.data.AUTOTUNE if value < 0 else value  # noqa: E731
    dataset = training_dataset(codes, targets, batch_size=BATCH_SIZE, seed=0, repeat=True,
                               parallel_calls=autotune(parallel_calls),
                               prefetch=autotune(prefetch))
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH_SIZE / (time.perf_counter() - started)


def setting_name(parallel_calls: int, prefetch: int) -> str:
    text = lambda value: "autotune" if value < 0 else str(value)  # noqa: E731
    return f"parallel_{text(parallel_calls)}_prefetch_{text(prefetch)}"


def run(rows: int, batches: int, bench_dir: str, train_rate: float | None,
        train_batch_size: int) -> list:
    figures = []
    codes, targets = cached_codes(bench_dir, rows)
    rates = {}
    for parallel_calls, prefetch in SETTINGS:
        name = setting_name(parallel_calls, prefetch)
        rates[name] = pipeline_sequences_per_second(codes, targets, batches, parallel_calls,
                                                    prefetch)
        figures.append(report(Figure(f"pipeline_{name}_sequences_per_second", rates[name],
                                     "seq/s", f"training_dataset alone, batch {BATCH_SIZE}, "
                                     f"{name.replace('_', ' ')}")))
    if train_rate is None:
        from train_bench import train_sequences_per_second

        train_rate, _ = train_sequences_per_second(train_batch_size, steps=2)
        figures.append(report(Figure("pipeline_train_step_sequences_per_second", train_rate,
                                     "seq/s", f"train step consumption, float32, batch "
                                     f"{train_batch_size}")))
    default = rates[setting_name(-1, -1)]
    figures.append(report(Figure("pipeline_over_train_step", default / train_rate, "x",
                                 "pipeline seq/s (autotune) / train step seq/s", ">= 20")))
    report_ratio(f"the pipeline delivers {default / train_rate:.0f}x what a train step "
                 "consumes")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000,
                        help="Rows of the synthetic cache the pipeline reads.")
    parser.add_argument("--batches", type=int, default=200,
                        help="Batches of 1024 timed per setting.")
    parser.add_argument("--train_sequences_per_second", type=float, default=None,
                        help="Train step consumption measured elsewhere (run_all passes the "
                             "train benchmark's); measured here when absent.")
    parser.add_argument("--train_batch_size", type=int, default=256,
                        help="Batch of the train step measured here when no rate is given.")
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR,
                        help="Where the synthetic file and its cache are kept.")
    args = parser.parse_args()
    run(args.rows, args.batches, args.bench_dir, args.train_sequences_per_second,
        args.train_batch_size)


if __name__ == "__main__":
    main()
