"""Benchmark `python -m dream_keras.cli.prepare` end to end against the original's encoder.

Why: the original notebook one-hot encoded the 6.7M training rows with a Python loop over
letters (~60k rows/s here) and held the result as a 2.9 GB bool array. `prepare` streams
the file into a uint8 HDF5 cache instead. This script times it as a user runs it (a fresh
process, from start to cache written), reports its peak memory at two file sizes (it must
not grow with the file) and compares our encoder with a faithful re-implementation of the
original's, timed on the same rows in the same run.

    python benchmarks/prepare_bench.py --rows=1000000 --small_rows=200000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

ORIGINAL_SEQ_LEN = 110

# The original's lookup table: one 4-element bool array per letter, N all False.
_ORIGINAL_ONE_HOT_OF_LETTER = {
    "A": np.array([1, 0, 0, 0], dtype=bool),
    "C": np.array([0, 1, 0, 0], dtype=bool),
    "G": np.array([0, 0, 1, 0], dtype=bool),
    "T": np.array([0, 0, 0, 1], dtype=bool),
    "N": np.array([0, 0, 0, 0], dtype=bool),
}


def original_one_hot(sequence: str) -> list:
    """The original notebook's per-sequence encoder, reproduced as the baseline to beat:
    left-pad with 'N' one letter at a time until 110 long, keep the last 110, then look up
    every letter in the dict (a list of 110 arrays of 4 bools)."""
    while len(sequence) < ORIGINAL_SEQ_LEN:
        sequence = "N" + sequence
    sequence = sequence[-ORIGINAL_SEQ_LEN:]
    return [_ORIGINAL_ONE_HOT_OF_LETTER[letter] for letter in sequence]


def original_encode(sequences: list) -> np.ndarray:
    """bool [n, 110, 4], as the original built its training array: np.asarray over lists."""
    return np.asarray([original_one_hot(sequence) for sequence in sequences])


def read_sequences(path: str, num_rows: int) -> list:
    """The first num_rows sequences of a DREAM file (plain split: the baseline's input)."""
    sequences = []
    with open(path) as handle:
        for line in handle:
            sequences.append(line.split("\t", 1)[0])
            if len(sequences) == num_rows:
                break
    return sequences


# Runs the command given as arguments and prints "seconds peak_rss_bytes". A fresh,
# small interpreter launches prepare because Linux carries a process's peak RSS across
# fork + exec: launched straight from this (TensorFlow-sized) process, the child would
# report our peak, not its own.
_MEASURING_LAUNCHER = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
seconds = time.perf_counter() - started
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(code)
"""


def time_prepare(input_path: str, output_path: str) -> tuple[float, int]:
    """(wall seconds from process start to exit, peak RSS bytes) of one prepare process."""
    command = [sys.executable, "-m", "dream_keras.cli.prepare", f"--input={input_path}",
               f"--output={output_path}", "--overwrite"]
    result = subprocess.run([sys.executable, "-c", _MEASURING_LAUNCHER, *command],
                            stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {result.returncode}")
    seconds, peak_rss = result.stdout.split()
    return float(seconds), int(peak_rss)


def best_seconds(function, repeats: int) -> float:
    """The fastest of `repeats` timed calls: the least disturbed by other users' jobs."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def run(rows: int, small_rows: int, baseline_rows: int, bench_dir: str) -> list:
    from dream_keras.data.sequences import encode, one_hot

    figures = []
    large_file = cached_dream_file(bench_dir, rows)
    small_file = cached_dream_file(bench_dir, small_rows)
    cache_path = os.path.join(bench_dir, "prepare_bench.h5")

    seconds, peak_rss = time_prepare(large_file, cache_path)
    small_seconds, small_peak_rss = time_prepare(small_file, cache_path)
    prepare_rate = rows / seconds
    figures.append(report(Figure(
        "prepare_rows_per_second", prepare_rate, "rows/s",
        f"python -m dream_keras.cli.prepare on {rows:,} rows, process start to cache written",
        ">= 300,000")))
    figures.append(report(Figure("prepare_seconds", seconds, "s",
                                 f"wall time of that prepare run ({rows:,} rows)")))
    figures.append(report(Figure("prepare_peak_rss_mib", peak_rss / 2**20, "MiB",
                                 f"peak RSS of the prepare process at {rows:,} rows",
                                 "< 1024")))
    figures.append(report(Figure("prepare_peak_rss_small_mib", small_peak_rss / 2**20, "MiB",
                                 f"peak RSS of the prepare process at {small_rows:,} rows")))
    figures.append(report(Figure(
        "prepare_peak_rss_growth", peak_rss / small_peak_rss, "x",
        f"peak RSS at {rows:,} rows / at {small_rows:,} rows (1.0 = independent of size)",
        "~1")))

    sequences = read_sequences(large_file, baseline_rows)
    original_seconds = best_seconds(lambda: original_encode(sequences), 1)
    encode_seconds = best_seconds(lambda: encode(sequences), 3)
    encode_one_hot_seconds = best_seconds(lambda: one_hot(encode(sequences), np.bool_), 3)
    original_rate = len(sequences) / original_seconds
    figures.append(report(Figure("original_encoder_rows_per_second", original_rate, "rows/s",
                                 f"the original's dict/while-loop encoder, {len(sequences):,} rows")))
    figures.append(report(Figure("encode_rows_per_second", len(sequences) / encode_seconds,
                                 "rows/s", "sequences.encode (codes, what the cache stores)")))
    figures.append(report(Figure(
        "encode_speedup_vs_original", original_seconds / encode_seconds, "x",
        "sequences.encode / the original's encoder, same rows, same run", ">= 5")))
    figures.append(report(Figure(
        "encode_one_hot_speedup_vs_original", original_seconds / encode_one_hot_seconds, "x",
        "encode + one_hot to bool [n,110,4] (the original's output) / the original's encoder")))
    figures.append(report(Figure(
        "prepare_end_to_end_speedup_vs_original_encoder", prepare_rate / original_rate, "x",
        "whole prepare process (parse, validate, encode, HDF5, sha256) / the original's "
        "encoder alone")))
    report_ratio(f"prepare end to end = {prepare_rate / original_rate:.1f}x the original's "
                 f"encoder alone; encode alone = {original_seconds / encode_seconds:.1f}x")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="Rows of the large DREAM-format file that prepare converts.")
    parser.add_argument("--small_rows", type=int, default=200_000,
                        help="Rows of the smaller file whose peak RSS is compared with the "
                             "large one's (memory must not grow with the file).")
    parser.add_argument("--baseline_rows", type=int, default=100_000,
                        help="Rows encoded by the original's encoder and by ours (the "
                             "original's takes ~1.7 s per 100k rows).")
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR,
                        help="Where the synthetic files (kept for later runs) and the cache go.")
    args = parser.parse_args()
    run(args.rows, args.small_rows, args.baseline_rows, args.bench_dir)


if __name__ == "__main__":
    main()
