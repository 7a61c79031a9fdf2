"""Weight averaging (EMA): validation, the best-epoch model.keras and the final model use
the optimizer's exponential moving average of the weights, while training continues
from the raw weights (in every phase of a phased run too).

The average is Keras' own (`use_ema=True`, `ema_momentum=m` on the optimizer): after
each optimizer step, average <- m * average + (1 - m) * weights (the first step copies
the weights). The averages are optimizer variables, so the epoch backup
(callbacks.EpochBackup) saves and restores them with the rest of the optimizer state, and
the replicated train step (distribute.ReplicaTrainer), which calls
`optimizer.apply_gradients`, updates them too. They are found through the public
`optimizer.variables`, by the name Keras gives an optimizer variable made from a
trainable one (the trainable variable's path, then "_average"), in the order of the
trainable variables they were built from (checked: one average per trainable variable).

keras.callbacks.SwapEMAWeights(swap_on_epoch=True) would leave the averaged weights in
the model when the backup is saved at the end of the epoch (raw and averaged weights
would come back exchanged on resume), and it swaps by addition and subtraction, which
rounds. Here the swap is an exact copy, and it happens in validation
(`AveragedWeightsForValidation`), around the epoch-end callbacks that save the model
(`AveragedWeightsIn` before the best-model checkpoint, `AveragedWeightsOut` before the
backup), at the end of every `fit` (`RawWeightsAfterFit` puts the raw weights back after
Keras copies the averages in) and around the final save (`averages_in`). BatchNorm moving
statistics are not trainable weights: they are not averaged.
"""
from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops


def ema_enabled(momentum: float) -> bool:
    """--ema_momentum: 0 is off (the original recipe); otherwise in (0, 1)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"the EMA momentum must be in [0, 1) (0: off), got {momentum}")
    return momentum > 0.0


def averaging_optimizer(optimizer: keras.optimizers.Optimizer):
    """The optimizer holding the averages (the inner one of a LossScaleOptimizer)."""
    inner = getattr(optimizer, "inner_optimizer", None)
    return inner if inner is not None else optimizer


def averaged_weights(optimizer) -> list[np.ndarray]:
    """The optimizer's moving averages, one per trainable variable, as NumPy arrays."""
    optimizer = averaging_optimizer(optimizer)
    if not getattr(optimizer, "use_ema", False):
        raise ValueError("the optimizer does not average weights (use_ema is off)")
    return [ops.convert_to_numpy(average) for average in _averages(optimizer)]


def _averages(optimizer) -> list:
    """The optimizer's moving-average variables, in trainable-variable order."""
    averages = [variable for variable in optimizer.variables
                if variable.name.endswith("_average")]
    if not averages:
        raise ValueError("the optimizer holds no moving averages (not built, or use_ema off)")
    return averages


def restart_averages(model) -> None:
    """Set the optimizer's averages to the model's trainable weights, as Keras' first
    step does. For a rollback to before the first step: its averages were Keras' zero
    placeholders, and since the step counter is not rolled back, the next step would
    average from zero instead of copying the weights."""
    optimizer = averaging_optimizer(model.optimizer)
    if getattr(optimizer, "use_ema", False):
        for variable, average in zip(model.trainable_variables, _averages(optimizer)):
            average.assign(variable)


class _Swap:
    """Exchanges a model's trainable weights with the optimizer's averages (exact copies),
    and remembers which of the two the model holds, so every swap is idempotent."""

    def __init__(self):
        self.averaged_in_model = False

    def _exchange(self, model) -> None:
        optimizer = averaging_optimizer(model.optimizer)
        trainable, averages = model.trainable_variables, _averages(optimizer)
        if len(trainable) != len(averages):
            raise ValueError(f"{len(averages)} moving averages for {len(trainable)} "
                             "trainable variables")
        for variable, average in zip(trainable, averages):
            raw = ops.copy(ops.convert_to_tensor(variable))
            variable.assign(average)
            average.assign(raw)

    def average_in(self, model) -> None:
        if not self.averaged_in_model:
            self._exchange(model)
            self.averaged_in_model = True

    def raw_in(self, model) -> None:
        if self.averaged_in_model:
            self._exchange(model)
            self.averaged_in_model = False


@contextlib.contextmanager
def averages_in(model, momentum: float):
    """Inside the block the model holds the averaged weights (unchanged when momentum is
    0): for a save outside the epoch-end callbacks, e.g. the final model."""
    if not ema_enabled(momentum):
        yield
        return
    swap = _Swap()
    swap.average_in(model)
    try:
        yield
    finally:
        swap.raw_in(model)


class AveragedWeightsForValidation(keras.callbacks.Callback):
    """Validation passes run on the averaged weights."""

    def __init__(self, swap: _Swap):
        super().__init__()
        self._swap = swap

    def on_test_begin(self, logs=None):
        self._swap.average_in(self.model)

    def on_test_end(self, logs=None):
        self._swap.raw_in(self.model)


class AveragedWeightsIn(keras.callbacks.Callback):
    """At the end of an epoch, puts the averaged weights in the model (for the callbacks
    after it, e.g. the best-model checkpoint)."""

    def __init__(self, swap: _Swap):
        super().__init__()
        self._swap = swap

    def on_epoch_end(self, epoch, logs=None):
        self._swap.average_in(self.model)


class AveragedWeightsOut(keras.callbacks.Callback):
    """At the end of an epoch, puts the raw weights back (before the backup saves the
    training state, so a resumed run continues from the raw weights)."""

    def __init__(self, swap: _Swap):
        super().__init__()
        self._swap = swap

    def on_epoch_end(self, epoch, logs=None):
        self._swap.raw_in(self.model)


class RawWeightsAfterFit(keras.callbacks.Callback):
    """Keras ends `fit` by copying the averages into the model (`finalize_variable_values`);
    this puts back the raw weights of the last epoch's end, as the epoch backup holds them
    (taken after every other epoch-end callback, an exploded epoch's rollback included),
    so the next phase's `fit` continues from them, as a run resumed from the backup at that
    phase boundary does."""

    def __init__(self):
        super().__init__()
        self._raw = None

    def on_epoch_end(self, epoch, logs=None):
        self._raw = [ops.convert_to_numpy(v) for v in self.model.trainable_variables]

    def on_train_end(self, logs=None):
        if self._raw is not None:
            for variable, value in zip(self.model.trainable_variables, self._raw):
                variable.assign(value)
            self._raw = None


def averaged_weight_callbacks(momentum: float) -> tuple[list, list, list]:
    """(first, raw_back, last) callback lists for fit, all empty when momentum is 0.
    `first` (validation on the averages; averages into the model at the end of an epoch)
    goes before the callbacks that save the model; `raw_back` (raw weights back) after
    them; `last` (the raw weights kept past the end of fit) after every other epoch-end
    callback but the backup."""
    if not ema_enabled(momentum):
        return [], [], []
    swap = _Swap()
    return ([AveragedWeightsForValidation(swap), AveragedWeightsIn(swap)],
            [AveragedWeightsOut(swap)], [RawWeightsAfterFit()])
