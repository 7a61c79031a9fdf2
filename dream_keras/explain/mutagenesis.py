"""In-silico mutagenesis: every single-base substitution of the window the model sees.

Each mutant is scored by the same compiled forward, encoding and un-scaling as
`predict.py`, so an entry equals the `effect` `predict.py --pairs` reports for the same
(reference, mutant) pair. Mutants are built as byte codes in NumPy (no strings), 3 per
base, plus one reference row per sequence; positions holding N (padding, or an N in the
sequence) are not mutated and read NaN.
"""
from __future__ import annotations

import numpy as np

from dream_keras.explain.model_access import DEFAULT_BATCH_SIZE, predict_codes
from dream_keras.explain.strands import reverse_positions

SUBSTITUTIONS = 3  # alternative bases per position


def mutant_codes(codes: np.ndarray, reverse_codes: np.ndarray | None):
    """Every single-base substitution of codes uint8 [n, L].

    Returns (mutants [m, L], reverse-strand mutants [m, L] or None, sequence index [m],
    position [m], alternative base [m]) with m = 3 x the number of A/C/G/T codes. The
    reverse-strand mutant carries the complementary change where the reverse window holds
    that base, exactly what encoding the mutated string's reverse complement gives.
    """
    rows, positions = np.nonzero(codes < 4)
    rows, positions = np.repeat(rows, SUBSTITUTIONS), np.repeat(positions, SUBSTITUTIONS)
    shift = np.tile(np.arange(1, SUBSTITUTIONS + 1, dtype=np.uint8), len(rows) // SUBSTITUTIONS)
    alternatives = (codes[rows, positions] + shift) % 4
    flat = np.arange(len(rows))
    mutants = codes[rows]
    mutants[flat, positions] = alternatives
    reverse_mutants = None
    if reverse_codes is not None:
        partner = reverse_positions(codes)[rows, positions]
        paired = partner >= 0
        reverse_mutants = reverse_codes[rows]
        reverse_mutants[flat[paired], partner[paired]] = 3 - alternatives[paired]
    return mutants, reverse_mutants, rows, positions, alternatives


def saturation_mutagenesis(model, scaler, codes: np.ndarray, reverse_codes: np.ndarray | None,
                           *, batch_size: int = DEFAULT_BATCH_SIZE,
                           jit_compile: bool = True) -> dict:
    """{'prediction' [n] float64, 'ism' [n, L, 4] float32} on the training data's scale.

    ism[i, p, b] = prediction of sequence i with base b at window position p, minus its
    prediction (0 at the observed base; NaN where the window holds N). The references and
    all mutants run as one stream of full batches, so padding costs at most one batch.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    mutants, reverse_mutants, rows, positions, alternatives = mutant_codes(
        codes, reverse_codes)
    everything = np.concatenate([codes, mutants])
    reverse_everything = (None if reverse_codes is None
                          else np.concatenate([reverse_codes, reverse_mutants]))
    values = scaler.inverse_transform(predict_codes(
        model, everything, batch_size, reverse_codes=reverse_everything,
        jit_compile=jit_compile))
    reference = values[:len(codes)]
    ism = np.full(codes.shape + (4,), np.nan, dtype=np.float32)
    observed_rows, observed_positions = np.nonzero(codes < 4)
    ism[observed_rows, observed_positions, codes[observed_rows, observed_positions]] = 0.0
    ism[rows, positions, alternatives] = values[len(codes):] - reference[rows]
    return {"prediction": reference, "ism": ism}


def position_summary(ism: np.ndarray) -> np.ndarray:
    """[n, L]: mean effect of the three substitutions at each position (negative where the
    observed base raises expression; NaN at N)."""
    return (np.nansum(ism, axis=-1) / SUBSTITUTIONS).astype(np.float32) + np.where(
        np.isnan(ism).all(axis=-1), np.nan, 0.0).astype(np.float32)


def observed_base_contribution(ism: np.ndarray) -> np.ndarray:
    """[n, L]: the observed base's effect against the average base, -(sum of the three
    substitution effects) / 4 (ISM centred per position and read at the observed base),
    the ISM score drawn in logos; 0 at N."""
    return np.nan_to_num(-np.nansum(ism, axis=-1) / 4.0).astype(np.float32)
