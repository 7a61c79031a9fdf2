"""A training run: strategy, model and optimizer in its scope, callbacks, fit, run.json.

Killed at any moment, the same command resumes from the last epoch backup
(BackupAndRestore), continuing history.csv and the best-model and early-stopping state.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras import run_directory as rundir
from dream_keras.callbacks import (PearsonCallback, ResumableEarlyStopping, best_epoch,
                                   read_history, truncate_history)
from dream_keras.dataset import evaluation_dataset, training_dataset
from dream_keras.distribute import is_chief, make_strategy, split_cpu
from dream_keras.data.training_data import ensure_train_file, load_training_rows
from dream_keras.errors import ConfigurationError
from dream_keras.model import MODEL_DEFAULTS, build_model
from dream_keras.optimizers import make_optimizer
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


def _backup_dir(output_dir: str, strategy) -> str:
    if is_chief(strategy):
        return os.path.join(output_dir, rundir.BACKUP_DIR)
    # Other workers back up privately; only the chief writes the run's files.
    worker = strategy.cluster_resolver.task_id
    return os.path.join(output_dir, f"{rundir.BACKUP_DIR}-worker{worker}")


def _resumed_epoch(backup_dir: str) -> int:
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as handle:
        return int(json.load(handle).get("epoch", 0))


def _callbacks(config, rows, strategy, resumed_epoch) -> list:
    out = config.output_dir
    history_path = os.path.join(out, rundir.HISTORY_FILE)
    history = truncate_history(history_path, resumed_epoch) if resumed_epoch else []
    prior_best = best_epoch(history)
    callbacks = [
        PearsonCallback(rows.validation_codes, rows.validation_targets, config.batch_size),
        keras.callbacks.TerminateOnNaN(),
        ResumableEarlyStopping(history, monitor="val_pearson",
                               patience=config.early_stopping_patience),
    ]
    if is_chief(strategy):
        callbacks += [
            keras.callbacks.ModelCheckpoint(
                os.path.join(out, rundir.MODEL_FILE), monitor="val_pearson", mode="max",
                save_best_only=True,
                initial_value_threshold=prior_best["val_pearson"] if prior_best else None),
            keras.callbacks.CSVLogger(history_path, append=resumed_epoch > 0),
            keras.callbacks.TensorBoard(os.path.join(out, rundir.TENSORBOARD_DIR)),
        ]
    # Last, so an epoch is backed up only after everything above has recorded it.
    callbacks.append(keras.callbacks.BackupAndRestore(_backup_dir(out, strategy),
                                                      double_checkpoint=True))
    return callbacks


def train(config: TrainingConfig) -> dict:
    """Run (or resume) training; returns the final run record (also written as run.json)."""
    split_cpu(config.cpu_devices)
    strategy = make_strategy(config.strategy)  # first: multi-worker needs a fresh runtime
    chief = is_chief(strategy)
    ensure_train_file(config)  # a missing file stops the run before it touches output_dir
    identity = config.run_identity()
    resuming = (rundir.claim_output_dir(config.output_dir, identity, config.overwrite)
                if chief else True)
    _seed_everything(config.seed)
    model_config = {**MODEL_DEFAULTS, **config.model}
    rows = load_training_rows(config, model_config["seq_len"])
    policy = DTYPE_POLICIES[config.mixed_precision]
    steps_per_epoch = config.resolved_steps_per_epoch(len(rows.train_codes))
    with strategy.scope():
        try:
            model = build_model(**model_config, dtype=policy)
        except ValueError as error:
            raise ConfigurationError(f"model settings: {error}") from None
        optimizer = make_optimizer(config.optimizer, config.learning_rate, config.clipnorm,
                                   loss_scaling=policy == "mixed_float16")
        model.compile(optimizer=optimizer, loss="mse",
                      jit_compile=config.jit_compile,
                      steps_per_execution=config.steps_per_execution)
    record = {
        "status": "running", "identity": identity, "flags": config.to_json(),
        "command": sys.argv, "versions": _versions(), "seed": config.seed,
        "data": rows.summary, "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "parameters": model.count_params(), "steps_per_epoch": steps_per_epoch,
    }
    if chief:
        rows.scaler.save(os.path.join(config.output_dir, rundir.SCALER_FILE))
        rundir.write_run_record(config.output_dir, record)
    resumed_epoch = _resumed_epoch(_backup_dir(config.output_dir, strategy)) if resuming else 0
    if resumed_epoch:
        logging.info("resuming %s at epoch %d", config.output_dir, resumed_epoch + 1)
    parallel = tf.data.AUTOTUNE if config.data_parallel_calls < 0 else config.data_parallel_calls
    prefetch = tf.data.AUTOTUNE if config.prefetch_batches < 0 else config.prefetch_batches
    train_batches = training_dataset(
        rows.train_codes, rows.train_targets, batch_size=config.batch_size, seed=config.seed,
        repeat=True, reverse_complement_augment=config.augment_reverse_complement,
        parallel_calls=parallel, prefetch=prefetch)
    validation_batches = evaluation_dataset(rows.validation_codes, rows.validation_targets,
                                            batch_size=config.batch_size,
                                            parallel_calls=parallel, prefetch=prefetch)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Private Keras internals, imported only on this path (behind a version check).
        from dream_keras import multi_worker_fixes

        multi_worker_fixes.reduce_scalar_logs_without_axis()
        multi_worker_fixes.build_from_local_batch(model, train_batches, strategy)
    started = time.time()
    model.fit(train_batches, validation_data=validation_batches, epochs=config.epochs,
              steps_per_epoch=steps_per_epoch,
              callbacks=_callbacks(config, rows, strategy, resumed_epoch),
              shuffle=False,  # the dataset shuffles itself, seeded
              verbose=2 if not sys.stdout.isatty() else "auto")
    record["train_seconds_this_process"] = round(time.time() - started, 1)
    if chief:
        record.update(_outcome(config, model))
        rundir.write_run_record(config.output_dir, record)
    else:
        shutil.rmtree(_backup_dir(config.output_dir, strategy), ignore_errors=True)
    return record


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
