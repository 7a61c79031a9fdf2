"""Training-time data choices, all seeded: the singleton filter, the split, the target scaler.

They run on the cache at training time (not at preparation) so one cache serves every
recipe, and a seed reproduces the exact same rows.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from dream_keras import atomic_files
from dream_keras.artefacts import scaler_range, scaler_values
from dream_keras.errors import ConfigurationError, DataFormatError, MissingDataError
from dream_keras.file_errors import check_input_file, reading

# Independent random streams for the two decisions, so changing one never moves the other.
_FILTER_STREAM, _SPLIT_STREAM = 1, 2


def singleton_keep_mask(singleton: np.ndarray, keep_prob: float, seed: int) -> np.ndarray:
    """Bool [N]: keep every non-singleton row, and each singleton with probability keep_prob.

    The original flipped a coin per whole-number row (keep_prob 0.5); keep_prob 1 keeps all.
    """
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"singleton keep probability must be in [0, 1], got {keep_prob}")
    singleton = np.asarray(singleton, dtype=bool)
    coins = np.random.default_rng([seed, _FILTER_STREAM]).random(singleton.shape[0])
    return ~singleton | (coins < keep_prob)


def split_train_validation(row_indices: np.ndarray, validation_fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of `row_indices` into (train, validation), each sorted.

    Fixed once per seed: unlike the original's take/skip on a reshuffling dataset, no
    validation row ever reaches training.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    row_indices = np.asarray(row_indices, dtype=np.int64)
    num_validation = int(round(validation_fraction * len(row_indices)))
    if validation_fraction > 0 and num_validation == 0 and len(row_indices) > 1:
        num_validation = 1
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(row_indices))
    validation = np.sort(row_indices[order[:num_validation]])
    train = np.sort(row_indices[order[num_validation:]])
    return train, validation


@dataclasses.dataclass(frozen=True)
class TargetScaler:
    """z-score of the expression, fitted on training rows only, saved next to the model.

    `minimum` and `maximum` record the training targets' range (None in scalers written
    before dream_keras recorded it): dream_keras.plausibility flags predictions far
    outside it."""

    mean: float
    std: float
    minimum: float | None = None
    maximum: float | None = None

    @classmethod
    def fit(cls, values: np.ndarray) -> "TargetScaler":
        values = np.asarray(values, dtype=np.float64)
        if values.size < 2:
            raise ValueError("need at least 2 training rows to fit the target scaler")
        std = float(values.std())
        if not math.isfinite(std) or std == 0.0:
            raise ConfigurationError("training targets are constant; cannot standardise them")
        return cls(float(values.mean()), std, float(values.min()), float(values.max()))

    def transform(self, values) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse_transform(self, standardised) -> np.ndarray:
        return np.asarray(standardised, dtype=np.float64) * self.std + self.mean

    def save(self, path) -> None:
        """Written whole or not at all (a temporary file renamed into place)."""
        fields = {"mean": self.mean, "std": self.std}
        if self.minimum is not None and self.maximum is not None:
            fields.update(minimum=self.minimum, maximum=self.maximum)
        atomic_files.write_text(path, json.dumps(fields, indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "TargetScaler":
        if not os.path.lexists(path):
            raise MissingDataError(f"{path}: target scaler not found")
        check_input_file(path, "target scaler")
        with reading(path), open(path, encoding="utf-8-sig") as handle:
            try:
                fields = json.load(handle)
            except ValueError as error:
                line = getattr(error, "lineno", None)
                raise DataFormatError(path, line, f"not a target scaler JSON ({error})") from None
        return cls(*scaler_values(path, fields), *scaler_range(path, fields))
