"""Explain sequences with a trained run: the methods, one call, arrays aligned to the input.

Every array covers the window the model sees: the LAST seq_len bases of each sequence,
left-padded with N (a longer sequence's first bases are not seen and get no attribution).
Values are on the training data's expression scale (`target_scaler.json` undone).
"""
from __future__ import annotations

import numpy as np

from dream_keras.errors import ConfigurationError
from dream_keras.explain import gradients, mutagenesis
from dream_keras.explain.model_access import (DEFAULT_BATCH_SIZE, encode_strands, load_run,
                                              model_seq_len, predict_codes, sequence_list)
from dream_keras.plausibility import warn_implausible
from dream_keras.strand_layers import refuse_second_strand_average

METHODS = ("ism", "gradient_x_input", "integrated_gradients")


def check_methods(methods) -> tuple:
    """The attribution methods, in order, each once; a comma list (or several) is split,
    as explain.py's --methods takes them."""
    if isinstance(methods, str):
        methods = [methods]
    methods = tuple(dict.fromkeys(name.strip() for value in methods
                                  for name in str(value).split(",") if name.strip()))
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ConfigurationError(f"methods must be among {', '.join(METHODS)}; got "
                                 f"{', '.join(methods) or 'none'}")
    return methods


def explain_encoded(model, scaler, codes, reverse_codes, lengths, *, methods=METHODS,
                    steps: int = gradients.DEFAULT_STEPS,
                    baseline: str = gradients.DEFAULT_BASELINE,
                    batch_size: int = DEFAULT_BATCH_SIZE, jit_compile: bool = True) -> dict:
    """The arrays of `explain_sequences` for already encoded windows (codes [n, L])."""
    methods = check_methods(methods)
    options = dict(batch_size=batch_size, jit_compile=jit_compile)
    arrays = {"codes": np.asarray(codes, np.uint8), "length": np.asarray(lengths, np.int64)}
    if "ism" in methods:
        arrays.update(mutagenesis.saturation_mutagenesis(
            model, scaler, codes, reverse_codes, **options))
        arrays["ism_position"] = mutagenesis.position_summary(arrays["ism"])
    else:
        arrays["prediction"] = scaler.inverse_transform(predict_codes(
            model, codes, batch_size, reverse_codes=reverse_codes, jit_compile=jit_compile))
    if "gradient_x_input" in methods:
        arrays.update(gradients.gradient_x_input(model, scaler, codes, reverse_codes,
                                                 **options))
    if "integrated_gradients" in methods:
        arrays.update(gradients.integrated_gradients(
            model, scaler, codes, reverse_codes, steps=steps, baseline=baseline,
            **options))
    return arrays


def explain_sequences(model, scaler, sequences, *, reverse_complement_average: bool = False,
                      **options) -> dict:
    """Explain strings with a loaded (model, scaler); returns name -> array, row i = input i:

    codes [n, L] uint8 (the window: A,C,G,T,N = 0..4), length [n], prediction [n];
    with 'ism': ism [n, L, 4] (effect of each substitution), ism_position [n, L] (mean of
    a position's three); with 'gradient_x_input': gradient and gradient_x_input [n, L, 4];
    with 'integrated_gradients': integrated_gradients [n, L, 4], baseline_prediction [n].
    Options: methods, steps, baseline, batch_size, jit_compile. Raises
    InvalidSequenceError (with `.row`) for a letter outside ACGTN. Predictions outside the
    plausible range (dream_keras.plausibility) are returned with a logged warning, as
    inference.predict_sequences does.
    """
    sequences = sequence_list(sequences, "sequences")  # one string: refused, not its letters
    if reverse_complement_average:
        refuse_second_strand_average(model)
    codes, reverse_codes = encode_strands(sequences, model_seq_len(model),
                                          reverse_complement_average)
    lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
    arrays = explain_encoded(model, scaler, codes, reverse_codes, lengths, **options)
    warn_implausible(arrays["prediction"], scaler)
    return arrays


def explain_run(run_path, sequences, **options) -> dict:
    """`explain_sequences` with the model of a run directory, a model file (the
    target_scaler.json beside it) or an ensemble's model file."""
    model, scaler = load_run(run_path)
    return explain_sequences(model, scaler, sequences, **options)
