"""Where a training step's time goes: the model's three parts trained alone, side by side.

    python benchmarks/step_breakdown_bench.py --batch_size=512 --steps=3

Builds the conv tower, the two transformer blocks and the BiLSTM head as separate Keras
models with the faithful layers and sizes, times an XLA-compiled RMSprop/MSE train step of
each (and of the whole model) at the same batch, and prints each part's share of the time
next to its share of the FLOPs. A part whose time share far exceeds its FLOP share is
latency- or memory-bound: that is what keeps training below the matmul's FLOP/s.
"""
from __future__ import annotations

import argparse

from _common import Figure, fastest_train_step_seconds, report, report_ratio


def _parts():
    import keras

    from dream_keras.layers import MultiScaleConv, TransformerBlock
    from dream_keras.model import MODEL_DEFAULTS, build_model

    seq_len, width = MODEL_DEFAULTS["seq_len"], MODEL_DEFAULTS["conv_out_filters"]

    def chain(name, input_channels, layers):
        inputs = keras.Input((seq_len, input_channels))
        x = inputs
        for layer in layers:
            x = layer(x)
        pooled = keras.layers.GlobalAveragePooling1D()(x) if len(x.shape) == 3 else x
        return keras.Model(inputs, keras.layers.Dense(1)(pooled), name=name)

    return {
        "conv_tower": chain("conv_tower", 4, [MultiScaleConv(
            filters=192, out_filters=width, kernel_sizes=(15, 20, 25, 30))]),
        "transformer_blocks": chain("transformer_blocks", width, [
            TransformerBlock(num_heads=1, key_size=96, value_size=96) for _ in range(2)]),
        "bilstm_head": chain("bilstm_head", width, [keras.layers.Bidirectional(
            keras.layers.LSTM(4, activation="swish", kernel_initializer="he_normal"))]),
        "whole_model": build_model(),
    }


def _seconds_per_step(model, batch_size: int, steps: int) -> float:
    import keras
    import numpy as np

    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *model.inputs[0].shape[1:])).astype(np.float32)
    y = rng.standard_normal((batch_size, 1)).astype(np.float32)
    return fastest_train_step_seconds(model, x, y, steps)


def run(batch_size: int, steps: int) -> list:
    from dream_keras import flops

    figures = []
    seconds, flop_counts = {}, {}
    for name, model in _parts().items():
        seconds[name] = _seconds_per_step(model, batch_size, steps)
        flop_counts[name] = flops.training_flops_per_sample(model)
        figures.append(report(Figure(f"step_{name}_ms", 1000 * seconds[name], "ms",
                                     f"XLA train step of the {name} alone, batch {batch_size}")))
    parts = [n for n in seconds if n != "whole_model"]
    total_time, total_flops = sum(seconds[n] for n in parts), sum(flop_counts[n] for n in parts)
    for name in parts:
        figures.append(report(Figure(
            f"step_{name}_time_over_flop_share", (seconds[name] / total_time)
            / max(flop_counts[name] / total_flops, 1e-12), "x",
            f"{name}: share of the parts' step time / share of their FLOPs "
            f"({100 * seconds[name] / total_time:.0f} % of time, "
            f"{100 * flop_counts[name] / total_flops:.1f} % of FLOPs)")))
    report_ratio(f"the parts alone take {total_time / seconds['whole_model']:.2f}x the whole "
                 "model's step; the BiLSTM head takes "
                 f"{100 * seconds['bilstm_head'] / total_time:.0f} % of the parts' time for "
                 f"{100 * flop_counts['bilstm_head'] / total_flops:.1f} % of their FLOPs")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=512, help="Sequences per step.")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps (best is kept).")
    args = parser.parse_args()
    run(args.batch_size, args.steps)


if __name__ == "__main__":
    main()
