"""A training run: strategy, model and optimizer in its scope, callbacks, fit, run.json.

One process owns the run directory (run_directory.locked). Killed at any moment, the same
command resumes from the last committed epoch backup (callbacks.EpochBackup), continuing
history.csv and the best-model and early-stopping state, and the data stream at the step
where that epoch ended, once it has checked that the data (and the teacher files) are
those the run started on.
Several replicas and workers: docs/multi_device.md (XLA per replica, full replica-split
batches, chief-only files).
"""
from __future__ import annotations

import contextlib
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
from dream_keras.callbacks import (DIVERGED_TRAINING_LOSS, EXPLODED_VALIDATION_LOSS,
                                   BestModelCheckpoint, EpochBackup, PublishBestModel,
                                   EpochSummary, ResumableEarlyStopping, best_epoch,
                                   diverged_epochs, epoch_ranges, read_history,
                                   save_model)
from dream_keras.dataset import (check_replica_batch, evaluation_dataset, evaluation_steps,
                                 training_dataset, weighted_evaluation_dataset)
from dream_keras.distribute import (XLA_OFF, XLA_WHOLE_STEP, ReplicaTrainer, is_chief,
                                    make_strategy, replicated, same_on_every_worker,
                                    split_cpu, xla_mode)
from dream_keras.data.training_data import ensure_train_file, load_training_rows
from dream_keras.errors import ConfigurationError, RunDirectoryError
from dream_keras.model import MODEL_DEFAULTS, build_model
from dream_keras.optimizers import learning_rate_schedule, make_optimizer
from dream_keras.phases import (FINETUNE_UNAUGMENTED, PRETRAIN, PhaseInputs,
                                PhaseLearningRate, changed_generator, plan_phases)
from dream_keras.rollback import (ExplodedEpochRollback, check_constant_rate,
                                  rolled_back_epochs, validation_loss)
from dream_keras.streaming_metrics import pearson_metrics
from dream_keras.teachers import changed_teachers, refuse_own_model_as_teacher
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


class _RunCallbacks:
    """The callbacks of a run, built once and shared by every phase's `fit` (phases.py):
    the best model and the backup see all phases; early stopping acts only in the last,
    its patience counted from that phase's first epoch; each phase sets its own learning
    rate after the backup's restore and labels its history rows."""

    def __init__(self, config, strategy, resume):
        out = config.output_dir
        self.config, self.strategy = config, strategy
        self.chief = is_chief(strategy)
        history = resume.history if resume else []  # the epochs a resumed run keeps
        backup = os.path.join(out, rundir.BACKUP_DIR)
        # Only the chief writes the run's files; a worker restores the chief's backup
        # (every worker resumes at the same epoch) and writes nothing.
        self.backup = EpochBackup(backup, resume, os.path.join(out, rundir.HISTORY_FILE)
                                  if self.chief else None)
        # Weight averaging: validation and the epoch-end saves see the averaged weights;
        # the raw ones are back before the backup (dream_keras.averaging).
        averages_in, raw_weights_back, self.raw_after_fit = \
            averaging.averaged_weight_callbacks(config.ema_momentum)
        # A non-finite loss ends the run (status stopped_on_nan), unless exploded epochs
        # are rolled back: then the epoch runs to its end (so the data stream, and a
        # resumed run, stay on epoch boundaries), its NaN validation loss undoes it, and
        # training goes on at the halved rate.
        nan_stop = [] if config.rollback_exploded_epochs else [
            keras.callbacks.TerminateOnNaN()]
        self.before = [*averages_in, EpochSummary(), *nan_stop]
        checkpoint = BestModelCheckpoint(os.path.join(out, rundir.MODEL_FILE), history)
        self.saving = [*([] if not self.chief else [
            checkpoint, keras.callbacks.TensorBoard(os.path.join(out, rundir.TENSORBOARD_DIR)),
        ]), *raw_weights_back]
        # After the backup: the epoch's best model becomes model.keras once committed.
        self.publish = [PublishBestModel(checkpoint)] if self.chief else []
        # After the raw weights are back, before the backup commits the epoch. With weight
        # averaging, val_loss is the averages' (which lag the raw weights): the rollback
        # also validates the raw weights, on the validation data of the phase's fit.
        self.validation = None  # (batches, steps): set by for_phase
        raw_loss = (self._raw_validation_loss
                    if averaging.ema_enabled(config.ema_momentum) else None)
        self.rollback = (ExplodedEpochRollback(history, raw_loss)
                         if config.rollback_exploded_epochs else None)

    def _raw_validation_loss(self, model) -> float:
        return validation_loss(model, *self.validation)

    def for_phase(self, phases, phase, validation) -> list:
        """The callbacks of `phase`'s fit; `validation`: its (validation batches, steps)."""
        self.validation = validation
        in_phases = len(phases) > 1
        callbacks = list(self.before)
        if phase is phases[-1]:
            multi_worker = isinstance(self.strategy,
                                      tf.distribute.MultiWorkerMirroredStrategy)
            phase_history = [row for row in self.backup.history
                             if row["epoch"] >= phase.first_epoch]
            callbacks.append(ResumableEarlyStopping(
                phase_history, strategy=self.strategy if multi_worker else None,
                chief=self.chief, monitor="val_pearson",
                patience=self.config.early_stopping_patience))
        self.backup.row_labels = {"phase": phase.name} if in_phases else {}
        # The backup last, so an epoch is committed only after everything above has
        # recorded it; the phase's rate is set after the backup's restore.
        rollback = [self.rollback] if self.rollback else []
        scale = self.rollback.rate_scale if self.rollback else 1.0
        return (callbacks + self.saving + rollback + self.raw_after_fit + [self.backup]
                + self.publish
                + ([PhaseLearningRate(phase.learning_rate * scale)] if in_phases else []))


def train(config: TrainingConfig, extra_callbacks=()) -> dict:
    """Run (or resume) training; returns the final run record (also written as run.json).

    `extra_callbacks` (keras.callbacks.Callback) are given to every phase's `fit` before
    the run's own, to observe it (per-batch losses, timings); they must not change the
    weights or the data, or a resumed run no longer matches an uninterrupted one."""
    split_cpu(config.cpu_devices)
    strategy = make_strategy(config.strategy)  # first: multi-worker needs a fresh runtime
    chief = is_chief(strategy)
    try:
        check_replica_batch(config.batch_size, strategy.num_replicas_in_sync)
    except ValueError as error:
        raise ConfigurationError(f"--batch_size: {error}") from None
    check_constant_rate(config)
    refuse_own_model_as_teacher(config.teacher, config.output_dir)
    ensure_train_file(config)  # a missing file stops the run before it touches output_dir
    # Owned before anything in it is read or written; workers never write it.
    with rundir.locked(config.output_dir) if chief else contextlib.nullcontext():
        return _train_owning_output_dir(config, strategy, chief, list(extra_callbacks))


def _warn_discarding_unfinished(output_dir, identity: dict) -> None:
    """--overwrite on an unfinished run of this configuration throws its finished epochs
    away: said in one line, since rerunning the same command line after a stop (with the
    --overwrite it started with) looks like resuming."""
    record = rundir.read_run_record(output_dir)
    if not (record and record.get("status") == "running"
            and rundir.same_identity(record.get("identity"), identity)):
        return
    try:
        backup = rundir.resume_point(output_dir)
    except RunDirectoryError:  # an earlier release's backup: not resumable anyway
        return
    if backup is not None:
        logging.warning("%s: --overwrite discards this unfinished run's %d finished "
                        "epoch(s) and starts afresh; without --overwrite it would have "
                        "resumed at epoch %d", output_dir, backup.epoch, backup.epoch + 1)


def _train_owning_output_dir(config: TrainingConfig, strategy, chief: bool,
                             extra_callbacks: list) -> dict:
    identity = config.run_identity()
    # Workers never write the run directory; they resume from the chief's backup, unless
    # the run starts afresh (--overwrite), as the chief does.
    resuming = (rundir.claim_output_dir(config.output_dir, identity, config.overwrite)
                if chief else not config.overwrite)
    _seed_everything(config.seed)
    model_config = {**MODEL_DEFAULTS, **config.model}
    rows = load_training_rows(config, model_config["seq_len"])
    if len(rows.train_codes) < config.batch_size:
        raise ConfigurationError(f"{len(rows.train_codes)} training rows cannot fill one "
                                 f"batch of --batch_size={config.batch_size}")
    if resuming and not config.overwrite:  # before anything in output_dir changes
        rundir.check_same_data(config.output_dir, rows.summary, rows.scaler)
    # Every worker resumes from the chief's (verified) backup: all start at one epoch.
    resume = rundir.resume_point(config.output_dir) if resuming else None
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and not \
            same_on_every_worker(strategy, resume.epoch if resume else 0):
        # A worker that reads another folder than the chief's (no shared file system)
        # would train its fresh weights beside the chief's restored ones.
        raise ConfigurationError(
            f"{config.output_dir}: the workers would resume at different epochs (this "
            f"one at epoch {(resume.epoch if resume else 0) + 1}): every worker must read "
            "the chief's run directory; give all of them an --output_dir on a file system "
            "they share")
    steps_per_epoch = config.resolved_steps_per_epoch(len(rows.train_codes))
    phases = plan_phases(config, steps_per_epoch)
    check_steps_per_execution(config.steps_per_execution, phases, evaluation_steps(
        len(rows.validation_codes), config.batch_size))
    model, xla, xla_reason = compiled_model(config, strategy, steps_per_epoch)
    record = {
        "status": "running", "identity": identity, "flags": config.to_json(),
        "command": sys.argv, "versions": _versions(), "seed": config.seed,
        "data": rows.summary, "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "parameters": model.count_params(), "steps_per_epoch": steps_per_epoch,
        "xla": {"train_step": xla, "reason": xla_reason},
        "phases": [phase.summary() for phase in phases],
    }
    resumed_epoch = resume.epoch if resume else 0
    # Teachers are fitted (or loaded) before run.json is rewritten: a resumed run whose
    # teacher model changed is refused with the directory untouched.
    ridge_file = os.path.join(config.output_dir, rundir.BACKUP_DIR, rundir.RIDGE_TEACHER_FILE)
    inputs = PhaseInputs(config, rows, phases, resumed_epoch,
                         saved_ridge=ridge_file if resuming and not config.overwrite else None)
    inputs_summary = inputs.summary()
    prior = rundir.read_run_record(config.output_dir) if resuming and chief else None
    if prior:
        change = changed_teachers(prior.get("teachers") or [],
                                  inputs_summary.get("teachers") or [])
        if change:
            raise RunDirectoryError(f"{config.output_dir}: cannot resume: {change} since "
                                    f"the run started; {rundir.START_AFRESH}")
        change = changed_generator(prior.get("pretrain_generator"),
                                   inputs_summary.get("pretrain_generator"))
        if change:
            raise RunDirectoryError(f"{config.output_dir}: cannot resume: {change}; "
                                    f"{rundir.START_AFRESH}")
        # A run resumed after pre-training fits no teacher again: keep the first record.
        record.update({key: prior[key] for key in ("teachers", "design", "pretrain_generator")
                       if key in prior})
        record.update(_replica_changes(prior, strategy.num_replicas_in_sync, resumed_epoch))
    record.update(inputs_summary)
    if chief:
        # Every check has passed: only now does --overwrite remove the previous run.
        if config.overwrite:
            _warn_discarding_unfinished(config.output_dir, identity)
            rundir.remove_run_outputs(config.output_dir)
        rundir.clear_partials(config.output_dir)
        rundir.settle_pending_model(config.output_dir, resumed_epoch)
        # run.json first: a run killed before the scaler is written is still resumable.
        rundir.write_run_record(config.output_dir, record)
        rows.scaler.save(os.path.join(config.output_dir, rundir.SCALER_FILE))
        if inputs.teachers is not None:
            inputs.teachers.keep_ridge(ridge_file)
    if resumed_epoch:
        logging.info("resuming %s at epoch %d", config.output_dir, resumed_epoch + 1)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Private Keras internals, imported only on this path (behind a version check).
        from dream_keras import multi_worker_fixes

        multi_worker_fixes.reduce_scalar_logs_without_axis()
        multi_worker_fixes.build_from_local_batch(
            model, _train_dataset(config, rows, 0, None).take(1), strategy)
    started = time.time()
    run_callbacks = _RunCallbacks(config, strategy, resume)
    # A backup taken after training stopped (early stopping, NaN) trains no more epochs.
    to_run = [] if resume and resume.stopped else [
        phase for phase in phases if phase.end_epoch > resumed_epoch]
    if resume and not to_run:
        # Nothing left to fit: restore the backup's weights and history.csv all the same
        # (what the first fit's EpochBackup would have done), so the outcome reads them.
        run_callbacks.backup.set_model(model)
        run_callbacks.backup.on_train_begin()
    for phase in to_run:
        start_epoch = max(resumed_epoch, phase.first_epoch)
        if len(phases) > 1:
            logging.info("phase %s: epochs %d-%d", phase.name, start_epoch + 1,
                         phase.end_epoch)
        train_batches, validation_batches, validation_steps = datasets(
            config, rows, strategy, (start_epoch - phase.first_epoch) * phase.steps_per_epoch,
            phase=phase, inputs=inputs)
        model.fit(train_batches, validation_data=validation_batches,
                  initial_epoch=start_epoch, epochs=phase.end_epoch,
                  steps_per_epoch=phase.steps_per_epoch, validation_steps=validation_steps,
                  callbacks=extra_callbacks + run_callbacks.for_phase(
                      phases, phase, (validation_batches, validation_steps)),
                  shuffle=False,  # the dataset shuffles itself, seeded
                  verbose=2 if not sys.stdout.isatty() else "auto")
        if model.stop_training or not all(np.isfinite(w).all() for w in model.get_weights()):
            break  # early stopping in the last phase, or TerminateOnNaN (_outcome says)
    record["train_seconds_this_process"] = round(time.time() - started, 1)
    if chief:
        record.update(_outcome(config, model))
        rundir.write_run_record(config.output_dir, record)
        rundir.remove_backups(config.output_dir)  # only once run.json has the outcome
    else:
        record["status"] = "worker finished (the chief wrote the run's files)"
    return record


def check_steps_per_execution(steps_per_execution: int, phases, validation_steps: int):
    """Keras rounds an epoch's training and validation steps up to a multiple of
    --steps_per_execution: more optimizer steps than asked (a resumed run's data stream,
    which starts at epoch x steps, then differs) and validation batches counted twice."""
    counts = {f"{phase.name} steps per epoch": phase.steps_per_epoch for phase in phases}
    counts["validation steps"] = validation_steps
    uneven = {name: count for name, count in counts.items() if count % steps_per_execution}
    if uneven:
        raise ConfigurationError(
            f"--steps_per_execution={steps_per_execution} must divide every epoch's training "
            f"and validation steps ({', '.join(f'{k}: {v}' for k, v in uneven.items())}); "
            "choose a divisor, or 1")


def _replica_changes(prior: dict, replicas: int, resumed_epoch: int) -> dict:
    """{'replica_changes': [...]} when a resumed run trains on another number of replicas
    than its last part did (a job rescheduled onto other GPUs), with a warning: it goes
    on, but per-replica BatchNorm statistics, dropout masks and augmentation draws change,
    so its history is no longer the one an uninterrupted run would write. A run that
    starts again at epoch 1 (no usable backup) has no earlier part to record."""
    if not resumed_epoch:
        return {}
    changes = list(prior.get("replica_changes") or [])
    before = prior.get("num_replicas_in_sync")
    if before is not None and before != replicas:
        logging.warning("resuming at epoch %d on %d replica(s) a run whose last part ran on "
                        "%d: it continues, but its history from here on differs from an "
                        "uninterrupted run's (per-replica BatchNorm statistics and random "
                        "draws); recorded in run.json (replica_changes)", resumed_epoch + 1,
                        replicas, before)
        changes.append({"epoch": resumed_epoch + 1, "from": before, "to": replicas})
    return {"replica_changes": changes} if changes else {}


def compiled_model(config: TrainingConfig, strategy,
                   steps_per_epoch: int) -> tuple[keras.Model, str, str]:
    """(model, XLA mode, reason): what to `fit`, compiled in the strategy's scope.

    One replica: the functional model itself, compiled as plain Keras (XLA over the whole
    step). A replicated strategy: a distribute.ReplicaTrainer around it, whose steps
    compile each replica with XLA and which saves the plain model. Logs once when
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
        # What model.keras records (loss, metrics, optimizer and its state) either way.
        model.compile(optimizer=optimizer, loss="mse", weighted_metrics=pearson_metrics(),
                      jit_compile=xla == XLA_WHOLE_STEP,
                      steps_per_execution=config.steps_per_execution)
        # Built here, not by the first trace of the train step: a tf.function that creates
        # variables is traced twice (seconds of CPU per process for nothing).
        optimizer.build(model.trainable_variables)
        if not replicated(strategy):
            return model, xla, xla_reason
        # Validation (and prediction) never update BatchNorm statistics, so their forward
        # pass compiles per replica even when the train step cannot.
        trainer = ReplicaTrainer(model, pearson_metrics(), jit_gradients=xla != XLA_OFF,
                                 jit_forward=config.jit_compile)
        trainer.compile(optimizer=optimizer, jit_compile=False,
                        steps_per_execution=config.steps_per_execution)
    return trainer, xla, xla_reason


def _train_dataset(config, rows, start_step: int, input_context, phase=None, inputs=None):
    parallel = tf.data.AUTOTUNE if config.data_parallel_calls < 0 else config.data_parallel_calls
    prefetch = tf.data.AUTOTUNE if config.prefetch_batches < 0 else config.prefetch_batches
    if phase is not None and phase.name == PRETRAIN:
        return inputs.teacher_dataset(phase, start_step, input_context, parallel, prefetch)
    augment = None
    if inputs is not None and phase.name != FINETUNE_UNAUGMENTED:
        augment = inputs.augment_fn()
    return training_dataset(
        rows.train_codes, rows.train_targets, batch_size=config.batch_size, seed=config.seed,
        repeat=True, reverse_complement_augment=config.augment_reverse_complement,
        start_step=start_step, input_context=input_context, parallel_calls=parallel,
        prefetch=prefetch, augment=augment)


def datasets(config: TrainingConfig, rows, strategy, start_step: int = 0, phase=None,
             inputs=None):
    """(training, validation batches, validation steps) from global step `start_step` (of
    `phase`'s stream; phases.py); under a replicated strategy each worker builds only its
    own replicas' slices of every global batch. Validation repeats its one pass; an
    evaluation reads validation_steps."""
    parallel = tf.data.AUTOTUNE if config.data_parallel_calls < 0 else config.data_parallel_calls
    prefetch = tf.data.AUTOTUNE if config.prefetch_batches < 0 else config.prefetch_batches

    def train_fn(input_context=None):
        return _train_dataset(config, rows, start_step, input_context, phase, inputs)

    def validation_fn(input_context=None):
        return weighted_evaluation_dataset(
            rows.validation_codes, rows.validation_targets, batch_size=config.batch_size,
            input_context=input_context, repeat=True, parallel_calls=parallel,
            prefetch=prefetch)

    validation_steps = evaluation_steps(len(rows.validation_codes), config.batch_size)
    if not replicated(strategy):
        # Keras' own test step weights each batch's loss by its row count, so one device
        # reads the rows unpadded (last batch short): val_loss is the mean over real rows.
        validation = evaluation_dataset(
            rows.validation_codes, rows.validation_targets, batch_size=config.batch_size,
            parallel_calls=parallel, prefetch=prefetch).repeat()
        return train_fn(), validation, validation_steps
    return (strategy.distribute_datasets_from_function(train_fn),
            strategy.distribute_datasets_from_function(validation_fn), validation_steps)


def _outcome(config: TrainingConfig, model: keras.Model) -> dict:
    """Status and best epoch from history.csv; saves the final model if no epoch had a
    finite val_pearson (so the directory always holds a loadable model)."""
    history = read_history(os.path.join(config.output_dir, rundir.HISTORY_FILE))
    best = best_epoch(history)
    # TerminateOnNaN stops mid-epoch (its row holds the partial epoch's NaN metrics), and
    # only without rollback, which restores finite weights: look at the weights, and at
    # the last row's training loss (an infinite loss stops it too, and with clipping the
    # weights can stay finite: the overflowing gradient becomes a zero step).
    finite = all(np.isfinite(weights).all() for weights in model.get_weights())
    loss_stop = (not config.rollback_exploded_epochs and bool(history)
                 and not np.isfinite(history[-1].get("loss", 0.0)))
    outcome = {"status": "completed" if finite and not loss_stop else "stopped_on_nan",
               "epochs_completed": len(history)}
    if best is None:
        logging.warning("no epoch had a finite val_pearson and a validation loss below "
                        "%g; model.keras is the last model", EXPLODED_VALIDATION_LOSS)
        # The model holds the raw weights here (averaging.RawWeightsAfterFit undoes
        # Keras' finalize_variable_values): saved averaged, as every model.keras.
        with averaging.averages_in(model, config.ema_momentum):
            save_model(model, os.path.join(config.output_dir, rundir.MODEL_FILE))
        outcome.update(best_epoch=None, best_metrics=None)
    else:
        outcome.update(best_epoch=best["epoch"] + 1,
                       best_metrics={k: v for k, v in best.items() if k != "epoch"})
    outcome["diverged_epochs"] = diverged = diverged_epochs(history)
    if config.rollback_exploded_epochs:
        outcome["rolled_back_epochs"] = rolled_back_epochs(history)
    if diverged:
        logging.warning(
            "training diverged in epoch(s) %s (mean training loss above %g or not finite): "
            "some batches' predictions exploded; model.keras is epoch %s's. Compare its "
            "val_pearson with another --seed's before using it (docs/small_data.md, "
            "'Divergence'); the LSTM constraints of flags/small_data.flags "
            "(--lstm_nonpositive_cell_feedback --lstm_recurrent_norm_cap=0.5) prevent it",
            epoch_ranges(diverged), DIVERGED_TRAINING_LOSS,
            outcome["best_epoch"])
    return outcome
