"""Validate a run's artefacts before anything uses them: the target scaler and the model.

A scaler with std 0, a negative or non-finite std or a non-finite mean would turn every
prediction into a constant, a sign flip, NaN or infinity without a word; a model that is
not a dream_keras model (another input shape, several outputs per sequence) would be
silently misaligned. Both are refused here with one line saying what was expected and what
was found. Imports neither TensorFlow nor Keras (the data/ package uses the scaler check).
"""
from __future__ import annotations

import math
import os
import zipfile

from dream_keras.errors import DataFormatError

SCALER_KEYS = ("mean", "std")
RANGE_KEYS = ("minimum", "maximum")  # optional: the training targets' range
ALPHABET_SIZE = 4  # one-hot A, C, G, T (N is all zeros)


def scaler_values(path, fields) -> tuple[float, float]:
    """(mean, std) from a parsed target_scaler.json, or DataFormatError naming the file.

    Needs a JSON object with numbers `mean` (finite) and `std` (finite, > 0); other keys
    are ignored.
    """
    if not isinstance(fields, dict):
        raise DataFormatError(path, None, f"not a target scaler: expected a JSON object "
                                          f"with keys {', '.join(SCALER_KEYS)}, found "
                                          f"{type(fields).__name__}")
    missing = [key for key in SCALER_KEYS if key not in fields]
    if missing:
        raise DataFormatError(path, None, f"not a target scaler: missing key(s) "
                                          f"{', '.join(missing)} (expected "
                                          f"{', '.join(SCALER_KEYS)})")
    values = {}
    for key in SCALER_KEYS:
        value = fields[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataFormatError(path, None, f"target scaler {key} must be a number, found "
                                              f"{value!r}")
        if not math.isfinite(value):
            raise DataFormatError(path, None, f"target scaler {key} must be finite, found "
                                              f"{value!r}")
        values[key] = float(value)
    if values["std"] <= 0:
        raise DataFormatError(path, None, f"target scaler std must be > 0, found "
                                          f"{values['std']!r} (predictions would be constant "
                                          "or sign-flipped)")
    return values["mean"], values["std"]


def scaler_range(path, fields: dict) -> tuple[float | None, float | None]:
    """(minimum, maximum) of the training targets from a parsed target_scaler.json, or
    (None, None) where it has neither (written before dream_keras recorded them);
    DataFormatError naming the file for one without the other, a non-number, or
    minimum >= maximum."""
    present = [key for key in RANGE_KEYS if key in fields]
    if not present:
        return None, None
    if len(present) == 1:
        raise DataFormatError(path, None, f"target scaler has {present[0]} but not "
                                          f"{(set(RANGE_KEYS) - set(present)).pop()}: the "
                                          "training targets' range needs both")
    values = []
    for key in RANGE_KEYS:
        value = fields[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise DataFormatError(path, None, f"target scaler {key} must be a finite "
                                              f"number, found {value!r}")
        values.append(float(value))
    if values[0] >= values[1]:
        raise DataFormatError(path, None, f"target scaler minimum {values[0]!r} is not below "
                                          f"its maximum {values[1]!r} (training targets of "
                                          "one value cannot be standardised)")
    return values[0], values[1]


def check_model_archive(path) -> None:
    """Refuse a .keras file that is not a complete zip archive (e.g. truncated by a copy)."""
    if not str(path).endswith(".keras"):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        raise DataFormatError(path, None, "cannot load the model: not a complete Keras model "
                                          "archive (truncated or not a .keras file)") from None
    if bad is not None:
        raise DataFormatError(path, None, f"cannot load the model: corrupt archive ({bad} "
                                          "fails its checksum)")


def _shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def check_model(model, path) -> int:
    """The model's sequence length, once it is shown to be a dream_keras model.

    Expected: one input [batch, seq_len, 4] (one-hot ACGT) and one output with one value
    per sequence ([batch, 1] or [batch]).
    """
    inputs, outputs = list(model.inputs), list(model.outputs)
    found = (f"found {len(inputs)} input(s) {[_shape(t) for t in inputs]} and "
             f"{len(outputs)} output(s) {[_shape(t) for t in outputs]}")
    expected = ("expected one input [batch, seq_len, 4] (one-hot ACGT) and one output "
                "[batch, 1] (one value per sequence)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise DataFormatError(path, None, f"not a dream_keras model: {expected}; {found}")
    input_shape, output_shape = _shape(inputs[0]), _shape(outputs[0])
    if (len(input_shape) != 3 or input_shape[2] != ALPHABET_SIZE or input_shape[1] is None
            or input_shape[1] < 1):
        raise DataFormatError(path, None, f"not a dream_keras model: {expected}; {found}")
    if output_shape not in ((None, 1), (None,)):
        raise DataFormatError(path, None, f"not a dream_keras model: {expected}; {found}")
    return input_shape[1]


def model_file_problem(path) -> str | None:
    """Why `path` is not a model file to load (None when it is one)."""
    if not os.path.lexists(path):
        return "model not found"
    if os.path.isdir(path):
        return "is a directory without model.keras"
    if not os.path.isfile(path):
        return "is not a regular file (a FIFO or device?)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None
