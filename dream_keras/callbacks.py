"""Keras callbacks of a training run: the epoch summary, and resumable, worker-shared
state (history, best model, early stopping, backups).

Every file they write is replaced whole (atomic_files), so a run killed at any moment
resumes from its last committed epoch (backups) to the same history.
val_pearson and val_pearson_r2 come from the compiled PearsonR metrics
(dream_keras.streaming_metrics), on the same validation pass as val_loss.
"""
from __future__ import annotations

import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras import atomic_files, backups
from dream_keras.run_directory import pending_model_path

# An epoch-mean training loss above this (standardised targets: a sane loss is ~1 plus
# the L2 term) means some batches diverged, as the unbounded swish LSTM can in training
# mode (docs/small_data.md): seen at 4e12 and 1e18 with the quickstart's flags, seed 1.
DIVERGED_TRAINING_LOSS = 1e3
# A validation loss (inference mode) above this means the model itself exploded, not a
# batch: such an epoch is never the best one (and --rollback_exploded_epochs undoes it).
EXPLODED_VALIDATION_LOSS = 1e3
# history.csv columns that hold text: the phase of a run trained in phases (phases.py).
TEXT_COLUMNS = ("phase",)


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
    return [{k: (int(v) if k == "epoch" else v if k in TEXT_COLUMNS else _float(v))
             for k, v in row.items()} for row in rows]


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def write_history(path, rows: list[dict]) -> None:
    """Replace history.csv with `rows` (CSVLogger's layout: epoch, then sorted columns);
    no rows: no file."""
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return
    columns = ["epoch", *sorted(key for key in rows[0] if key != "epoch")]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_files.write_text(path, text.getvalue())


def save_model(model, path) -> None:
    """model.save to a temporary file renamed into place: a kill never leaves half a model."""
    with atomic_files.replacing(path) as temporary:
        model.save(temporary)


def diverged_epochs(history: list[dict]) -> list[int]:
    """The epochs (1-based, as the logs count) of history.csv rows whose mean training
    loss is above DIVERGED_TRAINING_LOSS or not finite."""
    return [row["epoch"] + 1 for row in history
            if "loss" in row and not row["loss"] <= DIVERGED_TRAINING_LOSS]


def epoch_ranges(epochs: list[int]) -> str:
    """[2, 3, 4, 7] -> '2-4, 7'."""
    ranges, start = [], epochs[0]
    for previous, current in zip(epochs, epochs[1:] + [None]):
        if current != previous + 1:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(ranges)


def exploded(logs: dict) -> bool:
    """True when an epoch's validation loss is above EXPLODED_VALIDATION_LOSS or not a
    finite number (False for an epoch without validation)."""
    loss = (logs or {}).get("val_loss")
    return loss is not None and not loss <= EXPLODED_VALIDATION_LOSS


def best_epoch(history: list[dict], monitor: str = "val_pearson") -> dict | None:
    """The history row with the highest finite `monitor` whose model did not explode,
    or None."""
    scored = [row for row in history
              if np.isfinite(row.get(monitor, np.nan)) and not exploded(row)]
    return max(scored, key=lambda row: row[monitor]) if scored else None


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping (mode max) that, on a resumed run, continues its patience count from
    the epochs already in history instead of starting again from zero.

    An epoch whose validation loss exploded never counts as an improvement.
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
        # Never None (Keras' start, which takes ANY first epoch for an improvement, an
        # exploded or NaN one too, while a resumed run could not know it): the count of
        # epochs without a finite improvement is then the same resumed or not.
        self.best = -math.inf
        best = best_epoch(self._history, self.monitor)
        if best is not None:
            self.best = best[self.monitor]
            self.best_epoch = best["epoch"]
            self.wait = self._history[-1]["epoch"] - best["epoch"]
        else:
            self.wait = len(self._history)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if exploded(logs) or (value is not None and not np.isfinite(value)):
            # Never an improvement, whatever its val_pearson (NaN would block every later
            # epoch from being one).
            logs = {**logs, self.monitor: -math.inf}
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


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model (whole, atomically) whenever `monitor` beats every earlier epoch's,
    the epochs of `history` (a resumed run's) included. NaN never counts as better, and
    an epoch whose validation loss exploded never counts.

    The model goes to a pending file that `publish` renames to `path` once the epoch's
    backup has committed (PublishBestModel, after EpochBackup): a kill in between leaves
    `path` holding a committed epoch (run_directory.settle_pending_model on resume)."""

    def __init__(self, path, history: list[dict], monitor: str = "val_pearson"):
        super().__init__()
        self.path, self.monitor = path, monitor
        best = best_epoch(history, monitor)
        self.best = best[monitor] if best else -math.inf
        self.pending = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if (current is None or not np.isfinite(current) or not current > self.best
                or exploded(logs)):
            return
        self.best = float(current)
        self.pending = pending_model_path(self.path, epoch + 1)
        save_model(self.model, self.pending)

    def publish(self) -> None:
        if self.pending is not None:
            os.replace(self.pending, self.path)
            self.pending = None


class PublishBestModel(keras.callbacks.Callback):
    """After the backup commits an epoch, its pending best model becomes model.keras."""

    def __init__(self, checkpoint: BestModelCheckpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        self.checkpoint.publish()


def seed_state_variables(model) -> list:
    """The model's random seed states (one per seed generator, e.g. of each Dropout
    layer), in model.variables order: the variables that are not weights. save_weights
    leaves them out."""
    weights = {id(variable) for variable in model.weights}
    states, seen = [], set()
    for variable in model.variables:
        if id(variable) not in weights and id(variable) not in seen:
            seen.add(id(variable))
            states.append(variable)
    return states


def seed_state_values(model) -> list:
    """[path, values] of each seed state, for backups.commit. Under a distribution
    strategy this reads the first replica's copy: each replica stores the same state."""
    return [[variable.path, np.asarray(variable.numpy()).tolist()]
            for variable in seed_state_variables(model)]


def restore_seed_states(model, backup: backups.Backup) -> None:
    """Assign the backup's seed states to the model (matched by position: a layer's
    automatic name can differ between processes). A backup written before they were
    stored leaves them as they are."""
    variables = seed_state_variables(model)
    if backup.seed_states is None:
        if variables:
            logging.info("the backup of epoch %d has no dropout seed state (written by an "
                         "earlier version): the resumed run's dropout masks start from "
                         "their initial state", backup.epoch)
        return
    if len(backup.seed_states) != len(variables):
        raise ValueError(f"the backup of epoch {backup.epoch} has "
                         f"{len(backup.seed_states)} seed states, the model "
                         f"{len(variables)}")
    for variable, (_, values) in zip(variables, backup.seed_states):
        # A plain assign: under MirroredStrategy it sets every replica's copy.
        variable.assign(np.asarray(values, dtype=variable.dtype).reshape(variable.shape))


class EpochBackup(keras.callbacks.Callback):
    """Resumes from `resume_from` (a verified backups.Backup, or None) when training
    begins; with `history_path` (the chief's copy) also commits a backup after every
    epoch and then rewrites history.csv from the committed rows.

    The backup (weights, optimizer state, dropout seed states, epoch, history rows,
    stopped) is one commit, so a kill anywhere leaves a state the run resumes from:
    history.csv is rewritten from the backup it resumes, never cut short or left with an
    epoch the weights do not include.
    Put it LAST, so an epoch is committed only after every other callback recorded it.
    A worker's copy (no `history_path`) restores the chief's backup and writes nothing.
    One instance serves every `fit` of a run trained in phases: it restores only at the
    first, and `row_labels` (e.g. the phase) are added to the rows it records.
    """

    def __init__(self, backup_dir, resume_from: backups.Backup | None,
                 history_path=None):
        super().__init__()
        self.backup_dir, self.resume_from, self.history_path = (
            backup_dir, resume_from, history_path)
        self.history = list(resume_from.history) if resume_from else []
        self.row_labels = {}

    def on_train_begin(self, logs=None):
        if self.resume_from is not None:
            # The optimizer's variables to load into exist: training.compiled_model builds
            # them with the model.
            self.model.load_weights(self.resume_from.weights_path)
            restore_seed_states(self.model, self.resume_from)
            self.resume_from = None  # a later phase's fit continues from memory
        if self.history_path is not None:
            write_history(self.history_path, self.history)

    def on_epoch_end(self, epoch, logs=None):
        if self.history_path is None:
            return
        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()},
               **self.row_labels}
        self.history.append(row)
        backups.commit(self.backup_dir, epoch + 1, self.model.save_weights, self.history,
                       stopped=bool(self.model.stop_training),
                       seed_states=seed_state_values(self.model))
        write_history(self.history_path, self.history)
