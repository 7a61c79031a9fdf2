"""Benchmark training speed: model FLOP/s as a fraction of this machine's matmul FLOP/s.

Why a fraction: sequences/s on a shared CPU swings with other users' jobs, but the ratio of
the model's FLOP/s to a large float32 matmul's, both measured in this process minutes
apart, says how well the model uses the hardware whatever machine runs it. Also measured:
XLA (jit_compile) on vs off, and the faithful swish LSTM vs a tanh LSTM. On a GPU, a tanh
LSTM is cuDNN-eligible, and Keras then marks the model as not XLA-compilable and silently
turns XLA off for the WHOLE model: cuDNN and XLA never run together. On CPU both
activations run the generic loop.
FLOPs are counted by dream_keras.flops (convention in its docstring: training = 3 x
forward, multiply-add = 2).

    python benchmarks/train_bench.py --batch_size=1024 --steps=3
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import Figure, fastest_train_step_seconds, report, report_ratio

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
MATMUL_SIZE = 4096


def matmul_flops_per_second(size: int = MATMUL_SIZE, repeats: int = 5,
                            clock=time.perf_counter) -> float:
    """Best FLOP/s of a float32 [size, size] x [size, size] matmul: the machine's practical
    peak, against which the model's FLOP/s is read. With clock=time.process_time: FLOP per
    CPU-second of this process (all its threads), which other jobs on the machine barely
    change."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product().numpy()
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        product().numpy()
        best = min(best, clock() - started)
    return 2 * size**3 / best


def train_sequences_per_second(batch_size: int, steps: int, *, policy: str = "float32",
                               jit_compile: bool = True, lstm_activation: str = "swish",
                               ) -> tuple[float, int]:
    """(sequences/s of `steps` timed train steps, training FLOPs per sample) for one setting.

    The model is compiled as training.train compiles it (RMSprop, MSE); the first step
    (tracing and XLA compilation) is excluded. Inputs are random one-hot-shaped tensors
    already in memory, so this is the model's consumption, not the data pipeline's.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from dream_keras import flops
    from dream_keras.model import build_model

    keras.backend.clear_session()
    # One model per setting re-traces Keras' step function; that warning is expected here.
    tf.get_logger().setLevel("ERROR")
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(lstm_activation=lstm_activation)
        model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="mse",
                      jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)  # as training.compiled_model
        rng = np.random.default_rng(0)
        codes = rng.integers(0, 4, size=(batch_size, model.inputs[0].shape[1]))
        x = np.eye(4, dtype=np.float32)[codes]
        y = rng.standard_normal((batch_size, 1)).astype(np.float32)
        best = fastest_train_step_seconds(model, x, y, steps)
        return batch_size / best, flops.training_flops_per_sample(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def run(batch_size: int, steps: int) -> list:
    figures = []
    peak_before = matmul_flops_per_second()
    rates, flops_per_sample = {}, 0
    for policy in POLICIES:
        rates[policy], flops_per_sample = train_sequences_per_second(batch_size, steps,
                                                                     policy=policy)
        figures.append(report(Figure(f"train_{policy}_sequences_per_second", rates[policy],
                                     "seq/s", f"train step, {policy}, jit_compile, batch "
                                     f"{batch_size}")))
    # The machine is shared and its speed swings: the best of a matmul before and after
    # the train steps is the peak they are read against.
    peak = max(peak_before, matmul_flops_per_second())
    figures.append(report(Figure("matmul_fp32_gflops", peak / 1e9, "GFLOP/s",
                                 f"float32 {MATMUL_SIZE}x{MATMUL_SIZE} matmul, best of 5, "
                                 "before and after the train steps")))
    for policy in POLICIES:
        figures.append(report(Figure(
            f"train_{policy}_flops_fraction_of_matmul",
            rates[policy] * flops_per_sample / peak, "",
            f"model training FLOP/s ({flops_per_sample / 1e6:.0f} MFLOP/sample) / fp32 "
            f"matmul FLOP/s, {policy}", ">= 0.5" if policy == "float32" else "")))
    no_jit, _ = train_sequences_per_second(batch_size, steps, jit_compile=False)
    figures.append(report(Figure("train_float32_no_jit_sequences_per_second", no_jit, "seq/s",
                                 f"train step, float32, jit_compile off, batch {batch_size}")))
    figures.append(report(Figure("train_jit_speedup", rates["float32"] / no_jit, "x",
                                 "train seq/s with jit_compile on / off (float32)")))
    tanh, _ = train_sequences_per_second(batch_size, steps, lstm_activation="tanh")
    figures.append(report(Figure("train_tanh_lstm_sequences_per_second", tanh, "seq/s",
                                 "train step, float32, jit, LSTM activation tanh")))
    figures.append(report(Figure("train_swish_over_tanh_lstm_cost", tanh / rates["float32"],
                                 "x", "tanh-LSTM seq/s / swish-LSTM seq/s on this CPU "
                                 "(>1: swish costs that factor)")))
    fraction = rates["float32"] * flops_per_sample / peak
    report_ratio(f"float32 training runs at {fraction:.2f} of the fp32 matmul FLOP/s "
                 f"({rates['float32']:.0f} seq/s at batch {batch_size})")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=1024,
                        help="Sequences per train step (the original's 1024 by default).")
    parser.add_argument("--steps", type=int, default=3,
                        help="Timed steps per setting after one untimed compile step; the "
                             "fastest is kept (least disturbed by other jobs).")
    args = parser.parse_args()
    run(args.batch_size, args.steps)


if __name__ == "__main__":
    main()
