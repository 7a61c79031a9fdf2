"""Weight averaging (--ema_momentum): the averages are the EMA of the recorded weights, on
one device and through the replicated train step; validation and the best-epoch
model.keras use them. That a killed averaging run resumes to the identical history is
shown by tests/test_resume_safety.py, whose kill chain runs with --ema_momentum."""

import pytest

from tests.conftest import SMALL_MODEL
from tests.run_helpers import run_code, synthetic_cache, tagged_json

pytestmark = pytest.mark.long(seconds=33)  # scheduled by length (tests/conftest.py)

MOMENTUM = 0.9

# One process per device count, a warm fork (logical CPUs must be set before TensorFlow
# starts).
# Part 1 records the raw weights after every train step and computes the EMA itself;
# part 2 trains a run and scores its saved model.keras on the validation rows.
_SCRIPT = """
import json
import numpy as np
from scipy import stats
from dream_keras.distribute import split_cpu
split_cpu({devices})
import keras
from dream_keras.averaging import averaged_weights
from dream_keras.data.training_data import load_training_rows
from dream_keras.dataset import evaluation_dataset
from dream_keras.distribute import make_strategy
from dream_keras.model import load_model
from dream_keras.training import compiled_model, datasets, train
from dream_keras.training_config import TrainingConfig

strategy_name = "mirrored" if {devices} > 1 else "one_device"
def config(name, epochs):
    return TrainingConfig(train_data="{cache}", output_dir="{out}/" + name, epochs=epochs,
                          batch_size=32, steps_per_epoch=5, optimizer="adam",
                          learning_rate=1e-2, singleton_keep_prob=1.0,
                          validation_fraction=0.2, jit_compile=False,
                          strategy=strategy_name, ema_momentum={momentum},
                          model={model})

class Recorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.steps = []
    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([np.array(v) for v in self.model.trainable_variables])

keras.utils.set_random_seed(0)
strategy = make_strategy(strategy_name)
steps_config = config("steps", 1)
model, _, _ = compiled_model(steps_config, strategy, 5)
rows = load_training_rows(steps_config, 110)
train_batches, _, _ = datasets(steps_config, rows, strategy)
recorder = Recorder()
model.fit(train_batches, epochs=1, steps_per_epoch=5, callbacks=[recorder], verbose=0)
expected = recorder.steps[0]  # the first step copies the weights
for weights in recorder.steps[1:]:
    expected = [{momentum} * e + (1 - {momentum}) * w for e, w in zip(expected, weights)]
reported = averaged_weights(model.optimizer)
after_fit = [np.array(v) for v in model.trainable_variables]
last = recorder.steps[-1]

class EpochEnds(keras.callbacks.Callback):
    # raw weights and the optimizer's averages after each epoch's last step
    def on_train_begin(self, logs=None):
        self.raw, self.averages = [], []
    def on_train_batch_end(self, batch, logs=None):
        if batch == 4:
            self.raw.append([np.array(v) for v in self.model.trainable_variables])
            self.averages.append(averaged_weights(self.model.optimizer))

epoch_ends = EpochEnds()
record = train(config("run", 2), extra_callbacks=[epoch_ends])
saved = load_model("{out}/run/model.keras")
best = record["best_epoch"] - 1
saved_weights = [np.array(v) for v in saved.trainable_variables]
run_rows = load_training_rows(config("run", 2), 110)
predicted = np.concatenate([saved(x, training=False).numpy()[:, 0] for x in
                            evaluation_dataset(run_rows.validation_codes, batch_size=50)])
print("RESULTS " + json.dumps({{
    "replicas": strategy.num_replicas_in_sync, "steps": len(recorder.steps),
    "ema_error": max(float(np.abs(e - r).max()) for e, r in zip(expected, reported)),
    "ema_scale": max(float(np.abs(e).max()) for e in expected),
    "ema_vs_last": max(float(np.abs(e - w).max()) for e, w in zip(expected, last)),
    "model_after_fit_error": max(float(np.abs(a - r).max())
                                 for a, r in zip(after_fit, reported)),
    "best_val_pearson": record["best_metrics"]["val_pearson"],
    "saved_model_pearson": float(stats.pearsonr(predicted, run_rows.validation_targets)[0]),
    "epochs_recorded": len(epoch_ends.raw),
    "saved_vs_best_averages": max(float(np.abs(s - a).max()) for s, a in
                                  zip(saved_weights, epoch_ends.averages[best])),
    "saved_vs_best_raw": max(float(np.abs(s - w).max()) for s, w in
                             zip(saved_weights, epoch_ends.raw[best])),
}}))
"""


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return synthetic_cache(tmp_path_factory, 320)


@pytest.mark.parametrize("devices", [1, 2])
def test_averages_are_the_ema_of_the_weights_and_the_saved_model_holds_them(
        tmp_path, small_cache, devices):
    script = _SCRIPT.format(devices=devices, cache=small_cache, out=tmp_path,
                            momentum=MOMENTUM, model=repr(SMALL_MODEL))
    found = tagged_json(run_code(script, timeout=600).stdout, "RESULTS ")
    assert found["replicas"] == devices and found["steps"] == 5
    # The optimizer's averages are the EMA of the weights after each step (computed here
    # from the recorded weights), through the replicated train step too ...
    assert found["ema_error"] <= 1e-6 * max(1.0, found["ema_scale"])
    # ... and differ from the last weights, so the check above can fail.
    assert found["ema_vs_last"] > 1e-3
    # After fit the model holds the averages (Keras' finalize_variable_values).
    assert found["model_after_fit_error"] == 0.0
    # Validation ran on the averaged weights, and model.keras holds the best epoch's
    # averaged weights: its Pearson on the validation rows is the recorded one.
    assert found["saved_model_pearson"] == pytest.approx(found["best_val_pearson"], abs=1e-5)
    # model.keras holds exactly the best epoch's averages, not its raw weights (validation
    # and the checkpoint agreeing above would also hold if both used the raw weights).
    assert found["epochs_recorded"] == 2
    assert found["saved_vs_best_averages"] == 0.0
    assert found["saved_vs_best_raw"] > 1e-3


def test_each_phase_continues_from_the_raw_weights(tmp_path, small_cache):
    """Keras' fit ends by copying the averages into the model; the next phase's fit must
    start from the raw weights, as a run resumed at that phase boundary does (its backup
    holds the raw weights), or a killed and resumed run would differ."""
    import keras
    import numpy as np

    from dream_keras.averaging import averaged_weights
    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig

    class Observe(keras.callbacks.Callback):
        starts, raw_after_last_step = [], None

        def on_train_begin(self, logs=None):
            self.starts.append(([np.array(v) for v in self.model.trainable_variables],
                                averaged_weights(self.model.optimizer),
                                self.raw_after_last_step))

        def on_train_batch_end(self, batch, logs=None):  # after the step: raw weights
            self.raw_after_last_step = [np.array(v) for v in self.model.trainable_variables]

    observe = Observe()
    train(TrainingConfig(
        train_data=str(small_cache), output_dir=str(tmp_path / "run"), epochs=1,
        batch_size=32, passes_per_epoch=1, steps_per_epoch=3, optimizer="adam",
        learning_rate=1e-2, singleton_keep_prob=1.0, validation_fraction=0.2,
        jit_compile=False, ema_momentum=MOMENTUM, model=SMALL_MODEL, teacher="ridge",
        pretrain_epochs=1, pretrain_steps_per_epoch=3), extra_callbacks=[observe])
    assert len(observe.starts) == 2  # pre-training, fine-tuning
    weights, averages, raw_end_of_pretraining = observe.starts[1]
    for now, raw in zip(weights, raw_end_of_pretraining):
        np.testing.assert_array_equal(now, raw)
    assert max(float(np.abs(w - a).max()) for w, a in zip(weights, averages)) > 1e-4
