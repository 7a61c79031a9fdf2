"""Keras callbacks of a training run: the epoch summary, and resumable, worker-shared
state (history, early stopping, backups).

val_pearson and val_pearson_r2 come from the compiled PearsonR metrics
(dream_keras.streaming_metrics), on the same validation pass as val_loss.
"""
from __future__ import annotations

import csv
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

# An epoch-mean training loss above this (standardised targets: a sane loss is ~1 plus
# the L2 term) means some batches diverged, as the unbounded swish LSTM can in training
# mode (docs/small_data.md): seen at 4e12 and 1e18 with the quickstart's flags, seed 1.
DIVERGED_TRAINING_LOSS = 1e3


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch with the whole-validation-set numbers, and a warning when
    the epoch's training loss shows diverged batches (its training columns are then
    meaningless, while the validation ones, in inference mode, may still be sound)."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        logging.info("epoch %d: val_loss %.4f  val_pearson %.4f  val_pearson_r2 %.4f "
                     "(whole validation set)", epoch + 1, logs.get("val_loss", np.nan),
                     logs.get("val_pearson", np.nan), logs.get("val_pearson_r2", np.nan))
        loss = logs.get("loss", np.nan)
        if np.isfinite(loss) and loss > DIVERGED_TRAINING_LOSS:
            logging.warning(
                "epoch %d: mean training loss %.3g: some training batches diverged (the "
                "swish LSTM is unbounded under batch statistics); this epoch's training "
                "loss and pearson are meaningless, judge it by val_loss and val_pearson",
                epoch + 1, loss)


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
    the epochs already in history instead of starting again from zero.

    Under multi-worker training (`strategy` given) the chief's decision is the one every
    worker follows: it is all-reduced after each epoch, so all workers stop on the same
    epoch (a worker waiting for a collective that the others never join would hang).
    """

    def __init__(self, history: list[dict], strategy=None, chief: bool = True, **kwargs):
        super().__init__(mode="max", **kwargs)
        self._history = history
        self._strategy = strategy
        self._chief = chief

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        best = best_epoch(self._history, self.monitor)
        if best is not None:
            self.best = best[self.monitor]
            self.best_epoch = best["epoch"]
            self.wait = self._history[-1]["epoch"] - best["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self._strategy is not None:
            self.model.stop_training = chief_decision(
                self._strategy, bool(self.model.stop_training), self._chief)


def chief_decision(strategy, decision: bool, chief: bool) -> bool:
    """The chief's `decision`, known to every worker (a collective: call it on all)."""
    vote = tf.constant(1.0 if chief and decision else 0.0)
    total = strategy.run(
        lambda: tf.distribute.get_replica_context().all_reduce("sum", vote))
    return bool(strategy.experimental_local_results(total)[0].numpy() > 0)


class ChiefBackupReader(keras.callbacks.BackupAndRestore):
    """A non-chief worker's BackupAndRestore: restores weights and epoch from the chief's
    backup (so every worker resumes at the same epoch) and never writes or deletes it."""

    def __init__(self, backup_dir):
        super().__init__(backup_dir, delete_checkpoint=False)

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass
