"""fit throughput of this checkout against another checkout of dream_keras, side by side.

    python benchmarks/fit_compare.py --baseline_tree=/path/to/other/checkout --rounds=2

Runs fit_bench.py's own measurement (`--measure`: train.py's compiled_model and datasets,
2 epochs of --steps steps, the second timed, validation included) for one device and for
2 logical CPU replicas with XLA per replica, alternating the two trees in every round so
that a busy machine slows both alike, and prints each tree's median rows/s and their ratio
(this checkout / baseline). The baseline tree must hold a benchmarks/fit_bench.py with the
same `--measure` interface (release 0.1.0's does).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CURRENT_TREE = os.path.dirname(HERE)
# (name, logical CPU devices, strategy)
CONFIGS = (("one_device", 0, "one_device"), ("two_replicas_xla", 2, "mirrored"))


def measure(tree: str, devices: int, strategy: str, batch_size: int, steps: int) -> float:
    """Training rows/s of fit_bench's timed epoch, run from `tree` with its own package."""
    command = [sys.executable, os.path.join(tree, "benchmarks", "fit_bench.py"), "--measure",
               f"--cpu_devices={devices}", f"--strategy={strategy}", f"--steps={steps}",
               f"--batch_sizes={batch_size}", "--nobatchnorm_sync"]
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tree,
                            env=env).stdout
    results = [json.loads(line[4:]) for line in output.splitlines() if line.startswith("FIT ")]
    return float(results[0]["rows_per_second"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline_tree", required=True,
                        help="Another checkout of dream_keras (e.g. `git worktree add`).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    trees = {"baseline": os.path.abspath(args.baseline_tree), "current": CURRENT_TREE}
    rates = {(name, tree): [] for name, _, _ in CONFIGS for tree in trees}
    for round_index in range(args.rounds):
        for name, devices, strategy in CONFIGS:
            order = list(trees) if round_index % 2 == 0 else list(trees)[::-1]
            for tree in order:
                rate = measure(trees[tree], devices, strategy, args.batch_size, args.steps)
                rates[name, tree].append(rate)
                print(f"round {round_index + 1} {name} {tree}: {rate:.1f} rows/s", flush=True)
    for name, _, _ in CONFIGS:
        baseline = statistics.median(rates[name, "baseline"])
        current = statistics.median(rates[name, "current"])
        print(f"{name}, batch {args.batch_size}: current {current:.1f} rows/s, baseline "
              f"{baseline:.1f} rows/s, ratio {current / baseline:.2f}")


if __name__ == "__main__":
    main()
