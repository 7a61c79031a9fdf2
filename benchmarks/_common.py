"""What every benchmark shares: the figure record, its one-line print, and the bench folder.

Every figure is a value with a unit and a one-line meaning; the scripts print one line per
figure (`name: value unit  (meaning)`) and `run_all.py` gathers them into results.json.
Absolute speeds on a shared 2-core machine are noisy, so the figures that carry targets
are ratios of two things measured side by side in the same process.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

# Quieten TensorFlow's C++ banner before any script imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_BENCH_DIR = os.path.join(tempfile.gettempdir(), "dream_keras_bench")


@dataclasses.dataclass
class Figure:
    """One measured number: `key` is its name in results.json."""

    key: str
    value: float
    unit: str
    meaning: str
    target: str = ""

    def line(self) -> str:
        value = f"{self.value:,.3g}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        target = f"  [target {self.target}]" if self.target else ""
        return f"{self.key}: {value} {self.unit}  ({self.meaning}){target}"

    def as_json(self) -> dict:
        record = {"value": self.value, "unit": self.unit, "meaning": self.meaning}
        if self.target:
            record["target"] = self.target
        return record


def fastest_train_step_seconds(model, x, y, steps: int, clock=time.perf_counter) -> float:
    """Seconds of the fastest of `steps` train steps on (x, y), after one untimed step
    that traces and compiles (a compiled model is expected). clock=time.process_time
    counts this process's CPU seconds (all threads) instead: comparisons between two
    formulations then barely move with other jobs on a shared machine."""
    model.train_on_batch(x, y)  # trace + compile
    best = float("inf")
    for _ in range(steps):
        started = clock()
        model.train_on_batch(x, y)
        best = min(best, clock() - started)
    return best


def report(figure: Figure) -> Figure:
    """Print the figure's line at once (flushed: a long benchmark shows progress)."""
    print(figure.line(), flush=True)
    return figure


def report_ratio(text: str) -> None:
    """The closing line of a benchmark: its headline ratio."""
    print(f"RATIO {text}", flush=True)


def cached_dream_file(bench_dir: str, num_rows: int, seed: int = 0) -> str:
    """A synthetic DREAM-format file of num_rows rows, written once and reused by later runs
    (the generator is deterministic, so a cached file is the file that would be written)."""
    path = os.path.join(bench_dir, f"synthetic_{num_rows}_seed{seed}.txt")
    if not os.path.exists(path):
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        # dream_keras.data never imports TensorFlow, so the data benchmarks stay light.
        from dream_keras.data import synthetic

        synthetic.write_dream_file(path, num_rows, seed=seed)
    return path
