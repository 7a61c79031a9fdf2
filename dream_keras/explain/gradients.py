"""Gradient attributions: gradient x input and integrated gradients, batched under XLA.

Both are on the training data's scale (the standardised model output's gradient times the
target scaler's std). The gradient runs as one tf.function of fixed batch shape per model
(XLA-compiled by default, traced once and cached like the scoring forward), on one-hot
float32 inputs, so interpolated integrated-gradients inputs and padded batches never
retrace. With both strands, each strand's attributions are computed on its own window and
the reverse strand's are mapped base for base onto the forward window (`strands.py`) and
the two averaged, as the averaged prediction is.
"""
from __future__ import annotations

import functools
import weakref

import numpy as np
import tensorflow as tf

from dream_keras.data.sequences import one_hot
from dream_keras.explain.model_access import (DEFAULT_BATCH_SIZE, model_seq_len,
                                              padded_batch_size, scoring_model,
                                              WeakModel)
from dream_keras.explain.strands import onto_forward, reverse_positions
from dream_keras.strand_layers import averages_both_strands

BASELINES = ("uniform", "zeros")
DEFAULT_BASELINE = "zeros"
DEFAULT_STEPS = 100
_GRADIENTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def gradient_function(model, batch_size: int, *, jit_compile: bool = True):
    """one-hot float32 [batch_size, L, 4] -> (standardised outputs [batch_size],
    d output / d input [batch_size, L, 4]); traced once per (model, batch, jit) and cached.
    A mixed-precision model is differentiated in float32, as it is scored."""
    scored = scoring_model(model)  # called every time: it refreshes a twin's weights
    key = (int(batch_size), bool(jit_compile))
    functions = _GRADIENTS.setdefault(model, {})
    if key not in functions:
        # A partial of a module-level function, as inference.compiled_forward does, so
        # TensorFlow counts each key's traces apart (closures shared one count and warned
        # of retracing when several models or batch shapes were explained).
        function = functools.partial(_outputs_and_gradients, model=WeakModel(scored))
        spec = tf.TensorSpec([batch_size, model_seq_len(model), 4], tf.float32)
        functions[key] = tf.function(function, input_signature=[spec],
                                     jit_compile=jit_compile)
    return functions[key]


def _outputs_and_gradients(inputs, *, model):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = tf.cast(tf.reshape(model(inputs), [-1]), tf.float32)
        total = tf.reduce_sum(outputs)  # rows are independent: d total = d row
    return outputs, tape.gradient(total, inputs)


def outputs_and_gradients(model, inputs: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                          *, jit_compile: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(outputs [m], gradients [m, L, 4]) for one-hot-like inputs [m, L, 4], in fixed
    batches (the last padded with zeros, whose rows are dropped)."""
    inputs = np.asarray(inputs, dtype=np.float32)
    count = len(inputs)
    outputs = np.zeros(count, np.float32)
    gradients = np.zeros(inputs.shape, np.float32)
    if count == 0:
        return outputs, gradients
    batch = padded_batch_size(count, batch_size)
    function = gradient_function(model, batch, jit_compile=jit_compile)
    for start in range(0, count, batch):
        rows = min(batch, count - start)
        piece = inputs[start:start + rows]
        if rows < batch:
            piece = np.concatenate([piece, np.zeros((batch - rows,) + piece.shape[1:],
                                                    np.float32)])
        values, slopes = function(piece)
        outputs[start:start + rows] = values.numpy()[:rows]
        gradients[start:start + rows] = slopes.numpy()[:rows]
    return outputs, gradients


def _strands(codes, reverse_codes):
    return [codes] if reverse_codes is None else [codes, reverse_codes]


def _averaged(per_strand: list, codes) -> np.ndarray:
    """Forward-window values [n, L, 4] from each strand's own-window values (`codes`: the
    forward windows [n, L], whose padding places the reverse strand)."""
    if len(per_strand) == 1:
        return per_strand[0]
    mapped = onto_forward(per_strand[1], reverse_positions(codes))
    return ((per_strand[0] + mapped) / 2.0).astype(np.float32)


def gradient_x_input(model, scaler, codes, reverse_codes, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, jit_compile: bool = True) -> dict:
    """{'gradient' [n, L, 4], 'gradient_x_input' [n, L, 4]}: the output's gradient at the
    sequence (training scale per unit of one-hot) and that gradient times the one-hot,
    which is nonzero only at each position's observed base."""
    gradients, products = [], []
    for strand in _strands(codes, reverse_codes):
        inputs = one_hot(strand)
        _, gradient = outputs_and_gradients(model, inputs, batch_size, jit_compile=jit_compile)
        gradient *= np.float32(scaler.std)
        gradients.append(gradient)
        products.append(gradient * inputs)
    return {"gradient": _averaged(gradients, codes),
            "gradient_x_input": _averaged(products, codes)}


def baseline_of(inputs: np.ndarray, baseline: str) -> np.ndarray:
    """The reference input [n, L, 4]: 'zeros' is all N (no sequence information; the
    model sees N as padding); 'uniform' puts 0.25 on every base where the sequence has a
    base (N and padding stay all-zero). On a trained swish-LSTM run the uniform point is
    nearly singular (its gradients spike near alpha = 0; 50 steps gave sums off by 3-10x,
    800 steps still 100 %), so 'zeros' is the default (within 3 % at 50 steps)."""
    if baseline == "zeros":
        return np.zeros_like(inputs)
    if baseline == "uniform":
        return np.where(inputs.sum(-1, keepdims=True) > 0, np.float32(0.25), np.float32(0.0))
    raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")


# The first path point for an ensemble that averages both strands inside (see
# integrated_gradients): small enough that f and the path barely move, large enough that
# no base of alpha x input is 0 in float32.
FIRST_ALPHA_BOTH_STRANDS = 1e-6


def trapezoid_weights(steps: int) -> np.ndarray:
    """float32 [steps + 1]: weights of the path points alpha = 0, 1/steps, ..., 1."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] /= 2.0
    return weights


def integrated_gradients(model, scaler, codes, reverse_codes, *,
                         steps: int = DEFAULT_STEPS, baseline: str = DEFAULT_BASELINE,
                         batch_size: int = DEFAULT_BATCH_SIZE, jit_compile: bool = True) -> dict:
    """{'integrated_gradients' [n, L, 4], 'baseline_prediction' [n]} on the training scale.

    attribution = (input - baseline) x the path average of the gradient (trapezoid rule
    over steps + 1 points, all points of all sequences in fixed batches); summed over
    positions and bases it equals f(input) - f(baseline) up to the rule's error
    (completeness). `baseline_prediction` is f(baseline) (strands averaged when both).
    """
    weights = trapezoid_weights(steps)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    exact_baseline = True
    if baseline == "zeros" and averages_both_strands(model):
        # Its strand window reads the padding off the input, and the all-N baseline reads
        # as all padding: the gradient AT alpha = 0 lands on unrolled positions, off the
        # path's limit (1.3 % completeness error measured at 100 steps on a 60-bp
        # sequence). Just after it the window is the sequence's own; f is continuous there.
        alphas[0] = FIRST_ALPHA_BOTH_STRANDS
        exact_baseline = False
    attributions, baseline_outputs = [], []
    for strand in _strands(codes, reverse_codes):
        inputs = one_hot(strand)
        reference = baseline_of(inputs, baseline)
        difference = inputs - reference
        path = reference[:, None] + alphas[None, :, None, None] * difference[:, None]
        points = path.reshape((-1,) + inputs.shape[1:])
        if not exact_baseline:  # f(baseline) itself, in the same call (one traced shape)
            points = np.concatenate([points, reference])
        outputs, gradient = outputs_and_gradients(model, points, batch_size,
                                                  jit_compile=jit_compile)
        gradient = gradient[:path[:, :, 0, 0].size].reshape(path.shape)
        average = np.einsum("k,nkla->nla", weights, gradient)
        attributions.append((difference * average * np.float32(scaler.std)).astype(np.float32))
        baseline_outputs.append(outputs[-len(inputs):] if not exact_baseline else
                                outputs.reshape(len(inputs), steps + 1)[:, 0])
    baseline_standardised = np.mean(baseline_outputs, axis=0)
    return {"integrated_gradients": _averaged(attributions, codes),
            "baseline_prediction": scaler.inverse_transform(baseline_standardised)}
