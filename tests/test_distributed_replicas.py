"""Replicated training on logical CPUs: XLA per replica, replica-count invariance, exact
whole-set validation Pearson, and a saved model that loads as a plain functional model.

Each test runs one process of its own (a warm fork, tests/warm_fork.py: logical devices
must be configured before TensorFlow starts) that trains a small model several times with dream_keras.training.train.
"""

import pytest

from tests.conftest import SMALL_MODEL
from tests.run_helpers import run_code, synthetic_cache, tagged_json

pytestmark = pytest.mark.long(seconds=190)  # scheduled by length (tests/conftest.py)

_SCRIPT = """
import json, sys
import numpy as np
from scipy import stats
from dream_keras.distribute import split_cpu
split_cpu({devices})
import keras
import dream_keras.model  # registers the package's layers for keras.models.load_model
from dream_keras import callbacks
from dream_keras.data.training_data import load_training_rows
from dream_keras.data.sequences import one_hot
from dream_keras.training import train
from dream_keras.training_config import TrainingConfig

class StartWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]

results = {{}}
exploded_above = callbacks.EXPLODED_VALIDATION_LOSS
for name, settings in {runs}.items():
    callbacks.EXPLODED_VALIDATION_LOSS = settings.pop("exploded_above", exploded_above)
    start = StartWeights()
    model = dict({model}, **settings.pop("model", {{}}))
    config = TrainingConfig(train_data="{cache}", output_dir="{out}/" + name, epochs=1,
                            batch_size=settings.pop("batch_size"), passes_per_epoch=1,
                            optimizer="adam", learning_rate=1e-3, singleton_keep_prob=1.0,
                            validation_fraction=0.2, model=model, **settings)
    record = train(config, extra_callbacks=[start])
    saved = keras.models.load_model(f"{out}/{{name}}/model.keras")  # compiled load
    unchanged = all(np.array_equal(a, b) for a, b in zip(start.weights, saved.get_weights()))
    assert type(saved).__name__ == "Functional", type(saved)  # a plain functional model
    rows = load_training_rows(config, 110)
    codes = rows.validation_codes
    predicted = np.concatenate([saved(one_hot(codes[i:i + 50]), training=False).numpy()[:, 0]
                                for i in range(0, len(codes), 50)])
    lstm = saved.get_layer("bilstm")
    sigmas = [float(np.linalg.svd(layer.cell.recurrent_kernel.numpy(), compute_uv=False)[0])
              for layer in (lstm.forward_layer, lstm.backward_layer)]
    units = lstm.forward_layer.cell.units
    cell_feedback_max = max(
        float(layer.cell.recurrent_kernel.numpy()[:, 2 * units:3 * units].max())
        for layer in (lstm.forward_layer, lstm.backward_layer))
    results[name] = {{"record": record, "recurrent_sigmas": sigmas,
                     "cell_feedback_max": cell_feedback_max,
                     "scipy_pearson": float(stats.pearsonr(predicted,
                                                           rows.validation_targets)[0]),
                     "validation_rows": len(rows.validation_targets),
                     "weights_unchanged": unchanged}}
print("RESULTS " + json.dumps(results, default=str))
"""


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return synthetic_cache(tmp_path_factory, 335)  # 67 validation rows: a prime


def _train_runs(tmp_path, cache, devices: int, runs: dict) -> dict:
    script = _SCRIPT.format(devices=devices, runs=repr(runs), model=repr(SMALL_MODEL),
                            cache=cache, out=tmp_path)
    result = run_code(script, timeout=600)
    return tagged_json(result.stdout, "RESULTS "), result.stderr


def _history(tmp_path, name) -> dict:
    import csv

    with open(tmp_path / name / "history.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    return {key: float(value) for key, value in row.items()}


def test_one_and_two_replicas_give_the_same_history_and_two_compile_per_replica(
        tmp_path, small_cache):
    results, log = _train_runs(tmp_path, small_cache, 2, {
        "one": {"batch_size": 32, "strategy": "one_device",
                "model": {"batchnorm_sync": True}},
        "two_synchronised": {"batch_size": 32, "strategy": "mirrored",
                             "model": {"batchnorm_sync": True}},
        "two_xla": {"batch_size": 32, "strategy": "mirrored"},  # the default: per replica
    })
    xla = {name: result["record"]["xla"]["train_step"] for name, result in results.items()}
    assert xla == {"one": "whole_step", "two_synchronised": "off", "two_xla": "per_replica"}
    assert [r["record"]["num_replicas_in_sync"] for r in results.values()] == [1, 2, 2]
    # Said once, in the log and in run.json, for the one run that cannot use XLA.
    assert log.count("XLA is off for the train step") == 1
    assert "batchnorm_sync" in results["two_synchronised"]["record"]["xla"]["reason"]

    one, two = _history(tmp_path, "one"), _history(tmp_path, "two_synchronised")
    per_replica = _history(tmp_path, "two_xla")
    # Training metrics (batch statistics): synchronised BatchNorm does the same maths on 1
    # and 2 replicas; only the order of float32 sums differs (all-reduced halves; XLA on
    # one side), ~1e-7 relative per step. Measured over 8 Adam steps: 6e-7 on the loss,
    # 6e-7 on pearson. Per-replica statistics (two_xla) move the loss by ~1e-2.
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["pearson"] == pytest.approx(one["pearson"], abs=1e-5)
    assert abs(per_replica["loss"] / one["loss"] - 1) > 1e-3
    # Validation uses the moving statistics, which also follow the convolution biases. A
    # bias in front of a BatchNorm has a true gradient of exactly 0, so its gradient is
    # float rounding noise (~1e-5), and Adam scales that noise up to learning-rate-sized
    # steps in whatever direction the rounding points: the biases (and through the
    # moving means, validation outputs) drift apart by ~lr per step in ANY two runs that
    # round differently. Measured: val_loss 0.75 %, val_pearson 0.003 apart.
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=0.03)
    assert two["val_pearson"] == pytest.approx(one["val_pearson"], abs=0.015)

    for name, result in results.items():
        # val_pearson (from the metric's float64 sums over the padded, replica-split
        # validation batches) is scipy's Pearson r of the saved model's predictions.
        history = _history(tmp_path, name)
        assert history["val_pearson"] == pytest.approx(result["scipy_pearson"], abs=1e-5)
        assert history["val_pearson_r2"] == pytest.approx(history["val_pearson"] ** 2,
                                                          abs=1e-7)
        # Validation rows divisible by neither the batch nor the replicas: padded batches.
        assert all(result["validation_rows"] % k for k in (32, 2))


def test_three_replicas_train_with_xla_per_replica(tmp_path, small_cache):
    results, _ = _train_runs(tmp_path, small_cache, 3, {
        # With the opt-in recurrent constraints, which the replicated update must apply.
        "three_xla": {"batch_size": 30, "strategy": "mirrored",
                      "model": {"lstm_recurrent_norm_cap": 0.5,
                                "lstm_nonpositive_cell_feedback": True}},
        # Every validation loss counts as exploded: the epoch is undone on every replica
        # (restoring variables between epochs does not involve XLA: not compiled here).
        "three_rolled_back": {"batch_size": 30, "strategy": "mirrored", "jit_compile": False,
                              "rollback_exploded_epochs": True, "exploded_above": -1.0},
        # The small-data machinery on replicas: pre-training on generated sequences labelled
        # by the ridge and the run above (in the input pipeline), augmented fine-tuning,
        # weight averaging. Without XLA, to keep the test short (XLA per replica: above).
        "three_phased": {"batch_size": 30, "strategy": "mirrored", "jit_compile": False,
                         "teacher": f"ridge,{tmp_path}/three_xla",
                         "pretrain_epochs": 1, "pretrain_steps_per_epoch": 3,
                         "augment_mutation_rate": 0.05, "augment_deletion_max": 4,
                         "ema_momentum": 0.9},
    })
    assert not results["three_xla"]["weights_unchanged"]
    assert results["three_rolled_back"]["weights_unchanged"]
    assert results["three_rolled_back"]["record"]["rolled_back_epochs"] == [1]
    result = results["three_xla"]
    assert result["record"]["xla"]["train_step"] == "per_replica"
    assert result["record"]["num_replicas_in_sync"] == 3
    assert result["record"]["status"] == "completed"
    assert all(result["validation_rows"] % k for k in (30, 3))  # padded batches
    assert all(0.4 < sigma <= 0.5 * (1 + 1e-5) for sigma in result["recurrent_sigmas"])
    assert min(results["three_rolled_back"]["recurrent_sigmas"]) > 0.99  # orthogonal start
    assert result["cell_feedback_max"] == 0.0  # some entries sit at 0: none above
    assert results["three_rolled_back"]["cell_feedback_max"] > 0.0
    history = _history(tmp_path, "three_xla")
    assert history["val_pearson"] == pytest.approx(result["scipy_pearson"], abs=1e-5)
    phased = results["three_phased"]
    assert phased["record"]["status"] == "completed" and not phased["weights_unchanged"]
    assert [p["name"] for p in phased["record"]["phases"]] == ["pretrain", "finetune"]
    assert phased["record"]["num_replicas_in_sync"] == 3
    # model.keras (the best epoch's averages) scores the validation rows as recorded.
    best = phased["record"]["best_metrics"]["val_pearson"]
    assert best == pytest.approx(phased["scipy_pearson"], abs=1e-5)


def test_pearson_metric_is_scipys_over_uneven_weighted_batches():
    import numpy as np
    from scipy import stats

    from dream_keras.streaming_metrics import PearsonR

    rng = np.random.default_rng(3)
    y = rng.normal(5.0, 2.0, 20_011)  # offset means: the sums must not cancel badly
    x = (0.4 * y + rng.normal(-3.0, 1.5, y.size)).astype(np.float32)
    r, r2 = PearsonR(), PearsonR(name="pearson_r2", squared=True)
    for start, stop in ((0, 1), (1, 4097), (4097, 12_000), (12_000, 20_011)):
        padding = np.zeros(7)  # weight-0 rows, as evaluation padding, must not count
        for metric in (r, r2):
            metric.update_state(np.concatenate([y[start:stop], padding + 99.0]),
                                np.concatenate([x[start:stop], padding - 99.0]),
                                sample_weight=np.concatenate([np.ones(stop - start),
                                                              padding]))
    expected = stats.pearsonr(x.astype(np.float64), y)[0]
    assert float(r.result()) == pytest.approx(expected, abs=1e-5)
    assert float(r2.result()) == pytest.approx(expected ** 2, abs=1e-5)
    r.reset_state()
    r.update_state(np.ones(5), np.arange(5.0))  # a constant side has no correlation
    assert np.isnan(float(r.result()))


_ONE_STEP_SCRIPT = """
import json
import numpy as np, tensorflow as tf, keras
from dream_keras.distribute import ReplicaTrainer, make_strategy, split_cpu
from dream_keras.optimizers import make_optimizer
from dream_keras.streaming_metrics import pearson_metrics
split_cpu(2)
strategy = make_strategy("mirrored")
x = np.ones((8, 1), "float32")

def one_step(y, replicated, **optimizer):
    def build():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
            1, kernel_initializer="zeros", dtype=optimizer.get("dtype"))])
        opt = make_optimizer("rmsprop_tf2", 0.1, clipnorm=optimizer.get("clipnorm", 0.0),
                             loss_scaling="dtype" in optimizer)
        model.compile(opt, loss="mse")
        opt.build(model.trainable_variables)
        return model, opt
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    if not replicated:
        model, opt = build()
        model.fit(batches, epochs=1, verbose=0)
    else:
        with strategy.scope():
            model, opt = build()
            trainer = ReplicaTrainer(model, pearson_metrics(), jit_gradients=False,
                                     jit_forward=False)
            trainer.compile(optimizer=opt, jit_compile=False)
        trainer.fit(strategy.experimental_distribute_dataset(batches), epochs=1, verbose=0)
    scale = float(keras.ops.convert_to_numpy(opt.dynamic_scale)) if "dtype" in optimizer else 1
    return [float(w) for w in np.concatenate([w.ravel() for w in model.get_weights()])] + [scale]

# Replica 0's rows pull hard one way, replica 1's a little the other way.
opposed = np.where(np.arange(8)[:, None] < 4, 100.0, -3.0).astype("float32")
# Only replica 1's rows overflow float16 once the loss is scaled (initial scale 32768).
overflowing = np.where(np.arange(8)[:, None] < 4, 1.0, 3e4).astype("float32")
print("RESULTS " + json.dumps({
    "clipped": [one_step(opposed, r, clipnorm=1.0) for r in (False, True)],
    "float16": [one_step(overflowing, r, dtype="mixed_float16") for r in (False, True)]}))
"""


def test_clipping_and_loss_scaling_see_the_global_gradient_on_replicas():
    """One step, one device against 2 replicas: --clipnorm clips the SUMMED gradient (Keras
    clips each replica's share: here +1 and -1, which cancel), and the float16 loss-scale
    optimizer skips a step that overflowed on replica 1 only (Keras checks replica 0's)."""
    found = tagged_json(run_code(_ONE_STEP_SCRIPT, timeout=300).stdout, "RESULTS ")
    one, two = found["clipped"]
    assert one[0] == pytest.approx(0.1 * 10 ** 0.5, rel=1e-4)  # clipped, then RMSprop's step
    assert two == pytest.approx(one, rel=1e-6)
    one, two = found["float16"]
    assert one == [0.0, 0.0, 16384.0]  # the step skipped, the scale halved
    assert two == one


def test_synchronised_batchnorm_trains_on_a_single_mirrored_replica(tmp_path, small_cache):
    """One GPU with --strategy=mirrored: Keras all-reduces synchronised BatchNorm even
    across one replica, which an XLA program cannot hold; the step runs without XLA."""
    results, _ = _train_runs(tmp_path, small_cache, 1, {
        "one_mirrored": {"batch_size": 32, "strategy": "mirrored",
                         "model": {"batchnorm_sync": True}}})
    record = results["one_mirrored"]["record"]
    assert record["num_replicas_in_sync"] == 1 and record["status"] == "completed"
    assert record["xla"]["train_step"] == "off"
    assert _history(tmp_path, "one_mirrored")["val_pearson"] == pytest.approx(
        results["one_mirrored"]["scipy_pearson"], abs=1e-5)


_DROPOUT_SCRIPT = """
import json
import numpy as np
from dream_keras.distribute import ReplicaTrainer, make_strategy, split_cpu
split_cpu(2)
import keras
import tensorflow as tf
from dream_keras.streaming_metrics import pearson_metrics
strategy = make_strategy("mirrored")
with strategy.scope():
    network = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5),
                                keras.layers.Dense(1, kernel_initializer="ones",
                                                   use_bias=False)])
    trainer = ReplicaTrainer(network, pearson_metrics(), jit_gradients=True,
                             jit_forward=True)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
(state,) = [v for v in network.non_trainable_variables if "seed" in v.path]
before = keras.ops.convert_to_numpy(state)
batches = tf.data.Dataset.from_tensor_slices((np.ones((8, 64), "float32"),
                                              np.zeros((8, 1), "float32"))).batch(8)

@tf.function
def step(batch):
    def kept(x, y):
        trainable, non_trainable = trainer.weight_values()
        return trainer.replica_gradients(trainable, non_trainable, x, y,
                                         tf.ones(tf.shape(y)[:1]), tf.constant(1.0))[3]
    return strategy.run(kept, args=batch)

kept = [v.numpy().ravel().tolist() for v in strategy.experimental_local_results(
    step(next(iter(strategy.experimental_distribute_dataset(batches)))))]
trainer.fit(batches, epochs=1, verbose=0)
print("RESULT " + json.dumps({
    "kept": kept, "before": before.tolist(),
    "after": [v.numpy().tolist()
              for v in strategy.experimental_local_results(state.value)]}))
"""


def test_each_replica_draws_its_own_dropout_masks_from_one_stored_seed_state():
    """Dropout on identical rows: the two replicas' rows keep different units (as rows
    of one batch do on one device), and after a train step the seed state each replica
    stores is the same, advanced once."""
    found = tagged_json(run_code(_DROPOUT_SCRIPT).stdout, "RESULT ")
    first, second = found["kept"]
    assert len(first) == len(second) == 4 and first != second
    assert found["after"][0] == found["after"][1] != found["before"]
    assert found["after"][0][0] == found["before"][0]  # the seed itself is unchanged


_BACKUP_LAYOUT_SCRIPT = """
import json
import numpy as np
from dream_keras.distribute import split_cpu
split_cpu(2)
import keras
import tensorflow as tf
from dream_keras.distribute import ReplicaTrainer
from dream_keras.training import compiled_model
from dream_keras.training_config import TrainingConfig

config = TrainingConfig(train_data="unused.txt", output_dir="unused", batch_size=8,
                        optimizer="adam", model={model}, jit_compile=False)
trainer = compiled_model(config, tf.distribute.MirroredStrategy(), 10)[0]
plain = compiled_model(config, tf.distribute.get_strategy(), 10)[0]
assert isinstance(trainer, ReplicaTrainer) and not isinstance(plain, ReplicaTrainer)
rng = np.random.default_rng(0)

def state(model):
    network = getattr(model, "network", model)
    return [np.asarray(v) for v in network.weights + model.optimizer.variables]

def scramble(model):
    network = getattr(model, "network", model)
    for variable in network.weights + model.optimizer.variables:
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))

def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

found = {{}}
for source, target, name in ((trainer, plain, "two_to_one"), (plain, trainer, "one_to_two")):
    scramble(source)
    source.save_weights(name + ".weights.h5")
    target.load_weights(name + ".weights.h5")
    found[name] = same(state(source), state(target))
# A backup of an earlier release, written from the trainer itself, still loads.
scramble(trainer)
keras.Model.save_weights(trainer, "old.weights.h5")
written = state(trainer)
scramble(trainer)
trainer.load_weights("old.weights.h5")
found["earlier_release"] = same(written, state(trainer))

# End to end: a --strategy=auto run started where 2 GPUs are visible (logical CPUs stand in
# for them), stopped after epoch 1, resumed where 1 is visible.
from dream_keras.training import train
listed = tf.config.list_logical_devices

class StopAtEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("stopped")

run = TrainingConfig(train_data="{cache}", output_dir="run", epochs=2, batch_size=32,
                     passes_per_epoch=1, optimizer="adam", learning_rate=1e-3,
                     singleton_keep_prob=1.0, validation_fraction=0.2, model={model},
                     strategy="auto", jit_compile=False)
for gpus, callbacks in ((2, [StopAtEpoch2()]), (1, [])):
    tf.config.list_logical_devices = (
        lambda kind=None, gpus=gpus: listed("CPU")[:gpus] if kind == "GPU" else listed(kind))
    try:
        record = train(run, extra_callbacks=callbacks)
    except RuntimeError as error:
        assert str(error) == "stopped", error
found["resumed"] = {{key: record.get(key) for key in ("status", "num_replicas_in_sync",
                                                    "replica_changes")}}
print("RESULT " + json.dumps(found))
"""


def test_an_epoch_backup_resumes_on_another_number_of_replicas(tmp_path, small_cache):
    """The backup (weights and optimizer state) of a 2-replica run loads into a 1-device
    run and back (the trainer writes the plain network's layout; it failed with 'expected
    2 variables, but received 0' on a job rescheduled onto another number of GPUs), and a
    backup written from the trainer by an earlier release still loads; a run stopped on 2
    replicas resumes on 1, saying so in a warning and in run.json."""
    script = _BACKUP_LAYOUT_SCRIPT.format(model=repr(SMALL_MODEL), cache=small_cache)
    result = run_code(script, cwd=tmp_path)
    found = tagged_json(result.stdout, "RESULT ")
    assert found == {"two_to_one": True, "one_to_two": True, "earlier_release": True,
                     "resumed": {"status": "completed", "num_replicas_in_sync": 1,
                                 "replica_changes": [{"epoch": 2, "from": 2, "to": 1}]}}
    assert "resuming at epoch 2 on 1 replica(s) a run whose last part ran on 2" in result.stderr
