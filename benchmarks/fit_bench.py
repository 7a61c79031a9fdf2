"""End-to-end `fit` throughput through train.py's own code path: pipeline, steps, validation.

    python benchmarks/fit_bench.py --batch_sizes=256,1024,4096 --steps=2

For one device and for 2 logical CPU replicas (MirroredStrategy; BatchNorm per replica
with XLA per replica, and synchronised BatchNorm, whose train step runs without XLA),
builds the model, optimizer and datasets with dream_keras.training's `compiled_model` and
`datasets` (what train.py runs) from a synthetic code array, fits 2 epochs of `--steps`
steps, and times the second (the first compiles). Rows/s = training rows of the epoch /
its wall time, validation (one global batch, ~0.3 % of an epoch as in the real recipe)
included. The BiLSTM share is the step time of the BiLSTM head alone over the whole
model's (one device, XLA; see step_breakdown_bench.py).

Logical CPU replicas share the same 2 cores, so on CPU they show the replication overhead,
not a speed-up. Memory: batch 4096 of the faithful model needs well over 10 GB of host
memory on CPU (XLA keeps every activation for the backward pass); pass
--batch_sizes=256,1024 on a small machine. GPU figures: unmeasured (no GPU lent).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import Figure, report, report_ratio

# (name, logical CPU devices, strategy, batchnorm_sync)
CONFIGS = (("one_device", 0, "one_device", True),
           ("two_replicas_xla", 2, "mirrored", False),
           ("two_replicas_sync_batchnorm", 2, "mirrored", True))


def _fit_rows_per_second(strategy_name: str, batch_size: int, steps: int,
                         batchnorm_sync: bool) -> tuple[float, str]:
    """(training rows/s of the second epoch, XLA mode) for one configuration."""
    import types

    import keras
    import numpy as np

    from dream_keras.distribute import make_strategy
    from dream_keras.training import compiled_model, datasets
    from dream_keras.training_config import TrainingConfig

    config = TrainingConfig(train_data="", output_dir="", batch_size=batch_size,
                            strategy=strategy_name, steps_per_epoch=steps,
                            model={"batchnorm_sync": batchnorm_sync})
    strategy = make_strategy(strategy_name)
    rng = np.random.default_rng(0)
    train_rows = batch_size * steps * 2
    rows = types.SimpleNamespace(
        train_codes=rng.integers(0, 5, (train_rows, 110), dtype=np.uint8),
        train_targets=rng.standard_normal(train_rows).astype(np.float32),
        validation_codes=rng.integers(0, 5, (batch_size, 110), dtype=np.uint8),
        validation_targets=rng.standard_normal(batch_size).astype(np.float32))
    model, xla, _ = compiled_model(config, strategy, steps)
    train_batches, validation_batches, validation_steps = datasets(config, rows, strategy)
    seconds = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(train_batches, validation_data=validation_batches, epochs=2,
              steps_per_epoch=steps, validation_steps=validation_steps,
              callbacks=[EpochTimer()], verbose=0)
    return batch_size * steps / seconds[-1], xla


def _lstm_share(batch_size: int, steps: int) -> float:
    from step_breakdown_bench import _parts, _seconds_per_step

    parts = _parts()
    return (_seconds_per_step(parts["bilstm_head"], batch_size, steps)
            / _seconds_per_step(parts["whole_model"], batch_size, steps))


def _measure(args) -> None:
    """One configuration in this process (logical devices are fixed at TF start)."""
    from dream_keras.distribute import split_cpu

    split_cpu(args.cpu_devices)
    for batch_size in args.batch_sizes:  # one line per batch: partial results survive
        rate, xla = _fit_rows_per_second(args.strategy, batch_size, args.steps,
                                         args.batchnorm_sync)
        result = {"batch_size": batch_size, "rows_per_second": rate, "xla": xla}
        if args.lstm_share:
            result["lstm_share"] = _lstm_share(batch_size, args.steps)
        print("FIT " + json.dumps(result), flush=True)


def run(batch_sizes: list[int], steps: int) -> list:
    figures, rates = [], {}
    for name, devices, strategy, batchnorm_sync in CONFIGS:
        command = [sys.executable, __file__, "--measure", f"--cpu_devices={devices}",
                   f"--strategy={strategy}", f"--steps={steps}",
                   "--batch_sizes=" + ",".join(map(str, batch_sizes)),
                   "--batchnorm_sync" if batchnorm_sync else "--nobatchnorm_sync"]
        if name == "one_device":
            command.append("--lstm_share")
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results = [json.loads(line[4:]) for line in output.splitlines()
                   if line.startswith("FIT ")]
        for result in results:
            batch_size = result["batch_size"]
            rates[name, batch_size] = result["rows_per_second"]
            figures.append(report(Figure(
                f"fit_{name}_batch{batch_size}_rows_per_second", result["rows_per_second"],
                "rows/s", f"fit, {name.replace('_', ' ')}, global batch {batch_size}, "
                f"XLA {result['xla']}, validation included, CPU")))
            if "lstm_share" in result:
                figures.append(report(Figure(
                    f"fit_lstm_share_batch{batch_size}", 100 * result["lstm_share"], "%",
                    f"BiLSTM head step time / whole model step time, batch {batch_size}")))
    largest = max(batch_sizes)
    report_ratio(f"2 logical replicas with XLA per replica run at "
                 f"{rates['two_replicas_xla', largest] / rates['one_device', largest]:.2f}x "
                 f"one device and {rates['two_replicas_xla', largest] / rates['two_replicas_sync_batchnorm', largest]:.2f}x "
                 f"synchronised BatchNorm without XLA (batch {largest}, same 2 cores)")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="256,1024,4096",
                        help="Comma list of global batch sizes.")
    parser.add_argument("--steps", type=int, default=2, help="Steps per timed epoch.")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu_devices", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="one_device", help=argparse.SUPPRESS)
    parser.add_argument("--batchnorm_sync", action=argparse.BooleanOptionalAction,
                        default=True, help=argparse.SUPPRESS)
    parser.add_argument("--nobatchnorm_sync", dest="batchnorm_sync", action="store_false",
                        help=argparse.SUPPRESS)
    parser.add_argument("--lstm_share", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.measure:
        _measure(args)
    else:
        run(args.batch_sizes, args.steps)


if __name__ == "__main__":
    main()
