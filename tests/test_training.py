"""Training runs end to end: every output. (train.py's refusals, bad flag values and
foreign output directories among them, are cases of tests/test_fuzz_cli.py.)

Runs are tiny (a few hundred synthetic rows, batch 32) and skip XLA to save compile time;
the model tests cover the XLA train step. Replicas and workers: tests/test_distributed_*.py;
kill-and-resume and same-seed determinism: tests/test_resume_safety.py.
"""
import json
import os

import numpy as np
import pytest

from tests.conftest import SMALL_MODEL
from tests.run_helpers import history

pytestmark = pytest.mark.long(seconds=5)  # scheduled by length (tests/conftest.py)


def test_quickstart_path_writes_every_output(tmp_path):
    import keras

    from dream_keras.model import build_model
    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig

    config = TrainingConfig(train_data=str(tmp_path / "synthetic.txt"), synthetic_rows=300,
                            output_dir=str(tmp_path / "run"), epochs=2, batch_size=32,
                            passes_per_epoch=1, optimizer="adam", learning_rate=1e-3,
                            jit_compile=False, validation_fraction=0.2,
                            model=SMALL_MODEL)
    class Batches(keras.callbacks.Callback):  # an observer: extra_callbacks
        def on_train_begin(self, logs=None):
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(batch)

    batches = Batches()
    record = train(config, extra_callbacks=[batches])
    run = tmp_path / "run"
    assert {"model.keras", "target_scaler.json", "history.csv", "run.json",
            "tensorboard"} <= set(os.listdir(run))
    assert not (run / "backup").exists()  # removed once training ends
    saved = json.loads((run / "run.json").read_text())
    assert saved["status"] == "completed" and saved["num_replicas_in_sync"] == 1
    assert saved["diverged_epochs"] == []
    assert saved["flags"]["learning_rate"] == 1e-3 and saved["seed"] == 0
    data = saved["data"]
    assert data["rows_in_cache"] == 300 and data["train_rows"] + data["validation_rows"] == \
        data["rows_after_singleton_filter"] < 300  # half the singletons were dropped
    assert len(data["source_sha256"]) == 64
    assert saved["parameters"] == build_model(**SMALL_MODEL).count_params()
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert np.isfinite(float(rows[-1]["val_pearson"])) and saved["best_epoch"] in (1, 2)
    assert saved["best_metrics"]["val_pearson"] == max(float(r["val_pearson"]) for r in rows)
    scaler = json.loads((run / "target_scaler.json").read_text())
    assert scaler["mean"] == pytest.approx(data["target_mean"]) and scaler["std"] > 0
    assert record["status"] == "completed"
    assert batches.seen == list(range(record["steps_per_epoch"])) * 2  # every batch, 2 epochs


def test_steps_per_execution_must_divide_every_epochs_steps():
    """Keras rounds an epoch up to a multiple of it: 2 with 3 steps per epoch trained 4
    steps an epoch, and validation counted batches twice; refused before training."""
    from dream_keras.errors import ConfigurationError
    from dream_keras.phases import plan_phases
    from dream_keras.training import check_steps_per_execution
    from dream_keras.training_config import TrainingConfig

    phases = plan_phases(TrainingConfig(train_data="x", output_dir="y", teacher="ridge",
                                        pretrain_epochs=1, pretrain_steps_per_epoch=8), 6)
    check_steps_per_execution(2, phases, validation_steps=4)
    check_steps_per_execution(1, phases, validation_steps=3)
    with pytest.raises(ConfigurationError, match=r"--steps_per_execution=2 must divide .*"
                                                 r"\(validation steps: 3\)"):
        check_steps_per_execution(2, phases, validation_steps=3)
    with pytest.raises(ConfigurationError, match="finetune steps per epoch: 6"):
        check_steps_per_execution(4, phases, validation_steps=4)


@pytest.mark.parametrize("setting", [dict(learning_rate=float("nan")),
                                     dict(clipnorm=float("inf")),
                                     dict(model={"l2_weight": float("-inf")}),
                                     dict(ema_momentum=np.float32("nan"))],
                         ids=["learning_rate", "clipnorm", "model_l2_weight", "numpy_nan"])
def test_a_nan_or_infinite_setting_is_refused_when_the_config_is_made(setting):
    """Through the API too (the command lines refuse them as flag errors): nan passes
    every bound check, and would train on into NaN weights."""
    from dream_keras.errors import ConfigurationError
    from dream_keras.training_config import TrainingConfig

    name = next(iter(setting)) if "model" not in setting else "model l2_weight"
    with pytest.raises(ConfigurationError, match=rf"{name} must be a finite number, got"):
        TrainingConfig(train_data="x", output_dir="y", **setting)


def test_an_infinite_training_loss_with_finite_weights_ends_the_run_as_stopped_on_nan(
        tmp_path, small_cache):
    """Keras' TerminateOnNaN also stops on an infinite loss; with clipping the weights stay
    finite (the overflowing gradient becomes a zero step), and the run said 'completed'
    although it stopped after one of its three epochs."""
    import keras

    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig

    class HugeOutputBias(keras.callbacks.Callback):
        """After the first batch predictions are ~3e19: their square overflows float32."""

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 and not hasattr(self, "done"):
                self.done = bias = self.model.get_layer("expression").bias
                bias.assign(np.full(bias.shape, 3e19, bias.dtype))

    config = TrainingConfig(
        train_data=str(small_cache), output_dir=str(tmp_path / "run"), epochs=3,
        batch_size=32, steps_per_epoch=3, optimizer="rmsprop", learning_rate=1e-3,
        clipnorm=1.0, jit_compile=False, singleton_keep_prob=1.0, validation_fraction=0.2,
        model=SMALL_MODEL)
    record = train(config, extra_callbacks=[HugeOutputBias()])
    model = keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert record["status"] == "stopped_on_nan" and record["epochs_completed"] == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "stopped_on_nan"
