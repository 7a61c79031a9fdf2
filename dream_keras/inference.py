"""The in-memory prediction API: load a run, predict strings or codes, variant effects.

A run directory holds `model.keras` and `target_scaler.json`; the model outputs
standardised expression [batch, 1] and `scaler.inverse_transform` brings it back to the
training file's scale (sort-bin 0..17 for the DREAM data), which is what users get here.
Every prediction runs through `compiled_forward`, the model traced once per batch shape
and cached. Files are predicted by dream_keras.prediction_files, a SavedModel is exported
by dream_keras.export.

Strand averaging uses the package's one window rule (data/sequences.py): the reverse
strand is the reverse complement of the window the forward strand sees (the last
seq_len bases), exactly what reverse-complement training augmentation shows the model.
"""
from __future__ import annotations

import functools
import os
import weakref
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras import sequence_ops
from dream_keras.artefacts import check_model, check_model_archive, model_file_problem
from dream_keras.data.readers import DataFormatError
from dream_keras.data.sequences import N_CODE, encode, encode_strands, hidden_differences
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError, MissingDataError
from dream_keras.model import in_float32, load_model
from dream_keras.plausibility import warn_implausible
from dream_keras.run_directory import model_path_of, scaler_path_of
from dream_keras.strand_layers import refuse_second_strand_average

# On 2 CPU cores throughput per CPU-second is flat (within 7 %) from batch 64 to 1,024
# (docs/scoring.md); 256 keeps a padded last batch and a tiny input's compile cheap.
DEFAULT_BATCH_SIZE = 256
MIN_BATCH_SHAPE = 8
# model -> {(batch, both strands, one-hot input, jit): tf.function}; entries go when the
# model does.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# model -> its float32 twin, None for a model computing in float32 (scoring_model); the
# twin holds no reference to its model, so entries go when the model does.
_FLOAT32_TWINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def load_run(path) -> tuple[keras.Model, TargetScaler]:
    """(model, scaler) from `RUN/model.keras` (or the run directory `RUN`).

    The scaler is `target_scaler.json` next to the model; both must exist and pass
    dream_keras.artefacts' checks (finite mean and positive std; one [batch, seq_len, 4]
    input and one value per sequence), or the error says what was expected and found.
    """
    model_path = model_path_of(path)
    problem = model_file_problem(model_path)
    if problem == "model not found":
        raise MissingDataError(f"{model_path}: {problem}")
    if problem is not None:
        raise DataFormatError(model_path, None, problem)
    scaler_path = scaler_path_of(model_path)
    if not os.path.lexists(scaler_path):
        raise MissingDataError(f"{scaler_path}: target scaler not found next to the model "
                                "(a training run writes it; predictions need it to undo the "
                                "standardisation)")
    scaler = TargetScaler.load(scaler_path)
    logging.info("loading %s", model_path)
    check_model_archive(model_path)
    try:
        model = load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; name the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataFormatError(model_path, None, f"cannot load the model "
                              f"({type(error).__name__}: {reason})") from error
    check_model(model, model_path)
    return in_float32(model), scaler


def model_seq_len(model: keras.Model) -> int:
    """The sequence length the model takes: its input shape [None, seq_len, 4] (the
    training run's flags.seq_len, read from the model itself so they cannot disagree)."""
    seq_len = model.inputs[0].shape[1]
    if seq_len is None:
        raise ValueError("the model's input length is not fixed: scoring compiles it for "
                         "one length, inputs [batch, seq_len, 4] (build_model's `seq_len`)")
    return int(seq_len)


def checked_seq_len(model: keras.Model, seq_len=None) -> int:
    """The model's input length, the only one it can score. The API's `seq_len` parameter
    may state it (None: read from the model); another length cannot be scored (the
    compiled model's inputs have the model's length), so it is refused here, by name,
    rather than failing as a shape error inside TensorFlow."""
    model_length = model_seq_len(model)
    if seq_len is not None and seq_len != model_length:
        raise ConfigurationError(f"`seq_len`={seq_len!r}, but the model takes sequences of "
                                 f"{model_length} bases (its input [batch, {model_length}, 4]): "
                                 "omit `seq_len` (it is read from the model) or pass "
                                 f"{model_length}")
    return model_length


def padded_batch_size(num_rows: int, batch_size: int) -> int:
    """The fixed batch shape used for `num_rows` rows: batch_size, or for fewer rows the
    next power of two >= num_rows (at least 8), so a few short calls compile few shapes."""
    if num_rows >= batch_size:
        return batch_size
    return min(batch_size, max(MIN_BATCH_SHAPE, 1 << (max(num_rows, 1) - 1).bit_length()))


def compiled_forward(model: keras.Model, batch_size: int, *, both_strands: bool = False,
                     one_hot_input: bool = False, jit_compile: bool = True):
    """The model as a tf.function of fixed shape, traced (and XLA-compiled) once and cached.

    The public entry to the compiled model (what predict_codes, the files path and the
    benchmarks run). codes uint8 [batch_size, seq_len] -> standardised predictions float32
    [batch_size]; with `one_hot_input`, one-hot float32 [batch_size, seq_len, 4] instead of
    codes. With `both_strands`, (forward, reverse strand) -> their average, run as ONE batch
    of 2 x batch_size rows. Codes are one-hot encoded inside (sequence_ops.one_hot, N ->
    zeros), so only bytes cross into TensorFlow. The fixed input signature keeps a padded
    last batch from retracing; the cache lives as long as the model. A mixed-precision
    model is scored in float32 (`scoring_model`), by a twin holding its weights as of this
    call: call compiled_forward again after changing them.
    """
    if both_strands:
        refuse_second_strand_average(model)
    scored = scoring_model(model)  # called every time: it refreshes a twin's weights
    key = (int(batch_size), bool(both_strands), bool(one_hot_input), bool(jit_compile))
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        seq_len = model_seq_len(model)
        spec = (tf.TensorSpec([batch_size, seq_len, 4], tf.float32) if one_hot_input
                else tf.TensorSpec([batch_size, seq_len], tf.uint8))
        # A partial of a module-level function, not a closure: TensorFlow counts traces
        # per function code, so closures made here for every key (batch shapes, models)
        # added up to its "N out of the last N calls triggered retracing" warning,
        # although each function is traced once. A partial has no code of its own:
        # TensorFlow counts each one's traces apart.
        forward = functools.partial(_averaged_strands if both_strands else _outputs,
                                    model=WeakModel(scored), one_hot_input=bool(one_hot_input))
        signature = [spec, spec] if both_strands else [spec]
        functions[key] = tf.function(forward, input_signature=signature,
                                     jit_compile=jit_compile)
    return functions[key]


class WeakModel:
    """Calls a model it does not keep alive: a cached function holding its cache key (the
    model) would keep every model a process ever scored. (tf.function refuses a bare
    weakref.ref as an argument; it takes this object by identity.)"""

    def __init__(self, model: keras.Model):
        self._model = weakref.ref(model)

    def __call__(self, inputs):
        return self._model()(inputs, training=False)


def _outputs(inputs, *, model: WeakModel, one_hot_input: bool):
    """[rows, L] uint8 codes (or [rows, L, 4] float32 one-hot) -> [rows] float32."""
    one_hot = inputs if one_hot_input else sequence_ops.one_hot(inputs)
    return tf.cast(tf.reshape(model(one_hot), [-1]), tf.float32)


def _averaged_strands(inputs, reverse_inputs, *, model: WeakModel, one_hot_input: bool):
    """The mean of both strands' outputs, computed as one batch of 2 x rows."""
    both = tf.reshape(_outputs(tf.concat([inputs, reverse_inputs], 0), model=model,
                               one_hot_input=one_hot_input), [2, -1])
    return (both[0] + both[1]) / 2.0


def scoring_model(model: keras.Model) -> keras.Model:
    """The model every scoring path calls (compiled_forward, so the predict_* API, files
    and explanations; the exported SavedModel): `model` itself, or for a mixed-precision
    one its float32 twin (dream_keras.model.in_float32), built once and given `model`'s current
    weights at every call of this function, so a model trained further between calls is
    scored as it is now (a compiled_forward function kept by a caller holds the twin with
    the weights of its own call: ask compiled_forward again after changing them, as
    predict_codes does on every call). Here, where a model becomes a scoring function, and not in load_model: models
    from keras.models.load_model or built in memory reach these paths too, and
    load_model(compile=True) resumes training, which must keep the saved precision."""
    if model not in _FLOAT32_TWINS:
        _FLOAT32_TWINS[model] = _float32_twin(model)
        return _FLOAT32_TWINS[model] or model
    twin = _FLOAT32_TWINS[model]
    if twin is None:
        return model
    twin.set_weights(model.get_weights())
    return twin


def _float32_twin(model: keras.Model) -> keras.Model | None:
    """in_float32(model) for a model computing in a mixed precision, else None. A model
    that cannot be rebuilt from its config (a subclassed layer without get_config) is
    scored in its own precision, with a warning: it was scored so before, not refused."""
    if not _computes_in_low_precision(model):
        return None
    try:
        twin = in_float32(model)
    except (NotImplementedError, TypeError, ValueError) as error:
        logging.warning("%s computes in %s and cannot be rebuilt in float32 (%s): scored "
                        "in its own precision", model.name, model.dtype_policy.name, error)
        return None
    return None if twin is model else twin


def _computes_in_low_precision(model: keras.Model) -> bool:
    """Any layer, nested models' included, under a mixed-precision policy (read from the
    layers, so that a float32 model's config is never asked for)."""
    pending = [model]
    while pending:
        layer = pending.pop()
        if str(getattr(layer.dtype_policy, "name", "")).startswith("mixed_"):
            return True
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
    return False


def predict_codes(model: keras.Model, codes: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                  *, reverse_codes: np.ndarray | None = None, jit_compile: bool = True,
                  batch_shape: int | None = None) -> np.ndarray:
    """Standardised predictions float32 [n] for codes uint8 [n, seq_len], in row order.

    With `reverse_codes` (the reverse strands, same shape), the average of both strands,
    each batch of the two computed in one call. Every batch runs at one fixed shape,
    `batch_shape` (default: `padded_batch_size`), the last padded with N rows whose outputs
    are dropped.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    num_rows = len(codes)
    predictions = np.zeros(num_rows, dtype=np.float32)
    if num_rows == 0:
        return predictions
    batch = batch_shape or padded_batch_size(num_rows, batch_size)
    forward = compiled_forward(model, batch, both_strands=reverse_codes is not None,
                               jit_compile=jit_compile)
    strands = [codes] if reverse_codes is None else [codes, np.asarray(reverse_codes, np.uint8)]
    for start in range(0, num_rows, batch):
        rows = min(batch, num_rows - start)
        inputs = [_padded(strand[start:start + rows], batch) for strand in strands]
        predictions[start:start + rows] = forward(*inputs).numpy()[:rows]
    return predictions


def _padded(codes: np.ndarray, batch: int) -> np.ndarray:
    """codes [rows <= batch, L] -> [batch, L], extra rows all N (code 4)."""
    if len(codes) == batch:
        return codes
    return np.concatenate([codes, np.full((batch - len(codes), codes.shape[1]), N_CODE,
                                          np.uint8)])


def refuse_non_finite(predictions, path, describe) -> None:
    """Raise DataFormatError naming `path` (the model, or the input read) and the first
    NaN or infinite prediction (`describe(index)` says which row or position): metrics,
    plots, a submission or a file of such values mean nothing (a diverged model), so the
    commands call it before their outputs are written."""
    bad = np.flatnonzero(~np.isfinite(predictions))
    if bad.size:
        raise DataFormatError(path, None, f"the model predicts {predictions[bad[0]]} for "
                              f"{describe(int(bad[0]))}, not a finite number (its weights "
                              "diverged or overflow); nothing was written")


def sequence_list(sequences, parameter: str) -> list:
    """`sequences` (any iterable of strings) as a list; one string is refused, since
    iterating it would score each of its letters as a sequence of its own."""
    if isinstance(sequences, (str, bytes)):
        raise TypeError(f"`{parameter}` must be a list of sequences, not one string: "
                        f"pass [{str(sequences[:20])!r}{'...' if len(sequences) > 20 else ''}]")
    return list(sequences)


def predict_standardised(model: keras.Model, sequences: Sequence[str], *, seq_len=None,
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         reverse_complement_average: bool = False,
                         jit_compile: bool = True) -> np.ndarray:
    """Model outputs float32 [n] (standardised scale) for strings; optional strand average.

    Raises InvalidSequenceError (with `.row`) for a letter outside ACGTN.
    """
    codes, reverse_codes = encode_strands(sequence_list(sequences, "sequences"),
                                          checked_seq_len(model, seq_len),
                                          reverse_complement_average)
    return predict_codes(model, codes, batch_size, reverse_codes=reverse_codes,
                         jit_compile=jit_compile)


def predict_sequences(model: keras.Model, scaler: TargetScaler, sequences: Sequence[str], *,
                      seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                      reverse_complement_average: bool = False,
                      jit_compile: bool = True) -> np.ndarray:
    """Expression float64 [n] on the training data's scale, one per sequence, in order.

    Values outside the plausible range (dream_keras.plausibility: far outside the
    training targets) are returned as computed, with a warning naming how many and the
    first index."""
    standardised = predict_standardised(
        model, sequence_list(sequences, "sequences"), seq_len=seq_len, batch_size=batch_size,
        reverse_complement_average=reverse_complement_average, jit_compile=jit_compile)
    values = scaler.inverse_transform(standardised)
    warn_implausible(values, scaler)
    return values


def variant_effects(model: keras.Model, scaler: TargetScaler, ref_sequences: Sequence[str],
                    alt_sequences: Sequence[str], **predict_options) -> dict:
    """{'ref_prediction', 'alt_prediction', 'effect' = alt - ref}: float64 [n] each. Pairs
    that differ only before the model's window (the last seq_len bases) are counted in a
    warning: their effect is 0 because the model never sees the difference."""
    ref_sequences = sequence_list(ref_sequences, "ref_sequences")
    alt_sequences = sequence_list(alt_sequences, "alt_sequences")
    if len(ref_sequences) != len(alt_sequences):
        raise ValueError(f"{len(ref_sequences)} `ref_sequences` but {len(alt_sequences)} "
                         "`alt_sequences`")
    both = scaler.inverse_transform(predict_standardised(
        model, list(ref_sequences) + list(alt_sequences), **predict_options))
    ref, alt = both[:len(ref_sequences)], both[len(ref_sequences):]
    warn_implausible(ref, scaler, "ref predictions")
    warn_implausible(alt, scaler, "alt predictions")
    seq_len = checked_seq_len(model, predict_options.get("seq_len"))
    hidden = np.flatnonzero(hidden_differences(ref_sequences, alt_sequences,
                                               encode(ref_sequences, seq_len),
                                               encode(alt_sequences, seq_len)))
    if hidden.size:
        logging.warning("%d pair(s) (first: index %d) differ only outside the model's %d-bp "
                        "window (the last %d bases, identical): their effect is 0 by "
                        "construction", hidden.size, hidden[0], seq_len, seq_len)
    return {"ref_prediction": ref, "alt_prediction": alt, "effect": alt - ref}
