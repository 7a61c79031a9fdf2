"""Where a training step's time goes: the model's three parts trained alone, side by side.

    python benchmarks/step_breakdown_bench.py --batch_size=512 --steps=3

Builds the conv tower, the two transformer blocks and the BiLSTM head as separate Keras
models with the faithful layers and sizes, times an XLA-compiled RMSprop/MSE train step and
forward pass of each (and of the whole model) at the same batch in CPU seconds of this
process (robust to other jobs on a shared machine, unlike wall time), and prints each
part's share of the time next to its share of the FLOPs. A part whose time share far exceeds its FLOP share is
latency- or memory-bound: that is what keeps training below the matmul's FLOP/s.

The attention layer alone is also timed (XLA forward and train step) in two formulations
with the same weights and maths, side by side: the layer's own (position logits from r
gathered by distance, [B, H, T, T]) and the previous Transformer-XL one ([B, H, T, 2T-1]
logits, then pad/reshape/slice relative shift), so the change's effect is a same-run ratio.
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from _common import Figure, fastest_train_step_seconds, report, report_ratio


def _shifted_attention_class():
    """RelativeMultiHeadAttention computing its position logits the previous way."""
    from keras import ops

    from dream_keras.layers import RelativeMultiHeadAttention
    from dream_keras.positional import relative_shift

    class ShiftedRelativeAttention(RelativeMultiHeadAttention):
        def _relative_logits(self, queries, r):
            return relative_shift(ops.einsum("bhik,jhk->bhij", queries, r))

    return ShiftedRelativeAttention


def _attention_models():
    """{formulation: a Keras model holding one faithful attention layer}, equal weights."""
    import keras

    from dream_keras.layers import RelativeMultiHeadAttention
    from dream_keras.model import MODEL_DEFAULTS

    seq_len, width = MODEL_DEFAULTS["seq_len"], MODEL_DEFAULTS["conv_out_filters"]
    models = {}
    for name, layer_class in (("attention_gathered", RelativeMultiHeadAttention),
                              ("attention_shifted", _shifted_attention_class())):
        inputs = keras.Input((seq_len, width))
        layer = layer_class(num_heads=1, key_size=96, value_size=96, zero_initialize=False,
                            kernel_initializer=keras.initializers.RandomNormal(seed=1))
        pooled = keras.layers.GlobalAveragePooling1D()(layer(inputs))
        models[name] = keras.Model(inputs, keras.layers.Dense(1)(pooled), name=name)
    models["attention_shifted"].set_weights(models["attention_gathered"].get_weights())
    return models


def _forward_seconds(model, batch_size: int, steps: int, clock=time.perf_counter) -> float:
    """Fastest XLA forward pass of `steps` (after one that compiles), by `clock`."""
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(0).standard_normal(
        (batch_size, *model.inputs[0].shape[1:])).astype(np.float32)
    forward = tf.function(lambda batch: model(batch, training=False), jit_compile=True)
    forward(x).numpy()
    best = float("inf")
    for _ in range(steps):
        started = clock()
        forward(x).numpy()
        best = min(best, clock() - started)
    return best


def attention_figures(batch_size: int, steps: int) -> list:
    """The attention layer's forward and train-step time in both formulations."""
    import numpy as np

    models = _attention_models()
    x = np.random.default_rng(2).standard_normal((4, 110, 96)).astype(np.float32)
    difference = float(np.abs(models["attention_gathered"].predict_on_batch(x)
                              - models["attention_shifted"].predict_on_batch(x)).max())
    figures, forward, step = [], {}, {}
    # CPU seconds of this process (both cores' time), alternating the two formulations:
    # wall time on a shared machine swings by 2x between calls, CPU time by a few %.
    for name in list(models) * 2:
        model = models[name]
        forward[name] = min(forward.get(name, float("inf")), _forward_seconds(
            model, batch_size, steps, clock=time.process_time))
        step[name] = min(step.get(name, float("inf")), _seconds_per_step(
            model, batch_size, steps, clock=time.process_time))
    for name in models:
        figures.append(report(Figure(f"{name}_forward_cpu_ms", 1000 * forward[name], "ms",
                                     f"XLA forward of one attention layer, batch {batch_size},"
                                     " CPU time of both cores")))
        figures.append(report(Figure(f"{name}_step_cpu_ms", 1000 * step[name], "ms",
                                     f"XLA train step of one attention layer, batch "
                                     f"{batch_size}, CPU time of both cores")))
    figures.append(report(Figure(
        "attention_gathered_over_shifted_forward",
        forward["attention_gathered"] / forward["attention_shifted"], "x",
        f"attention forward time, gathered / shifted position logits (outputs differ by "
        f"{difference:.1e})")))
    figures.append(report(Figure(
        "attention_gathered_over_shifted_step",
        step["attention_gathered"] / step["attention_shifted"], "x",
        "attention train-step time, gathered / shifted position logits")))
    return figures


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


def _seconds_per_step(model, batch_size: int, steps: int, clock=time.perf_counter) -> float:
    import keras
    import numpy as np

    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="mse", jit_compile=True)
    model.optimizer.build(model.trainable_variables)  # as training.compiled_model
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *model.inputs[0].shape[1:])).astype(np.float32)
    y = rng.standard_normal((batch_size, 1)).astype(np.float32)
    return fastest_train_step_seconds(model, x, y, steps, clock=clock)


def run(batch_size: int, steps: int) -> list:
    from dream_keras import flops
    from train_bench import matmul_flops_per_second

    figures = attention_figures(batch_size, steps)
    seconds, flop_counts = {}, {}
    # CPU seconds of this process (both cores' time): shares of a step stay comparable
    # when other jobs slow the shared machine down between one part and the next.
    models, part_forward = _parts(), {}
    for name, model in models.items():
        seconds[name] = _seconds_per_step(model, batch_size, steps, clock=time.process_time)
        flop_counts[name] = flops.training_flops_per_sample(model)
        figures.append(report(Figure(f"step_{name}_cpu_ms", 1000 * seconds[name], "ms",
                                     f"XLA train step of the {name} alone, batch {batch_size},"
                                     " CPU time of both cores")))
        forward_seconds = _forward_seconds(model, batch_size, steps, clock=time.process_time)
        part_forward[name] = forward_seconds
        figures.append(report(Figure(
            f"forward_{name}_cpu_ms", 1000 * forward_seconds, "ms",
            f"XLA forward of the {name} alone, batch {batch_size}, CPU time "
            f"({flops.forward_flops_per_sample(model) / 1e6:.1f} MFLOP/sample: "
            f"{flops.forward_flops_per_sample(model) * batch_size / forward_seconds / 1e9:.0f}"
            " GFLOP per CPU-second)")))
    # The whole model against a matmul, both per CPU-second of this process, same run.
    peak = matmul_flops_per_second(clock=time.process_time)
    whole = part_forward["whole_model"]
    for label, flop, secs in (
            ("forward", flops.forward_flops_per_sample(models["whole_model"]), whole),
            ("train_step", flop_counts["whole_model"], seconds["whole_model"])):
        figures.append(report(Figure(
            f"whole_model_{label}_flops_per_cpu_second_fraction_of_matmul",
            flop * batch_size / secs / peak, "",
            f"whole model {label} FLOP per CPU-second / float32 4096^2 matmul's "
            f"({peak / 1e9:.0f} GFLOP per CPU-second), batch {batch_size}")))
    parts = [n for n in seconds if n != "whole_model"]
    total_time, total_flops = sum(seconds[n] for n in parts), sum(flop_counts[n] for n in parts)
    for name in parts:
        figures.append(report(Figure(
            f"step_{name}_time_over_flop_share", (seconds[name] / total_time)
            / max(flop_counts[name] / total_flops, 1e-12), "x",
            f"{name}: share of the parts' step time / share of their FLOPs "
            f"({100 * seconds[name] / total_time:.0f} % of time, "
            f"{100 * flop_counts[name] / total_flops:.1f} % of FLOPs)")))
    attention = {f.key: f.value for f in figures}
    report_ratio(f"attention forward {attention['attention_gathered_over_shifted_forward']:.2f}x"
                 f", train step {attention['attention_gathered_over_shifted_step']:.2f}x the "
                 "shift formulation's time; "
                 f"the parts alone take {total_time / seconds['whole_model']:.2f}x the whole "
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
