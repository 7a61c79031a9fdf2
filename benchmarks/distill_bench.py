"""Pre-training steps (generated sequences + ridge-teacher labels) against steps on cached
rows, side by side in one process, through train.py's own code path.

    python benchmarks/distill_bench.py --rows=6000 --batch_size=64 --steps=40 --repeats=3 \
        [--teacher=ridge,RUN/model.keras]

Builds one model with dream_keras.training's `compiled_model`, the cached-row stream with
`datasets` and the pre-training stream with phases.PhaseInputs (design inferred from the
rows, k-mer ridge fitted on the training rows: its fitting time is reported apart, it is
paid once per run), then alternates timed `fit` epochs of `--steps` steps on each stream
(after one untimed epoch each, which traces and compiles) and keeps the fastest of each.
Wall time is what a user waits; CPU time (this process, all threads) also counts the
generator's and teacher's work on other cores and barely moves with other jobs.
Target: pre-training runs at >= 0.9 of the cached-row step rate. --teacher takes
train.py's values: a model teacher (a trained run, an ensemble file) adds its forward
pass, on the input pipeline's CPU threads, to every pre-training step.
"""
from __future__ import annotations

import argparse
import os
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import DEFAULT_BENCH_DIR, Figure, cached_dream_file, report, report_ratio


def _epoch_seconds(model, dataset, steps):
    """(wall, CPU) seconds of one fit epoch of `steps` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def run(rows: int, batch_size: int, steps: int, repeats: int, bench_dir: str,
        teacher: str = "ridge") -> list:
    from dream_keras.data.training_data import load_training_rows
    from dream_keras.distribute import make_strategy
    from dream_keras.model import MODEL_DEFAULTS
    from dream_keras.phases import PhaseInputs, plan_phases
    from dream_keras.training import compiled_model, datasets
    from dream_keras.training_config import TrainingConfig

    os.makedirs(bench_dir, exist_ok=True)
    source = cached_dream_file(bench_dir, rows)
    config = TrainingConfig(
        train_data=source, cache_path=os.path.join(bench_dir, f"distill_{rows}.h5"),
        output_dir=os.path.join(bench_dir, "distill_run"), batch_size=batch_size,
        optimizer="rmsprop", learning_rate=3e-4, clipnorm=1.0, singleton_keep_prob=1.0,
        validation_fraction=0.1, teacher=teacher, pretrain_epochs=1,
        pretrain_steps_per_epoch=steps, epochs=1, steps_per_epoch=steps)
    training_rows = load_training_rows(config, MODEL_DEFAULTS["seq_len"])
    phases = plan_phases(config, steps)
    started = time.perf_counter()
    inputs = PhaseInputs(config, training_rows, phases, resumed_epoch=0)
    fit_seconds = time.perf_counter() - started
    strategy = make_strategy("one_device")
    model, _, _ = compiled_model(config, strategy, steps)
    cached, _, _ = datasets(config, training_rows, strategy, 0, phase=phases[1],
                            inputs=inputs)
    generated, _, _ = datasets(config, training_rows, strategy, 0, phase=phases[0],
                               inputs=inputs)
    best = {"cached": [float("inf")] * 2, "generated": [float("inf")] * 2}
    for name, dataset in (("cached", cached), ("generated", generated)):
        _epoch_seconds(model, dataset, steps)  # trace, compile, fill the prefetch
    for _ in range(repeats):
        for name, dataset in (("cached", cached), ("generated", generated)):
            seconds = _epoch_seconds(model, dataset, steps)
            best[name] = [min(a, b) for a, b in zip(best[name], seconds)]
    wall_ratio = best["cached"][0] / best["generated"][0]
    cpu_ratio = best["cached"][1] / best["generated"][1]
    ridge = inputs.teachers.ridge
    fitted = f"ridge fit on {len(training_rows.train_codes):,} training rows (chosen " \
             f"k={ridge.ridge.k})" if ridge else "no ridge"
    figures = [
        report(Figure("distill_cached_steps_per_second", steps / best["cached"][0],
                      "steps/s", f"fit steps on cached rows (batch {batch_size}, XLA)")),
        report(Figure("distill_generated_steps_per_second", steps / best["generated"][0],
                      "steps/s", f"fit steps on generated sequences + {teacher} labels")),
        report(Figure("distill_step_rate_ratio", wall_ratio, "x",
                      "pre-training step rate / cached-row step rate (wall)", ">= 0.9")),
        report(Figure("distill_step_rate_ratio_cpu", cpu_ratio, "x",
                      "the same per CPU-second of this process (generator and teacher "
                      "work on other threads included)")),
        report(Figure("distill_teacher_setup_seconds", fit_seconds, "s",
                      f"design inference + {fitted} + teacher models loaded, once per run")),
    ]
    report_ratio(f"pre-training / cached-row steps: {wall_ratio:.2f} wall, "
                 f"{cpu_ratio:.2f} CPU")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bench_dir", default=DEFAULT_BENCH_DIR)
    parser.add_argument("--teacher", default="ridge",
                        help="as train.py's --teacher: ridge and/or model.keras paths")
    args = parser.parse_args()
    run(args.rows, args.batch_size, args.steps, args.repeats, args.bench_dir, args.teacher)


if __name__ == "__main__":
    main()
