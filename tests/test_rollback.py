"""--rollback_exploded_epochs: an epoch whose validation loss exploded is undone (weights,
BatchNorm statistics, optimizer state) and the learning rate halves for the rest of the
run; such an epoch is never the best one."""
import json

import keras
import numpy as np
import pytest

from dream_keras import callbacks
from dream_keras.callbacks import BestModelCheckpoint, best_epoch, exploded
from dream_keras.errors import ConfigurationError
from dream_keras.rollback import (ROLLED_BACK_COLUMN, ExplodedEpochRollback,
                                  check_constant_rate, rolled_back_epochs)
from dream_keras.training_config import TrainingConfig

pytestmark = pytest.mark.long(seconds=10)  # scheduled by length (tests/conftest.py)


def test_an_exploded_epoch_is_one_whose_validation_loss_is_huge_or_not_finite():
    assert exploded({"val_loss": 7e21}) and exploded({"val_loss": np.nan})
    assert exploded({"val_loss": np.inf})
    assert not exploded({"val_loss": 2.5}) and not exploded({"loss": 1e20})  # training only


def test_an_exploded_epoch_is_never_the_best():
    history = [{"epoch": 0, "val_pearson": 0.35, "val_loss": 2.1},
               {"epoch": 1, "val_pearson": 0.60, "val_loss": 7e21}]
    assert best_epoch(history)["epoch"] == 0


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _train_one_batch(model):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.train_on_batch(x, x[:, :1])


@pytest.mark.parametrize("val_loss, rolled_back", [(7e21, True), (np.nan, True),
                                                   (1.5, False)])
def test_the_callback_restores_the_epochs_start_and_halves_the_rate(val_loss, rolled_back):
    model = _model()
    _train_one_batch(model)  # non-zero optimizer state and BatchNorm statistics
    rollback = ExplodedEpochRollback(history=[])
    rollback.set_model(model)
    rollback.on_epoch_begin(0)
    start = [w.copy() for w in model.get_weights()]
    velocities = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    _train_one_batch(model)
    moved = [w.copy() for w in model.get_weights()]
    logs = {"loss": 1.0, "val_loss": val_loss}
    rollback.on_epoch_end(0, logs)
    assert logs[ROLLED_BACK_COLUMN] == float(rolled_back)
    expected = start if rolled_back else moved
    for now, then in zip(model.get_weights(), expected):  # BatchNorm statistics too
        np.testing.assert_array_equal(now, then)
    optimizer = model.optimizer
    assert int(optimizer.iterations.numpy()) == 2  # the step counter keeps counting
    assert float(optimizer.learning_rate) == pytest.approx(5e-3 if rolled_back else 1e-2)
    assert rollback.rate_scale == (0.5 if rolled_back else 1.0)
    if rolled_back:
        for variable, before in zip(optimizer.variables, velocities):
            if variable is not optimizer.iterations and "learning_rate" not in variable.path:
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), before)


def test_a_resumed_run_counts_the_rollbacks_in_its_history():
    history = [{"epoch": 0, ROLLED_BACK_COLUMN: 0.0}, {"epoch": 1, ROLLED_BACK_COLUMN: 1.0},
               {"epoch": 2, ROLLED_BACK_COLUMN: 1.0}, {"epoch": 3}]
    assert rolled_back_epochs(history) == [2, 3]
    assert ExplodedEpochRollback(history).rate_scale == 0.25


def test_best_model_checkpoint_skips_an_exploded_epoch(tmp_path):
    checkpoint = BestModelCheckpoint(tmp_path / "model.keras", history=[])
    checkpoint.set_model(_model())
    checkpoint.on_epoch_end(0, {"val_pearson": 0.9, "val_loss": 1e9})
    assert not (tmp_path / "model.keras").exists()
    checkpoint.on_epoch_end(1, {"val_pearson": 0.1, "val_loss": 1.0})
    # Pending until the epoch's backup commits (PublishBestModel calls publish).
    assert (tmp_path / "model.pending-epoch-000002.keras").exists()
    assert not (tmp_path / "model.keras").exists()
    checkpoint.publish()
    assert (tmp_path / "model.keras").exists()
    assert not list(tmp_path.glob("model.pending-*"))


def test_a_learning_rate_schedule_is_refused():
    for settings in ({"lr_schedule": "cosine"}, {"lr_warmup_epochs": 1.0}):
        config = TrainingConfig(train_data="x", output_dir="y", rollback_exploded_epochs=True,
                                **settings)
        with pytest.raises(ConfigurationError, match="constant learning rate"):
            check_constant_rate(config)
    check_constant_rate(TrainingConfig(train_data="x", output_dir="y",
                                       rollback_exploded_epochs=True))


@pytest.mark.parametrize("ema_momentum", [0.0, 0.9])
def test_a_phased_run_whose_every_epoch_explodes_or_turns_nan_ends_where_it_started(
        tmp_path, small_cache, monkeypatch, ema_momentum):
    """Every validation loss counts as exploded, and the first epoch's weights turn NaN:
    each epoch is undone, the fine-tuning phase starts at its rate halved once, and
    halves again. With weight averaging too: the weights kept past the end of a phase's
    fit are those the rollback restored, not the exploded ones."""
    from dream_keras.training import train
    from tests.conftest import SMALL_MODEL
    from tests.run_helpers import history

    monkeypatch.setattr(callbacks, "EXPLODED_VALIDATION_LOSS", -1.0)

    class Observe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.rates = getattr(self, "rates", [])
            if not hasattr(self, "start"):
                self.start = [w.copy() for w in self.model.get_weights()]

        def on_epoch_begin(self, epoch, logs=None):
            self.rates.append(float(self.model.optimizer.learning_rate))

        def on_train_end(self, logs=None):
            self.final_rate = float(self.model.optimizer.learning_rate)

    class NaNInFirstEpoch(keras.callbacks.Callback):
        """The output bias becomes NaN after the first batch: a NaN training loss."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 0 and batch == 0:
                bias = self.model.get_layer("expression").bias
                bias.assign(np.full(bias.shape, np.nan, bias.dtype))

    observe = Observe()
    config = TrainingConfig(
        train_data=str(small_cache), output_dir=str(tmp_path / "run"), epochs=1,
        batch_size=32, passes_per_epoch=1, optimizer="rmsprop", learning_rate=1e-3,
        jit_compile=False, singleton_keep_prob=1.0, validation_fraction=0.2,
        model=SMALL_MODEL, teacher="ridge", pretrain_epochs=1, pretrain_steps_per_epoch=3,
        pretrain_learning_rate=4e-3, rollback_exploded_epochs=True,
        ema_momentum=ema_momentum)
    # Epoch 1 also ends with NaN weights: without rollback it would end the run (Keras'
    # TerminateOnNaN); with it, the epoch runs to its end, is undone, and fine-tuning runs.
    record = train(config, extra_callbacks=[observe, NaNInFirstEpoch()])
    assert record["status"] == "completed" and record["epochs_completed"] == 2
    assert record["diverged_epochs"] == [1]  # the NaN training loss
    # Fit-time observers run before the rollback: the rate each epoch trained at.
    assert observe.rates == pytest.approx([4e-3, 5e-4])
    assert observe.final_rate == pytest.approx(2.5e-4)
    # The run ends on the weights it started from (with weight averaging: no step was
    # kept, so there is no average; the raw weights stand for it, not Keras' zeros).
    saved_model = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    for before, after in zip(observe.start, saved_model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert [float(row[ROLLED_BACK_COLUMN]) for row in history(tmp_path / "run")] == [1, 1]
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["rolled_back_epochs"] == [1, 2] == record["rolled_back_epochs"]
    assert saved["best_epoch"] is None  # no epoch kept its model


def test_with_weight_averaging_an_epoch_whose_raw_weights_exploded_is_rolled_back(
        tmp_path, small_cache):
    """val_loss reads the averaged weights, which lag the raw ones: raw weights thrown out
    at an epoch's last step pass it, and every later epoch would start from them (and be
    undone). The rollback validates the raw weights too and undoes THAT epoch."""
    from dream_keras.training import train
    from tests.conftest import SMALL_MODEL
    from tests.run_helpers import history

    steps = 4

    class ExplodeRawWeightsAtEndOfEpoch2(keras.callbacks.Callback):
        """After epoch 2's last step the output bias is 1e3: only the raw weights (the
        averages were updated in the step) explode."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.rates = getattr(self, "rates", [])
            self.rates.append(float(self.model.optimizer.learning_rate))

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == steps - 1:
                bias = self.model.get_layer("expression").bias
                bias.assign(np.full(bias.shape, 1e3, bias.dtype))

    observe = ExplodeRawWeightsAtEndOfEpoch2()
    config = TrainingConfig(
        train_data=str(small_cache), output_dir=str(tmp_path / "run"), epochs=3,
        batch_size=32, steps_per_epoch=steps, optimizer="adam", learning_rate=1e-3,
        jit_compile=False, singleton_keep_prob=1.0, validation_fraction=0.2,
        model=SMALL_MODEL, rollback_exploded_epochs=True, ema_momentum=0.9)
    record = train(config, extra_callbacks=[observe])
    rows = history(tmp_path / "run")
    assert [float(row[ROLLED_BACK_COLUMN]) for row in rows] == [0, 1, 0]
    assert float(rows[1]["val_loss"]) < callbacks.EXPLODED_VALIDATION_LOSS  # the averages'
    assert record["rolled_back_epochs"] == [2] and record["diverged_epochs"] == []
    assert observe.rates == pytest.approx([1e-3, 1e-3, 5e-4])


def test_early_stopping_never_counts_an_exploded_epoch_as_an_improvement():
    from dream_keras.callbacks import ResumableEarlyStopping

    stopping = ResumableEarlyStopping([], monitor="val_pearson", patience=2)
    stopping.set_model(_model())
    stopping.on_train_begin()
    for epoch, logs in enumerate([{"val_pearson": 0.3, "val_loss": 2.0},
                                  {"val_pearson": 0.9, "val_loss": 7e21},
                                  {"val_pearson": 0.2, "val_loss": 2.0}]):
        stopping.on_epoch_end(epoch, logs)
    assert stopping.best == 0.3 and stopping.model.stop_training


@pytest.mark.parametrize("values", [
    [np.nan, np.nan, 0.3, 0.2, 0.2, 0.2],          # NaN first: no lasting "best"
    ["exploded", "exploded", "exploded", 0.3, 0.2],  # exploded first: no improvement
    [0.1, "exploded", 0.4, np.nan, 0.3, 0.2],
])
def test_early_stopping_stops_at_the_same_epoch_resumed_or_not(values):
    """Keras starts with no best, so ANY first epoch (NaN, exploded) was an improvement in
    an uninterrupted run but not in a resumed one, which reads its best from history."""
    from dream_keras.callbacks import ResumableEarlyStopping

    def logs(value):
        return ({"val_pearson": 0.9, "val_loss": 7e21} if value == "exploded"
                else {"val_pearson": value, "val_loss": 2.0})

    def stopping_epoch(resume_at):
        rows = [{"epoch": e, **logs(v)} for e, v in enumerate(values[:resume_at])]
        stopping = ResumableEarlyStopping(rows, monitor="val_pearson", patience=2)
        stopping.set_model(_model())
        stopping.on_train_begin()
        for epoch in range(resume_at, len(values)):
            stopping.on_epoch_end(epoch, logs(values[epoch]))
            if stopping.model.stop_training:
                return epoch
        return None

    uninterrupted = stopping_epoch(0)
    assert uninterrupted is not None
    assert [stopping_epoch(k) for k in range(1, uninterrupted + 1)] == [uninterrupted] * \
        uninterrupted


def test_train_py_last_line_names_diverged_and_rolled_back_epochs():
    from dream_keras.cli.train import outcome_line

    record = {"status": "completed", "best_epoch": 7, "best_metrics": {"val_pearson": 0.531},
              "diverged_epochs": [2, 4, 5], "rolled_back_epochs": [2, 5],
              "flags": {"output_dir": "runs/x"}}
    assert outcome_line(record) == (
        "completed: best epoch 7, val_pearson 0.5310 (training DIVERGED in epochs 2, 4-5) "
        "(epochs 2, 5 ROLLED BACK: the model exploded); outputs in runs/x")
    record.update(diverged_epochs=[], rolled_back_epochs=[])
    assert outcome_line(record) == ("completed: best epoch 7, val_pearson 0.5310; outputs "
                                    "in runs/x")
