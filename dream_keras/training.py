"""A training run: strategy, model and optimizer in its scope, callbacks, fit, run.json.

Killed at any moment, the same command resumes from the last epoch backup
(BackupAndRestore), continuing history.csv and the best-model and early-stopping state,
and the data stream at the step where that epoch ended. Several replicas and workers:
docs/multi_device.md (XLA per replica, full replica-split batches, chief-only files).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras import averaging
from dream_keras import run_directory as rundir
from dream_keras.callbacks import (ChiefBackupReader, EpochSummary, ResumableEarlyStopping,
                                   best_epoch, read_history, truncate_history)
from dream_keras.dataset import (check_replica_batch, evaluation_steps, training_dataset,
                                 weighted_evaluation_dataset)
from dream_keras.distribute import (XLA_OFF, XLA_WHOLE_STEP, ReplicaSteps, is_chief,
                                    make_strategy, replicated, split_cpu, xla_mode)
from dream_keras.data.training_data import ensure_train_file, load_training_rows
from dream_keras.errors import ConfigurationError
from dream_keras.model import MODEL_DEFAULTS, build_model
from dream_keras.optimizers import learning_rate_schedule, make_optimizer
from dream_keras.streaming_metrics import pearson_metrics
from dream_keras.training_config import TrainingConfig
from dream_keras.version import __version__

# --mixed_precision -> the model's dtype policy (passed to build_model, never set globally)
DTYPE_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def _seed_everything(seed: int) -> None:
    # Python, NumPy and TF seeds. tf.config.experimental.enable_op_determinism() is not
    # used: Keras then refuses XLA, and on CPU the runs are reproducible without it.
    keras.utils.set_random_seed(seed)


def _versions() -> dict:
    return {"dream_keras": __version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _resumed_epoch(backup_dir: str) -> int:
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as handle:
        return int(json.load(handle).get("epoch", 0))


def _history_so_far(path: str, resumed_epoch: int, chief: bool) -> list[dict]:
    """The epochs a resumed run keeps; only the chief rewrites history.csv."""
    if not resumed_epoch:
        return []
    if chief:
        return truncate_history(path, resumed_epoch)
    return [row for row in read_history(path) if row["epoch"] < resumed_epoch]


def _callbacks(config, strategy, resumed_epoch) -> list:
    out = config.output_dir
    chief = is_chief(strategy)
    history_path = os.path.join(out, rundir.HISTORY_FILE)
    history = _history_so_far(history_path, resumed_epoch, chief)
    prior_best = best_epoch(history)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    # Weight averaging: validation and the epoch-end saves see the averaged weights; the
    # raw ones are back before the backup (dream_keras.averaging).
    averages_in, raw_weights_back = averaging.averaged_weight_callbacks(config.ema_momentum)
    callbacks = averages_in + [
        EpochSummary(),
        keras.callbacks.TerminateOnNaN(),
        ResumableEarlyStopping(history, strategy=strategy if multi_worker else None,
                               chief=chief, monitor="val_pearson",
                               patience=config.early_stopping_patience),
    ]
    backup = os.path.join(out, rundir.BACKUP_DIR)
    if not chief:
        # Restores from the chief's backup (every worker resumes at the same epoch) and
        # writes nothing: only the chief writes the run's files.
        return callbacks + raw_weights_back + [ChiefBackupReader(backup)]
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            os.path.join(out, rundir.MODEL_FILE), monitor="val_pearson", mode="max",
            save_best_only=True,
            initial_value_threshold=prior_best["val_pearson"] if prior_best else None),
        keras.callbacks.CSVLogger(history_path, append=resumed_epoch > 0),
        keras.callbacks.TensorBoard(os.path.join(out, rundir.TENSORBOARD_DIR)),
    ]
    callbacks += raw_weights_back
    # Last, so an epoch is backed up only after everything above has recorded it.
    callbacks.append(keras.callbacks.BackupAndRestore(backup, double_checkpoint=True))
    return callbacks


def train(config: TrainingConfig) -> dict:
    """Run (or resume) training; returns the final run record (also written as run.json)."""
    split_cpu(config.cpu_devices)
    strategy = make_strategy(config.strategy)  # first: multi-worker needs a fresh runtime
    chief = is_chief(strategy)
    try:
        check_replica_batch(config.batch_size, strategy.num_replicas_in_sync)
    except ValueError as error:
        raise ConfigurationError(f"--batch_size: {error}") from None
    ensure_train_file(config)  # a missing file stops the run before it touches output_dir
    identity = config.run_identity()
    resuming = (rundir.claim_output_dir(config.output_dir, identity, config.overwrite)
                if chief else True)
    _seed_everything(config.seed)
    model_config = {**MODEL_DEFAULTS, **config.model}
    rows = load_training_rows(config, model_config["seq_len"])
    if len(rows.train_codes) < config.batch_size:
        raise ConfigurationError(f"{len(rows.train_codes)} training rows cannot fill one "
                                 f"batch of --batch_size={config.batch_size}")
    steps_per_epoch = config.resolved_steps_per_epoch(len(rows.train_codes))
    model, xla, xla_reason = compiled_model(config, strategy, steps_per_epoch)
    record = {
        "status": "running", "identity": identity, "flags": config.to_json(),
        "command": sys.argv, "versions": _versions(), "seed": config.seed,
        "data": rows.summary, "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "parameters": model.count_params(), "steps_per_epoch": steps_per_epoch,
        "xla": {"train_step": xla, "reason": xla_reason},
    }
    if chief:
        rows.scaler.save(os.path.join(config.output_dir, rundir.SCALER_FILE))
        rundir.write_run_record(config.output_dir, record)
    # Every worker resumes from the chief's backup, so all start at the same epoch.
    backup = os.path.join(config.output_dir, rundir.BACKUP_DIR)
    resumed_epoch = _resumed_epoch(backup) if resuming else 0
    if resumed_epoch:
        logging.info("resuming %s at epoch %d", config.output_dir, resumed_epoch + 1)
    train_batches, validation_batches, validation_steps = datasets(
        config, rows, strategy, resumed_epoch * steps_per_epoch)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Private Keras internals, imported only on this path (behind a version check).
        from dream_keras import multi_worker_fixes

        multi_worker_fixes.reduce_scalar_logs_without_axis()
        multi_worker_fixes.build_from_local_batch(
            model, _train_dataset(config, rows, 0, None).take(1), strategy)
    started = time.time()
    model.fit(train_batches, validation_data=validation_batches, epochs=config.epochs,
              steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
              callbacks=_callbacks(config, strategy, resumed_epoch),
              shuffle=False,  # the dataset shuffles itself, seeded
              verbose=2 if not sys.stdout.isatty() else "auto")
    record["train_seconds_this_process"] = round(time.time() - started, 1)
    if chief:
        record.update(_outcome(config, model))
        rundir.write_run_record(config.output_dir, record)
    else:
        record["status"] = "worker finished (the chief wrote the run's files)"
    return record


def compiled_model(config: TrainingConfig, strategy,
                   steps_per_epoch: int) -> tuple[keras.Model, str, str]:
    """(model, XLA mode, reason): the model compiled in the strategy's scope, with the
    replicated steps where they apply (see distribute.ReplicaSteps). Logs once when
    --jit_compile cannot be honoured for the train step. `steps_per_epoch` sets the length
    of the learning-rate schedule (--lr_schedule, --lr_warmup_epochs)."""
    model_config = {**MODEL_DEFAULTS, **config.model}
    policy = DTYPE_POLICIES[config.mixed_precision]
    xla, xla_reason = xla_mode(strategy, config.jit_compile, model_config["batchnorm_sync"])
    if config.jit_compile and xla == XLA_OFF:
        logging.warning("XLA is off for the train step: %s", xla_reason)
    with strategy.scope():
        try:
            model = build_model(**model_config, dtype=policy)
        except ValueError as error:
            raise ConfigurationError(f"model settings: {error}") from None
        total_steps, warmup_steps = config.learning_rate_steps(steps_per_epoch)
        try:
            learning_rate = learning_rate_schedule(config.learning_rate, config.lr_schedule,
                                                   total_steps, warmup_steps)
        except ValueError as error:
            raise ConfigurationError(f"--lr_schedule: {error}") from None
        optimizer = make_optimizer(config.optimizer, learning_rate, config.clipnorm,
                                   loss_scaling=policy == "mixed_float16",
                                   ema_momentum=config.ema_momentum)
        # Keras compiles the whole step with XLA only on one replica; replicated steps
        # compile each replica's part themselves.
        model.compile(optimizer=optimizer, loss="mse", weighted_metrics=pearson_metrics(),
                      jit_compile=xla == XLA_WHOLE_STEP,
                      steps_per_execution=config.steps_per_execution)
    # Validation (and prediction) never update BatchNorm statistics, so their forward
    # pass compiles per replica even when the train step cannot.
    steps = ReplicaSteps(model, jit_gradients=xla != XLA_OFF,
                         jit_forward=config.jit_compile and xla != XLA_WHOLE_STEP)
    steps.install(train=replicated(strategy))
    return model, xla, xla_reason


def _train_dataset(config, rows, start_step: int, input_context):
    parallel = tf.data.AUTOTUNE if config.data_parallel_calls < 0 else config.data_parallel_calls
    prefetch = tf.data.AUTOTUNE if config.prefetch_batches < 0 else config.prefetch_batches
    return training_dataset(
        rows.train_codes, rows.train_targets, batch_size=config.batch_size, seed=config.seed,
        repeat=True, reverse_complement_augment=config.augment_reverse_complement,
        start_step=start_step, input_context=input_context, parallel_calls=parallel,
        prefetch=prefetch)


def datasets(config: TrainingConfig, rows, strategy, start_step: int = 0):
    """(training, validation batches, validation steps) from global step `start_step`;
    under a replicated strategy each worker builds only its own replicas' slices of every
    global batch. Validation repeats its one pass; an evaluation reads validation_steps."""
    parallel = tf.data.AUTOTUNE if config.data_parallel_calls < 0 else config.data_parallel_calls
    prefetch = tf.data.AUTOTUNE if config.prefetch_batches < 0 else config.prefetch_batches

    def train_fn(input_context=None):
        return _train_dataset(config, rows, start_step, input_context)

    def validation_fn(input_context=None):
        return weighted_evaluation_dataset(
            rows.validation_codes, rows.validation_targets, batch_size=config.batch_size,
            input_context=input_context, repeat=True, parallel_calls=parallel,
            prefetch=prefetch)

    validation_steps = evaluation_steps(len(rows.validation_codes), config.batch_size)
    if not replicated(strategy):
        return train_fn(), validation_fn(), validation_steps
    return (strategy.distribute_datasets_from_function(train_fn),
            strategy.distribute_datasets_from_function(validation_fn), validation_steps)


def _outcome(config: TrainingConfig, model: keras.Model) -> dict:
    """Status and best epoch from history.csv; saves the final model if no epoch had a
    finite val_pearson (so the directory always holds a loadable model)."""
    history = read_history(os.path.join(config.output_dir, rundir.HISTORY_FILE))
    best = best_epoch(history)
    # TerminateOnNaN stops mid-epoch, before any history row: look at the weights instead.
    finite = all(np.isfinite(weights).all() for weights in model.get_weights())
    outcome = {"status": "completed" if finite else "stopped_on_nan",
               "epochs_completed": len(history)}
    if best is None:
        logging.warning("no epoch had a finite val_pearson; model.keras is the last model")
        model.save(os.path.join(config.output_dir, rundir.MODEL_FILE))
        outcome.update(best_epoch=None, best_metrics=None)
    else:
        outcome.update(best_epoch=best["epoch"] + 1,
                       best_metrics={k: v for k, v in best.items() if k != "epoch"})
    return outcome
