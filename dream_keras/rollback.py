"""Rolling back an epoch that left the model exploded (--rollback_exploded_epochs).

The faithful network's swish LSTM is unbounded. Ordinary updates (gradient norms ~1) can
carry its weights into a regime where the recurrence grows exponentially over the
sequence, first on a few training batches and then on most inputs. Validation (inference
mode) then reads a loss of 1e21, and no later epoch recovered (docs/small_data.md,
"Divergence": CV fold 3, seed 1). Skipping the exploding batches' updates did not prevent
it. So an epoch whose validation loss is above callbacks.EXPLODED_VALIDATION_LOSS or not
finite is undone: the weights, BatchNorm statistics and optimizer state return to where the epoch
started (the step counter keeps counting, and the data stream goes on to the next
epoch's batches), and the learning rate is halved for the rest of the run, every later
phase included. The epoch keeps its history.csv row, with `rolled_back` 1, so a resumed
run derives the same rate from history.csv.
"""
from __future__ import annotations

import keras
import numpy as np
from absl import logging

from dream_keras import averaging
from dream_keras.callbacks import exploded
from dream_keras.errors import ConfigurationError

ROLLED_BACK_COLUMN = "rolled_back"


def check_constant_rate(config) -> None:
    """Halving needs a learning rate that is a number, not a schedule."""
    if config.rollback_exploded_epochs and (config.lr_schedule != "constant"
                                            or config.lr_warmup_epochs):
        raise ConfigurationError("--rollback_exploded_epochs halves a constant learning "
                                 "rate: use --lr_schedule=constant --lr_warmup_epochs=0")


def rolled_back_epochs(history: list[dict]) -> list[int]:
    """The 1-based epochs of history.csv rows that were rolled back."""
    return [row["epoch"] + 1 for row in history if row.get(ROLLED_BACK_COLUMN) == 1]


class ExplodedEpochRollback(keras.callbacks.Callback):
    """Undoes an epoch whose validation loss exploded and halves the learning rate.

    Place it after every callback that changes the weights at epoch end (weight
    averaging puts the raw weights back) and before callbacks.EpochBackup, which then
    commits the restored state. `history` holds a resumed run's earlier rows."""

    def __init__(self, history: list[dict]):
        super().__init__()
        self.rollbacks = len(rolled_back_epochs(history))

    @property
    def rate_scale(self) -> float:
        """The factor on every phase's learning rate: 1/2 per rollback so far."""
        return 0.5 ** self.rollbacks

    def _restorable(self):
        optimizer = self.model.optimizer
        counter = optimizer.iterations
        return [*self.model.weights,
                *(v for v in optimizer.variables if v is not counter)]

    def on_epoch_begin(self, epoch, logs=None):
        self.start = [keras.ops.convert_to_numpy(v) for v in self._restorable()]
        self.start_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        rolled_back = exploded(logs)
        if rolled_back:
            for variable, value in zip(self._restorable(), self.start):
                variable.assign(value)
            if self.start_step == 0:  # the step counter runs on: averages must be real
                averaging.restart_averages(self.model)
            self.rollbacks += 1
            optimizer = self.model.optimizer
            # (a MirroredVariable under a replicated strategy: read through NumPy)
            rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * 0.5
            optimizer.learning_rate = rate
            logging.warning(
                "epoch %d: validation loss %.3g: the model exploded (docs/small_data.md, "
                "'Divergence'); its weights and optimizer state are back to where the "
                "epoch started, and the learning rate is halved to %.3g",
                epoch + 1, logs.get("val_loss", np.nan), rate)
        logs[ROLLED_BACK_COLUMN] = float(rolled_back)
