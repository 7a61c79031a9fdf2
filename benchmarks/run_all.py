"""Run every benchmark with sizes that finish in a few minutes on 2 CPU cores, and write
benchmarks/results.json (one key per figure: value, unit, meaning, target) and
benchmarks/results.md (the same as a table, with date and machine).

All benchmarks run in this one process, in data-flow order, so the pipeline benchmark
divides by the train step rate measured minutes earlier on the same machine state.

    python benchmarks/run_all.py            # what `make bench` runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import distill_bench
import explain_bench
import fit_bench
import pipeline_bench
import predict_bench
import prepare_bench
import train_bench
from _common import DEFAULT_BENCH_DIR

HERE = os.path.dirname(os.path.abspath(__file__))


def machine_description() -> str:
    """CPU model and core count, e.g. 'AMD EPYC, 2 cores'."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def write_results(figures: list, settings: dict, json_path: str, markdown_path: str) -> None:
    date = datetime.date.today().isoformat()
    machine = machine_description()
    results = {"date": date, "machine": machine, "settings": settings,
               "figures": {figure.key: figure.as_json() for figure in figures}}
    with open(json_path, "w") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    lines = [f"# Benchmark results, {date}", "",
             f"Machine: {machine}. Settings: "
             + ", ".join(f"{key}={value}" for key, value in settings.items()) + ".", "",
             "| figure | value | unit | target | meaning |", "|---|---|---|---|---|"]
    for figure in figures:
        value = figure.line().split(": ", 1)[1].split(" ", 1)[0]
        lines.append(f"| {figure.key} | {value} | {figure.unit} | {figure.target} | "
                     f"{figure.meaning} |")
    with open(markdown_path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare_rows", type=int, default=1_000_000,
                        help="Rows of the file prepare converts (the target is stated at 1M).")
    parser.add_argument("--prepare_small_rows", type=int, default=200_000,
                        help="Rows of the smaller file whose peak RSS is compared (one full 200k-row prepare chunk: memory is bounded by the chunk, not the file).")
    parser.add_argument("--baseline_rows", type=int, default=100_000,
                        help="Rows encoded by the original's encoder and by ours.")
    parser.add_argument("--train_batch_size", type=int, default=512,
                        help="Train step batch (1024 is the original's; 512 keeps `make "
                             "bench` to a few minutes on 2 cores).")
    parser.add_argument("--train_steps", type=int, default=2,
                        help="Timed train steps per setting (fastest kept).")
    parser.add_argument("--pipeline_rows", type=int, default=5_000_000,
                        help="Rows of the code array the pipeline benchmark reads (the "
                             "targets are stated at 5M, the DREAM training set's size).")
    parser.add_argument("--pipeline_batches", type=int, default=300,
                        help="Batches timed per pipeline setting.")
    parser.add_argument("--fit_batch_sizes", default="256,1024",
                        help="Global batches of the end-to-end fit benchmark (add 4096 on a "
                             "machine with > 20 GB free: on CPU it held 19 GB).")
    parser.add_argument("--fit_steps", type=int, default=2,
                        help="Steps per timed fit epoch.")
    parser.add_argument("--predict_rows", type=int, default=20_000,
                        help="Sequences the prediction command reads (the 71,103 figure is "
                             "its fixed cost plus 71,103 x its per-row cost, fitted "
                             "against a one-batch run).")
    parser.add_argument("--explain_sequences", type=int, default=1000,
                        help="Sequences explained by in-silico mutagenesis (full model).")
    parser.add_argument("--explain_memory_rows", default="256,2048",
                        help="The two file sizes whose explain peak RSS is compared.")
    parser.add_argument("--distill_steps", type=int, default=40,
                        help="Steps per timed epoch of the distillation benchmark (batch 64, "
                             "the small-data recipe's).")
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR,
                        help="Where synthetic files, caches and outputs are kept.")
    args = parser.parse_args()

    figures = []
    print("== prepare", flush=True)
    figures += prepare_bench.run(args.prepare_rows, args.prepare_small_rows,
                                 args.baseline_rows, args.bench_dir)
    print("== train", flush=True)
    train_figures = train_bench.run(args.train_batch_size, args.train_steps)
    figures += train_figures
    train_rate = next(f.value for f in train_figures
                      if f.key == "train_float32_sequences_per_second")
    print("== pipeline", flush=True)
    figures += pipeline_bench.run(args.pipeline_rows, args.pipeline_batches, train_rate,
                                  args.train_batch_size)
    print("== fit (one device, 2 logical replicas)", flush=True)
    figures += fit_bench.run([int(b) for b in args.fit_batch_sizes.split(",")],
                             args.fit_steps)
    print("== distillation (pre-training vs cached-row steps)", flush=True)
    figures += distill_bench.run(6000, 64, args.distill_steps, 3, args.bench_dir)
    print("== predict", flush=True)
    figures += predict_bench.run(args.predict_rows, args.bench_dir)
    print("== explain", flush=True)
    small, large = (int(rows) for rows in args.explain_memory_rows.split(","))
    figures += explain_bench.run(args.explain_sequences, small, large, args.bench_dir)
    settings = {key: value for key, value in vars(args).items() if key != "bench_dir"}
    write_results(figures, settings, os.path.join(HERE, "results.json"),
                  os.path.join(HERE, "results.md"))
    print(f"wrote {os.path.join(HERE, 'results.json')} and results.md", flush=True)


if __name__ == "__main__":
    main()
