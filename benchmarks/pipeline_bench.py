"""Benchmark the tf.data training pipeline alone: rows/s, pass-boundary stall, memory.

Why: the input pipeline (a stateless per-pass permutation evaluated per batch, uint8 codes
gathered in NumPy, one-hot in TF) must never be what training waits for: eight GPUs at
the original's ~100k rows/s each need ~800k rows/s. This measures, on a 5M-row code array
(synthetic codes: the pipeline never looks at their values) with no model attached:
- rows/s delivered by dataset.training_dataset at batch 1024 for a few parallel_calls /
  prefetch settings (target >= 1,000,000 with the default autotune);
- the longest wait for one batch across a pass boundary (where the old element-wise
  `shuffle(N)` refilled its buffer for seconds; target < 0.5 s);
- the process's peak resident memory above the code array, against the array's size;
- the pipeline rate over the train step's consumption (measured here, or passed in).

    python benchmarks/pipeline_bench.py --rows=5000000 --batches=300
"""
from __future__ import annotations

import argparse
import resource
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import Figure, report, report_ratio

BATCH_SIZE = 1024
# (parallel_calls, prefetch); -1 = tf.data.AUTOTUNE, the training default.
SETTINGS = ((-1, -1), (1, 1), (2, 2))


def synthetic_codes(rows: int, seq_len: int = 110):
    """(codes uint8 [rows, seq_len] in 0..4, targets float32 [rows])."""
    import numpy as np

    rng = np.random.default_rng(0)
    codes = np.empty((rows, seq_len), dtype=np.uint8)
    for start in range(0, rows, 100_000):  # in chunks: no transient larger than the array
        codes[start:start + 100_000] = rng.integers(0, 5, codes[start:start + 100_000].shape,
                                                    dtype=np.uint8)
    return codes, rng.standard_normal(rows, dtype=np.float32)


def _dataset(codes, targets, parallel_calls: int, prefetch: int, start_step: int = 0):
    import tensorflow as tf

    from dream_keras.dataset import training_dataset

    autotune = lambda value: tf.data.AUTOTUNE if value < 0 else value  # noqa: E731
    return training_dataset(codes, targets, batch_size=BATCH_SIZE, seed=0, repeat=True,
                            start_step=start_step, parallel_calls=autotune(parallel_calls),
                            prefetch=autotune(prefetch))


def pipeline_rows_per_second(codes, targets, batches: int, parallel_calls: int,
                             prefetch: int) -> float:
    """Rows/s delivered over `batches` batches (after 5 that fill the prefetch queue)."""
    iterator = iter(_dataset(codes, targets, parallel_calls, prefetch))
    for _ in range(5):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH_SIZE / (time.perf_counter() - started)


def pass_boundary_stall_seconds(codes, targets) -> float:
    """The longest wait for one batch among the 20 around the end of pass 0 (autotune),
    from a stream started 10 batches before the boundary."""
    from dream_keras.dataset import batches_per_pass

    start = batches_per_pass(len(codes), BATCH_SIZE) - 10
    iterator = iter(_dataset(codes, targets, -1, -1, start_step=start))
    next(iterator)
    waits = []
    for _ in range(20):
        started = time.perf_counter()
        next(iterator)
        waits.append(time.perf_counter() - started)
    return max(waits)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def run(rows: int, batches: int, train_rate: float | None, train_batch_size: int) -> list:
    import tensorflow as tf  # noqa: F401  (loaded before the baseline memory reading)

    figures = []
    codes, targets = synthetic_codes(rows)
    baseline = _current_rss_bytes()  # interpreter + TF + the code array
    figures.append(report(Figure("pipeline_rss_before_mib", baseline / 2**20, "MiB",
                                 "resident memory before the pipeline: interpreter, TF and "
                                 f"the code array (its peak so far "
                                 f"{_peak_rss_bytes() / 2**20:.0f} MiB)")))
    rates = {}
    for parallel_calls, prefetch in SETTINGS:
        name = setting_name(parallel_calls, prefetch)
        rates[name] = pipeline_rows_per_second(codes, targets, batches, parallel_calls,
                                               prefetch)
        target = ">= 1,000,000" if (parallel_calls, prefetch) == (-1, -1) else ""
        figures.append(report(Figure(f"pipeline_{name}_rows_per_second", rates[name],
                                     "rows/s", f"training_dataset alone, {rows:,} rows, "
                                     f"batch {BATCH_SIZE}, {name.replace('_', ' ')}",
                                     target)))
    stall = pass_boundary_stall_seconds(codes, targets)
    figures.append(report(Figure("pipeline_pass_boundary_stall_seconds", stall, "s",
                                 f"longest wait for a batch across a pass boundary, "
                                 f"{rows:,} rows", "< 0.5")))
    above = max(0, _peak_rss_bytes() - baseline)
    figures.append(report(Figure("pipeline_code_array_mib", codes.nbytes / 2**20, "MiB",
                                 f"the uint8 code array of {rows:,} rows")))
    figures.append(report(Figure("pipeline_peak_memory_above_codes_mib", above / 2**20,
                                 "MiB", "peak RSS growth while the pipeline ran, above "
                                 "interpreter + TF + code array")))
    if train_rate is None:
        from train_bench import train_sequences_per_second

        train_rate, _ = train_sequences_per_second(train_batch_size, steps=2)
        figures.append(report(Figure("pipeline_train_step_sequences_per_second", train_rate,
                                     "seq/s", f"train step consumption, float32, batch "
                                     f"{train_batch_size}")))
    default = rates[setting_name(-1, -1)]
    figures.append(report(Figure("pipeline_over_train_step", default / train_rate, "x",
                                 "pipeline rows/s (autotune) / train step seq/s", ">= 20")))
    report_ratio(f"the pipeline delivers {default:,.0f} rows/s from {rows:,} rows, "
                 f"{default / train_rate:.0f}x what a train step consumes; worst pass-"
                 f"boundary wait {stall:.3f} s; peak memory +{above / 2**20:.0f} MiB over a "
                 f"{codes.nbytes / 2**20:.0f} MiB code array")
    return figures


def setting_name(parallel_calls: int, prefetch: int) -> str:
    text = lambda value: "autotune" if value < 0 else str(value)  # noqa: E731
    return f"parallel_{text(parallel_calls)}_prefetch_{text(prefetch)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000,
                        help="Rows of the synthetic code array the pipeline reads.")
    parser.add_argument("--batches", type=int, default=300,
                        help="Batches of 1024 timed per setting.")
    parser.add_argument("--train_sequences_per_second", type=float, default=None,
                        help="Train step consumption measured elsewhere (run_all passes the "
                             "train benchmark's); measured here when absent.")
    parser.add_argument("--train_batch_size", type=int, default=256,
                        help="Batch of the train step measured here when no rate is given.")
    args = parser.parse_args()
    run(args.rows, args.batches, args.train_sequences_per_second, args.train_batch_size)


if __name__ == "__main__":
    main()
