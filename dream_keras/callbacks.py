"""Keras callbacks of a training run: full-set validation Pearson, and resumable state.

The original logged a batch-averaged r squared under the name 'Pearson'. PearsonCallback
predicts the WHOLE validation set at each epoch end and writes Pearson r, r squared and
Spearman rho into the epoch logs (val_pearson, val_pearson_r2, val_spearman), so Keras'
ModelCheckpoint and EarlyStopping can monitor them.
"""
from __future__ import annotations

import csv
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras.dataset import evaluation_dataset
from dream_keras.metrics import correlation_summary


class PearsonCallback(keras.callbacks.Callback):
    """Adds val_pearson, val_pearson_r2 and val_spearman to each epoch's logs.

    Predictions use a plain forward function on this process's devices rather than
    `model.predict`, so the result is the same whether or not training is distributed
    (under multi-worker every worker computes the same numbers).
    """

    def __init__(self, codes: np.ndarray, targets: np.ndarray, batch_size: int):
        super().__init__()
        self.targets = np.asarray(targets, dtype=np.float64)
        self.dataset = evaluation_dataset(codes, batch_size=batch_size)
        self._forward = None

    def predict(self) -> np.ndarray:
        if self._forward is None:
            model = self.model
            self._forward = tf.function(lambda x: model(x, training=False))
        return np.concatenate([self._forward(x).numpy().reshape(-1) for x in self.dataset])

    def on_epoch_end(self, epoch, logs=None):
        summary = correlation_summary(self.predict(), self.targets)
        if logs is not None:
            logs["val_pearson"] = summary["pearson"]
            logs["val_pearson_r2"] = summary["pearson_r2"]
            logs["val_spearman"] = summary["spearman"]
        logging.info("epoch %d: val_pearson %.4f  val_pearson_r2 %.4f  val_spearman %.4f "
                     "(n=%d, whole validation set)", epoch + 1, summary["pearson"],
                     summary["pearson_r2"], summary["spearman"], summary["n"])


def read_history(path) -> list[dict]:
    """Rows of a CSVLogger file as dicts of floats (epoch as int); [] if absent."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: (int(v) if k == "epoch" else _float(v)) for k, v in row.items()} for row in rows]


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def truncate_history(path, first_epoch_to_drop: int) -> list[dict]:
    """Drop CSV rows of epochs that a resumed run will train again; return the kept rows."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:]
                        if int(line.split(",", 1)[0]) < first_epoch_to_drop]
    with open(path, "w", newline="") as handle:
        handle.writelines(kept)
    return read_history(path)


def best_epoch(history: list[dict], monitor: str = "val_pearson") -> dict | None:
    """The history row with the highest finite `monitor`, or None."""
    scored = [row for row in history if np.isfinite(row.get(monitor, np.nan))]
    return max(scored, key=lambda row: row[monitor]) if scored else None


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping (mode max) that, on a resumed run, continues its patience count from
    the epochs already in history instead of starting again from zero."""

    def __init__(self, history: list[dict], **kwargs):
        super().__init__(mode="max", **kwargs)
        self._history = history

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        best = best_epoch(self._history, self.monitor)
        if best is not None:
            self.best = best[self.monitor]
            self.best_epoch = best["epoch"]
            self.wait = self._history[-1]["epoch"] - best["epoch"]
