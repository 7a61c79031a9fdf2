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

With weight averaging (--ema_momentum) val_loss is the AVERAGED weights' loss, which lags
the raw weights that training continues from: an epoch whose raw weights exploded could
look sane and be kept, and every later epoch would then start from the exploded state and
be undone. So the rollback also validates the raw weights (`raw_validation_loss`) and
undoes the epoch when either loss exploded.
"""
from __future__ import annotations

from collections.abc import Callable

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


def validation_loss(model, data, steps: int) -> float:
    """The validation loss of the weights the model holds now (`model.evaluate`'s, as
    fit's val_loss). None of fit's callbacks run, so weight averaging swaps nothing in. It
    draws no random numbers (inference) and changes no variable but the compiled
    metrics' accumulators, which the next epoch resets (the epoch's logs hold their
    results already)."""
    return float(model.evaluate(data, steps=steps, verbose=0, return_dict=True)["loss"])


def rolled_back_epochs(history: list[dict]) -> list[int]:
    """The 1-based epochs of history.csv rows that were rolled back."""
    return [row["epoch"] + 1 for row in history if row.get(ROLLED_BACK_COLUMN) == 1]


class ExplodedEpochRollback(keras.callbacks.Callback):
    """Undoes an epoch whose validation loss exploded and halves the learning rate.

    Place it after every callback that changes the weights at epoch end (weight
    averaging puts the raw weights back) and before callbacks.EpochBackup, which then
    commits the restored state. `history` holds a resumed run's earlier rows.

    `raw_validation_loss(model)` (with weight averaging; e.g. `validation_loss` on the
    validation data) is the loss of the raw weights, in the model at this callback's epoch
    end: an epoch is also undone when it exploded. It is not added to the logs (a resumed
    run's history.csv keeps its columns)."""

    def __init__(self, history: list[dict],
                 raw_validation_loss: Callable[[keras.Model], float] | None = None):
        super().__init__()
        self.rollbacks = len(rolled_back_epochs(history))
        self.raw_validation_loss = raw_validation_loss

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
        raw_loss = None
        if not rolled_back and "val_loss" in logs and self.raw_validation_loss is not None:
            raw_loss = self.raw_validation_loss(self.model)
            rolled_back = exploded({"val_loss": raw_loss})
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
            loss = (f"validation loss {logs.get('val_loss', np.nan):.3g}"
                    if raw_loss is None else
                    f"validation loss of the raw (not averaged) weights {raw_loss:.3g}")
            logging.warning(
                "epoch %d: %s: the model exploded (docs/small_data.md, 'Divergence'); its "
                "weights and optimizer state are back to where the epoch started, and the "
                "learning rate is halved to %.3g", epoch + 1, loss, rate)
        logs[ROLLED_BACK_COLUMN] = float(rolled_back)
