"""Training phases: pre-training on teacher labels, fine-tuning on the real rows, and an
optional last fine-tuning on unaugmented rows, in one run directory.

A run is a fixed sequence of phases, each a block of consecutive epochs with its own data,
batches per epoch and learning rate, all fixed by the flags (so a resumed run knows from
its backup's epoch alone which phase it is in and at which step of that phase's stream):

  pretrain               --pretrain_epochs x --pretrain_steps_per_epoch batches of
                         generated sequences labelled by --teacher, at
                         --pretrain_learning_rate
  finetune               --epochs on the training rows (augmented when any --augment_*
                         magnitude is set), at --learning_rate
  finetune_unaugmented   --final_unaugmented_epochs on the rows without the --augment_*
                         augmentations (reverse-complement augmentation, a strand
                         symmetry matched by strand-averaged prediction, stays as set),
                         at --learning_rate

Every epoch is validated on the same real validation rows. model.keras keeps the best
val_pearson over ALL phases (the validation rows are the same real rows throughout, so a
pre-trained epoch that fine-tuning never beats is still the best model). Early stopping
acts only in the last phase, its patience counted from that phase's first epoch: earlier
phases always run their full length, so phase boundaries never move. One optimizer runs
through all phases (its moments carry over); each phase sets its learning rate at its
start, after any restore from the backup.
"""
from __future__ import annotations

import dataclasses

import keras
from absl import logging

from dream_keras.errors import ConfigurationError, DataFormatError
from dream_keras.training_config import TrainingConfig

PRETRAIN, FINETUNE, FINETUNE_UNAUGMENTED = "pretrain", "finetune", "finetune_unaugmented"
# TrainingConfig fields that only pre-training reads (--teacher has its own check).
PRETRAINING_SETTINGS = ("pretrain_steps_per_epoch", "pretrain_learning_rate",
                        "pretrain_generator", "pretrain_mutation_rate")
# Random streams of the stateless draws (design.batch_rng): one per use, never shared.
GENERATION_STREAM, AUGMENTATION_STREAM, GENERATOR_CHOICE_STREAM = 1, 2, 3
# --pretrain_generator=auto: design when the ridge teacher's labels on designed sequences
# spread (standard deviation) at least this share of their spread on the training rows,
# else mutate. Designed sequences teach only what they make the teacher vary on: on real
# DREAM rows (random promoters: the design IS the library) the share was 0.88; on the
# package's synthetic data, whose signal sits in planted motifs that random sequences
# rarely hold, 0.39-0.48, and there mutate beat design (docs/small_data.md, "Choosing the
# generator").
AUTO_GENERATOR = "auto"
AUTO_DESIGN_SPREAD = 0.6
AUTO_SEQUENCES = 20_000


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    first_epoch: int
    epochs: int
    steps_per_epoch: int
    learning_rate: float
    data: str  # "teacher", "augmented rows" or "rows"

    @property
    def end_epoch(self) -> int:
        return self.first_epoch + self.epochs

    def summary(self) -> dict:
        return {"name": self.name, "first_epoch": self.first_epoch + 1,
                "last_epoch": self.end_epoch, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "learning_rate": self.learning_rate, "data": self.data}


def augmentations(config):
    """The run's data.augment.Augmentations (NumPy only; imported when asked)."""
    from dream_keras.data.augment import Augmentations

    return Augmentations(config.augment_mutation_rate, config.augment_insertion_max,
                         config.augment_deletion_max, config.augment_translocation_max,
                         config.augment_probability)


def augmenting(config) -> bool:
    return augmentations(config).enabled


def _augmentation_magnitudes(config) -> bool:
    return bool(config.augment_mutation_rate or config.augment_insertion_max
                or config.augment_deletion_max or config.augment_translocation_max)


def _settings_without_effect(config) -> list:
    """Flags given values that nothing reads in this configuration (a warning names them,
    as it does pre-training settings without pre-training)."""
    defaults = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    found = []
    if not _augmentation_magnitudes(config) and (config.augment_probability
                                                 != defaults["augment_probability"]):
        found.append(f"--augment_probability={config.augment_probability} without an "
                     "--augment_* magnitude")
    if _augmentation_magnitudes(config) and config.augment_probability == 0:
        found.append("the --augment_* magnitudes with --augment_probability=0")
    if (config.pretrain_epochs and config.pretrain_generator not in ("mutate", AUTO_GENERATOR)
            and config.pretrain_mutation_rate != defaults["pretrain_mutation_rate"]):
        found.append(f"--pretrain_mutation_rate={config.pretrain_mutation_rate} with "
                     f"--pretrain_generator={config.pretrain_generator} (only mutate "
                     "reads it)")
    return found


def _pretraining_settings_without_pretraining(config) -> dict:
    """{name: (value, default)} of the pre-training settings changed from their defaults
    in a run without pre-training: they do nothing."""
    if config.pretrain_epochs:
        return {}
    defaults = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    return {name: (getattr(config, name), defaults[name]) for name in PRETRAINING_SETTINGS
            if getattr(config, name) != defaults[name]}


def plan_phases(config, steps_per_epoch: int) -> list[Phase]:
    """The run's phases from its configuration (ConfigurationError for contradictions)."""
    if bool(config.teacher) != (config.pretrain_epochs > 0):
        raise ConfigurationError("--teacher and --pretrain_epochs go together: give both "
                                 "(pre-training) or neither")
    if config.teacher and config.pretrain_generator == AUTO_GENERATOR:
        from dream_keras.teachers import RIDGE, teacher_names

        if RIDGE not in teacher_names(config.teacher):
            raise ConfigurationError(f"--pretrain_generator=auto chooses by the ridge "
                                     f"teacher's labels, and --teacher={config.teacher} has "
                                     "no ridge: add it (--teacher=ridge,...) or give design, "
                                     "mutate or shuffle")
    ignored = _pretraining_settings_without_pretraining(config)
    if ignored:
        # A warning, not a refusal: `--pretrain_epochs=0 --teacher=` after a flagfile that
        # pre-trains (flags/small_data.flags) is the documented way to turn it off.
        given = ", ".join(f"--{name}={value}" for name, (value, _) in ignored.items())
        logging.warning("pre-training settings without pre-training (--pretrain_epochs=0) "
                        "have no effect: %s; give --teacher and --pretrain_epochs to "
                        "pre-train", given)
    for setting in _settings_without_effect(config):
        logging.warning("%s: no effect", setting)
    if config.final_unaugmented_epochs and not augmenting(config):
        raise ConfigurationError("--final_unaugmented_epochs needs an augmentation "
                                 "(--augment_mutation_rate, --augment_insertion_max, ..., with "
                                 "--augment_probability above 0)")
    phases = []
    if config.pretrain_epochs:
        phases.append(Phase(PRETRAIN, 0, config.pretrain_epochs,
                            config.pretrain_steps_per_epoch or steps_per_epoch,
                            config.pretrain_learning_rate or config.learning_rate,
                            "teacher"))
    phases.append(Phase(FINETUNE, config.pretrain_epochs, config.epochs, steps_per_epoch,
                        config.learning_rate, "augmented rows" if augmenting(config) else "rows"))
    if config.final_unaugmented_epochs:
        phases.append(Phase(FINETUNE_UNAUGMENTED, phases[-1].end_epoch,
                            config.final_unaugmented_epochs, steps_per_epoch,
                            config.learning_rate, "rows"))
    if len(phases) > 1 and (config.lr_schedule != "constant" or config.lr_warmup_epochs):
        raise ConfigurationError("training in phases (--teacher, --final_unaugmented_epochs) "
                                 "sets a constant learning rate per phase: use "
                                 "--lr_schedule=constant --lr_warmup_epochs=0")
    return phases


def total_epochs(phases: list[Phase]) -> int:
    return phases[-1].end_epoch


class PhaseLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at the start of a phase (place it after
    callbacks.EpochBackup, whose restore would otherwise bring back the saved rate)."""

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = float(learning_rate)

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate = self.learning_rate


def pretraining_generator(config, design, train_codes, kind: str | None = None):
    """The run's SequenceGenerator of pre-training sequences: of `kind`, by default
    --pretrain_generator (which must then not be auto: see choose_generator)."""
    from dream_keras.data.design import SequenceGenerator

    return SequenceGenerator(design, kind or config.pretrain_generator, train_codes,
                             config.pretrain_mutation_rate)


def choose_generator(config, design, train_codes, ridge) -> dict:
    """--pretrain_generator=auto's choice, {"generator", "design_label_spread", ...}: the
    ridge teacher labels AUTO_SEQUENCES designed sequences (a draw of its own stream, a
    function of the seed: a resumed run chooses the same) and the training rows, and the
    ratio of the two standard deviations decides (AUTO_DESIGN_SPREAD). Reads no label."""
    import numpy as np

    from dream_keras.data.design import batch_rng

    designed = design.draw(batch_rng(config.seed, GENERATOR_CHOICE_STREAM, 0), AUTO_SEQUENCES)
    on_rows = float(np.std(ridge.labels(train_codes)))  # bounded memory: labels' chunks
    spread = float(np.std(ridge.labels(designed))) / on_rows if on_rows > 0 else 0.0
    kind = "design" if spread >= AUTO_DESIGN_SPREAD else "mutate"
    logging.info("--pretrain_generator=auto: the ridge teacher's labels on %d designed "
                 "sequences spread %.3f of their spread on the training rows (design from "
                 "%.2f): pre-training on %s sequences", AUTO_SEQUENCES, spread,
                 AUTO_DESIGN_SPREAD, "designed" if kind == "design" else "mutated training")
    return {"requested": AUTO_GENERATOR, "generator": kind, "design_label_spread": spread,
            "design_from": AUTO_DESIGN_SPREAD, "sequences": AUTO_SEQUENCES}


def changed_generator(started: dict | None, now: dict | None) -> str | None:
    """Why a resumed run's auto choice contradicts the one it started with (None if it
    does not): a package whose rule changed in between would switch generators mid-phase."""
    if started and now and started.get("generator") != now.get("generator"):
        return (f"--pretrain_generator=auto chose {now.get('generator')} now and "
                f"{started.get('generator')} when the run started")
    return None


def pretraining_codes(generator, config, step: int):
    """uint8 codes of the run's global pre-training batch `step`: a pure function of the
    seed and the step, so a resumed run (or a probe) rebuilds the same batch."""
    return generator.batch(config.seed, GENERATION_STREAM, step, config.batch_size)


def warn_if_many_rows_were_cut(train_data, summary: dict, design) -> str | None:
    """Rows longer than --seq_len lost their 5' end, and with it part of their 5' flank.
    The design's flanks are what at least 90 % of the rows share (design.py), so when more
    than 10 % of the rows were cut the inferred 5' flank may be a remnant or not the
    library's: generated rows and the --augment_* variable region (which must never touch
    a flank) would then follow it. Warns, returning the message (None if not)."""
    from dream_keras.data.design import DEFAULT_AGREEMENT

    longer = (summary or {}).get("rows_longer_than_seq_len") or 0
    rows = (summary or {}).get("rows_in_cache") or 0
    if not rows or longer <= (1 - DEFAULT_AGREEMENT) * rows:
        return None
    message = (f"{train_data}: {longer} of {rows} rows are longer than --seq_len="
               f"{design.seq_len} and lost their 5' end, so the 5' flank read off the rows "
               f"({design.summary()['prefix'] or 'none'!r}) may not be the library's: "
               "generated sequences follow it, and --augment_* may change bases of the real "
               "flank. A --seq_len that holds the rows (the model then reads them whole) "
               "avoids it")
    logging.warning(message)
    return message


class PhaseInputs:
    """What the phases train on: the design inferred from the training rows, the teachers
    (fitted only when pre-training still has epochs to run; the ridge read from
    `saved_ridge` when that file was fitted on these rows) and the augmentations."""

    def __init__(self, config, rows, phases: list[Phase], resumed_epoch: int,
                 saved_ridge=None):
        from dream_keras.data.design import infer_design

        self.config, self.rows = config, rows
        self.design = None
        self.generator = None
        self.teachers = None
        self.augmentations = augmentations(config)
        if config.teacher or self.augmentations.enabled:
            try:
                self.design = infer_design(rows.train_codes)
            except ValueError as error:  # e.g. every row is its flanks: nothing to vary
                raise DataFormatError(config.train_data, None,
                                      f"cannot read a design off the training rows ({error}), "
                                      "which --teacher and --augment_* need") from None
            warn_if_many_rows_were_cut(config.train_data, rows.summary, self.design)
        self.generator_choice = None
        if config.teacher and resumed_epoch < phases[0].end_epoch:
            # Only while pre-training has epochs to run: past it, nothing draws sequences.
            from dream_keras.teachers import make_teachers

            self.teachers = make_teachers(config.teacher, rows.train_codes,
                                          rows.train_targets, rows.scaler, rows.summary,
                                          jit_compile=config.jit_compile,
                                          saved_ridge=saved_ridge)
            kind = config.pretrain_generator
            if kind == AUTO_GENERATOR:
                self.generator_choice = choose_generator(config, self.design,
                                                         rows.train_codes, self.teachers.ridge)
                kind = self.generator_choice["generator"]
            self.generator = pretraining_generator(config, self.design, rows.train_codes, kind)

    def summary(self) -> dict:
        out = {}
        if self.design is not None:
            out["design"] = self.design.summary()
        if self.teachers is not None:
            out["teachers"] = self.teachers.summary()
        if self.generator_choice is not None:
            out["pretrain_generator"] = self.generator_choice
        return out

    def augment_fn(self):
        """augment(codes, step, first) for dataset.training_dataset, or None."""
        if not self.augmentations.enabled:
            return None
        from dream_keras.data.design import batch_rng

        seed, design, augmentations = self.config.seed, self.design, self.augmentations

        def augment(codes, step, first):
            start, end = design.variable_region(codes)
            rng = batch_rng(seed, AUGMENTATION_STREAM, step * 2**20 + first)
            return augmentations.apply(codes, start, end, rng)

        return augment

    def teacher_dataset(self, phase: Phase, start_step: int, input_context, parallel_calls,
                        prefetch):
        """The pre-training stream from `start_step` of the phase."""
        from dream_keras.dataset import generated_dataset

        config, generator, teachers = self.config, self.generator, self.teachers

        def generate(step):
            return pretraining_codes(generator, config, step)

        return generated_dataset(
            generate, teachers.ridge.labels if teachers.ridge else None,
            batch_size=config.batch_size, seq_len=self.rows.train_codes.shape[1],
            start_step=start_step, input_context=input_context,
            model_teacher=teachers.models,
            parallel_calls=parallel_calls, prefetch=prefetch)
