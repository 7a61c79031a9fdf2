"""Benchmark the k-mer ridge fit's memory: rows counted a chunk at a time against all at once.

Why: `evaluate.py --baseline_train_data` and `--teacher=ridge` fit the ridge on a run's
training rows, which are 6.7M for the DREAM challenge. Counting every row's k-mers at once
took about 6 KB per row (index arrays and sparse counts; measured here between 50,000 and
200,000 rows: ~40 GB at 6.7M rows, extrapolated); the fit now counts `DEFAULT_FIT_CHUNK_ROWS` rows at a time (twice per k in the primal form), so
its memory is X'X and one chunk. This script fits the default grid (k 3-6, 11 penalties)
on the same synthetic rows both ways in one run, and at a second size to show that the
chunked fit's memory does not grow with the rows. Memory is the peak that tracemalloc
sees during the fit (NumPy and SciPy arrays; the input strings excluded).

    python benchmarks/ridge_bench.py --rows=200000 --small_rows=50000
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

MIB = 2 ** 20


def read_rows(path: str, num_rows: int):
    sequences, values = [], []
    with open(path) as handle:
        for line in handle:
            sequence, value = line.rstrip("\n").split("\t")
            sequences.append(sequence)
            values.append(float(value))
            if len(sequences) == num_rows:
                break
    return sequences, np.asarray(values)


def measured_fit(sequences, targets, chunk_rows: int):
    """(peak MiB above the start, seconds, fitted ridge) of one fit."""
    from dream_keras.baseline import fit_kmer_ridge

    tracemalloc.start()
    started = time.perf_counter()
    ridge = fit_kmer_ridge(sequences, targets, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / MIB, seconds, ridge


def main(argv=None) -> list:
    from dream_keras.baseline import DEFAULT_FIT_CHUNK_ROWS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--small_rows", type=int, default=50_000)
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR)
    args = parser.parse_args(argv)
    path = cached_dream_file(args.bench_dir, args.rows)
    sequences, targets = read_rows(path, args.rows)
    chunked_mib, chunked_s, chunked = measured_fit(sequences, targets, DEFAULT_FIT_CHUNK_ROWS)
    whole_mib, whole_s, whole = measured_fit(sequences, targets, len(sequences))
    small_mib, _, _ = measured_fit(sequences[:args.small_rows], targets[:args.small_rows],
                                   DEFAULT_FIT_CHUNK_ROWS)
    same = chunked.k == whole.k and chunked.penalty == whole.penalty and np.allclose(
        chunked.coef, whole.coef, rtol=1e-9, atol=1e-12)
    figures = [
        report(Figure("ridge_fit_peak_mib_chunked", chunked_mib, "MiB",
                      f"fit on {args.rows:,} rows, {DEFAULT_FIT_CHUNK_ROWS:,} counted at once")),
        report(Figure("ridge_fit_peak_mib_all_at_once", whole_mib, "MiB",
                      f"the same fit counting all {args.rows:,} rows at once")),
        report(Figure("ridge_fit_peak_mib_small", small_mib, "MiB",
                      f"fit on {args.small_rows:,} rows, {DEFAULT_FIT_CHUNK_ROWS:,} at once")),
        report(Figure("ridge_fit_memory_growth", chunked_mib / small_mib, "x",
                      f"peak at {args.rows:,} rows / at {args.small_rows:,} "
                      f"({args.rows / args.small_rows:.0f}x the rows)", "~1")),
        report(Figure("ridge_fit_seconds_ratio", chunked_s / whole_s, "x",
                      f"chunked fit time / all at once ({chunked_s:.1f} s / {whole_s:.1f} s; "
                      "the primal form counts twice)")),
        report(Figure("ridge_fit_same_result", float(same), "bool",
                      "same k, penalty and coefficients (to 1e-9) both ways", "1")),
    ]
    report_ratio(f"ridge fit peak memory, all at once / chunked: {whole_mib / chunked_mib:.1f}x "
                 f"at {args.rows:,} rows; growth {chunked_mib / small_mib:.2f}x for "
                 f"{args.rows / args.small_rows:.0f}x the rows")
    return figures


if __name__ == "__main__":
    main()
