"""Benchmark in-silico mutagenesis (dream-explain's path) against the bare compiled forward.

Why: ISM of a sequence is 3 x 110 mutants + the reference through the model; the mutant
generation, un-scaling and HDF5/TSV writing must not make it much slower than scoring
the same mutants. In one process, alternating in rounds (the shared machine's load
swings), it times `explain_file(methods=ism)` on a file of sequences (read, encode, build
mutants, score, write attributions.h5 and attributions.tsv) and the bare compiled forward
(the very tf.function predict.py uses, batch 256) called back to back on those rounds'
mutant and reference codes, already in memory. The ratio is bare time / ISM time.
Memory: fresh interpreters explain a small and an 8x larger file (a narrow model, since
memory per piece does not depend on the model's width) and report their peak RSS: the
pipeline holds one piece of 64 sequences at a time, so the two peaks must match.

    python benchmarks/explain_bench.py                  # 1,000 sequences, full model
    python benchmarks/explain_bench.py --sequences=200  # quicker
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 5
# A narrow model for the memory runs (their peak RSS does not depend on the width; their
# time does).
_NARROW = dict(conv_filters=16, conv_out_filters=8, key_size=8, value_size=8,
               conv_kernel_sizes=(3, 5), num_transformer_blocks=1)
_MEMORY_SCRIPT = r"""
import os, resource, sys, time
sys.path.insert(0, {repo!r})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from dream_keras.data.splits import TargetScaler
from dream_keras.model import build_model
from dream_keras.explain.files import explain_file
model = build_model(**{narrow!r})
started = time.perf_counter()
rows = explain_file(model, TargetScaler(11.0, 2.5), {input!r}, {output!r}, methods=("ism",),
                    overwrite=True)["rows"]
print(rows, time.perf_counter() - started,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _head(path: str, rows: int, out_path: str) -> str:
    with open(path) as source, open(out_path, "w") as out:
        for _, line in zip(range(rows), source):
            out.write(line)
    return out_path


def _bare_seconds(forward, codes, batch: int) -> float:
    """Seconds of the compiled forward over `codes` [m, L] in full batches (last padded)."""
    import numpy as np

    started = time.perf_counter()
    for start in range(0, len(codes), batch):
        piece = codes[start:start + batch]
        if len(piece) < batch:
            piece = np.concatenate([piece, np.full((batch - len(piece), codes.shape[1]), 4,
                                                   np.uint8)])
        forward(piece).numpy()
    return time.perf_counter() - started


def ism_speed(sequences: int, bench_dir: str, batch: int = 256) -> list:
    import numpy as np

    from dream_keras.data.sequences import encode
    from dream_keras.data.splits import TargetScaler
    from dream_keras.explain.files import explain_file
    from dream_keras.explain.model_access import compiled_forward
    from dream_keras.explain.mutagenesis import mutant_codes
    from dream_keras.model import build_model

    model, scaler = build_model(), TargetScaler(11.0, 2.5)
    source = cached_dream_file(bench_dir, max(sequences, 1000))
    per_round = -(-sequences // ROUNDS)
    with open(source) as handle:
        lines = [next(handle) for _ in range(sequences)]
    forward = compiled_forward(model, batch)
    forward(np.zeros((batch, 110), np.uint8)).numpy()  # compile once, shared by both paths
    ism_seconds = bare_seconds = 0.0
    mutant_rows = 0
    for index in range(ROUNDS):
        chunk = lines[index * per_round:(index + 1) * per_round]
        if not chunk:
            break
        path = os.path.join(bench_dir, f"explain_round{index}.txt")
        with open(path, "w") as out:
            out.writelines(chunk)
        out_dir = os.path.join(bench_dir, "explain_out")
        shutil.rmtree(out_dir, ignore_errors=True)
        started = time.perf_counter()
        explain_file(model, scaler, path, out_dir, methods=("ism",), batch_size=batch)
        ism_seconds += time.perf_counter() - started
        strings = [line.split("\t")[0] for line in chunk]
        codes = encode(strings, 110)
        # The same rows ISM scores, in pieces of 64 sequences as explain_file makes them.
        for start in range(0, len(codes), 64):
            mutants = mutant_codes(codes[start:start + 64], None)[0]
            rows = np.concatenate([codes[start:start + 64], mutants])
            bare_seconds += _bare_seconds(forward, rows, batch)
            mutant_rows += len(rows)
        print(f"round {index}: ISM {ism_seconds:.1f} s, bare {bare_seconds:.1f} s so far",
              flush=True)
    ratio = bare_seconds / ism_seconds
    figures = [
        report(Figure("explain_ism_sequences_per_second", sequences / ism_seconds, "seq/s",
                      f"sequences explained by ISM per second, {sequences} sequences, full "
                      "model, HDF5 + TSV written")),
        report(Figure("explain_ism_rows_per_second", mutant_rows / ism_seconds, "rows/s",
                      "reference + mutant rows scored per second by the ISM path")),
        report(Figure("explain_bare_forward_rows_per_second", mutant_rows / bare_seconds,
                      "rows/s", "the same rows through the bare compiled forward")),
        report(Figure("explain_ism_vs_bare_forward", ratio, "x",
                      "ISM path speed / bare compiled forward speed, same rows, same run",
                      target=">= 0.8")),
    ]
    report_ratio(f"ISM keeps {ratio:.2f} of the bare forward's speed")
    return figures


def _peak(input_path: str, out_dir: str) -> tuple[int, float, int]:
    script = _MEMORY_SCRIPT.format(repo=REPO, narrow=_NARROW, input=input_path, output=out_dir)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    rows, seconds, peak = result.stdout.split()[-3:]
    return int(rows), float(seconds), int(peak)


def memory(small: int, large: int, bench_dir: str) -> list:
    source = cached_dream_file(bench_dir, max(large, 1000))
    figures = []
    peaks = {}
    for rows in (small, large):
        path = _head(source, rows, os.path.join(bench_dir, f"explain_memory_{rows}.txt"))
        count, seconds, peak = _peak(path, os.path.join(bench_dir, f"explain_memory_out{rows}"))
        peaks[rows] = peak
        figures.append(report(Figure(
            f"explain_peak_rss_{rows}_sequences", peak / 2**20, "MiB",
            f"peak RSS of a process explaining {count} sequences by ISM (narrow model, "
            f"{seconds:.0f} s)")))
    growth = (peaks[large] - peaks[small]) / 2**20
    figures.append(report(Figure(
        "explain_peak_rss_growth", growth, "MiB",
        f"peak RSS at {large} minus at {small} sequences (streamed: ~0 means 100,000 "
        "sequences need the same memory)", target="~0")))
    return figures


def run(sequences: int, memory_small: int, memory_large: int, bench_dir: str) -> list:
    os.makedirs(bench_dir, exist_ok=True)
    return memory(memory_small, memory_large, bench_dir) + ism_speed(sequences, bench_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=1000, help="Sequences ISM explains.")
    parser.add_argument("--memory_small", type=int, default=256)
    parser.add_argument("--memory_large", type=int, default=2048)
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR)
    args = parser.parse_args()
    run(args.sequences, args.memory_small, args.memory_large, args.bench_dir)


if __name__ == "__main__":
    main()
