"""absl flags of train.py, and their conversion into a TrainingConfig.

One source of truth: every architecture flag is generated from `build_model`'s signature
(default and help included), so a flag's default is always the function's default.
`flags/base.flags` still writes the seed's values out explicitly.
"""
from __future__ import annotations

import math

from absl import flags

from dream_keras.cli import runner
from dream_keras.model import MODEL_ARGUMENT_HELP, MODEL_DEFAULTS
from dream_keras.training_config import MAX_SEED, TrainingConfig
from dream_keras.optimizers import LR_SCHEDULES, OPTIMIZERS

_DEFAULTS = TrainingConfig(train_data="", output_dir="")
# absl bounds of generated model flags (build_model checks the rest, and these again).
_MODEL_FLAG_BOUNDS = {"seq_len": {"lower_bound": 1}}
_INT32_MAX = 2**31 - 1  # tf.data's buffer sizes and parallel calls are int32 inside


def _define_float(name, default, help_text, **bounds):
    """flags.DEFINE_float that also refuses nan and inf (absl's bounds let nan through:
    every comparison with it is false)."""
    flags.DEFINE_float(name, default, help_text, **bounds)
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             message=f"--{name} must be a finite number")


def _define_data_flags():
    flags.DEFINE_string("train_data", None, "Training data: a sequence<TAB>expression text "
                        "file (optionally gzipped; prepared into an HDF5 cache on first use) "
                        "or a prepared .h5 cache.")
    flags.DEFINE_string("cache_path", None, "Where to keep the HDF5 cache of a text "
                        "--train_data. Default: beside it, as <file>.seq<seq_len>.h5.")
    flags.DEFINE_integer("synthetic_rows", _DEFAULTS.synthetic_rows, "If > 0 and "
                         "--train_data does not exist, first write that many rows of the "
                         "package's synthetic data there (the quickstart): a text file, so "
                         "not a .h5/.hdf5 name.", lower_bound=0)
    flags.DEFINE_integer("synthetic_seed", _DEFAULTS.synthetic_seed,
                         "Seed of the synthetic data written by --synthetic_rows (as "
                         "dream-synthetic's --seed; 0 to 2**32 - 1).", lower_bound=0,
                         upper_bound=MAX_SEED)
    _define_float("singleton_keep_prob", _DEFAULTS.singleton_keep_prob,
                       "Keep each whole-number (single sort bin) row with this probability; "
                       "0.5 as the original, 1 keeps all.", lower_bound=0.0, upper_bound=1.0)
    _define_float("validation_fraction", _DEFAULTS.validation_fraction,
                       "Fraction of the kept rows held out, fixed by --seed; in (0, 0.5] "
                       "(validation picks the best epoch).",
                       lower_bound=0.0, upper_bound=0.5)
    flags.register_validator("validation_fraction", lambda value: value > 0,
                             message="--validation_fraction must be > 0: validation rows "
                                     "choose the best epoch")
    flags.DEFINE_bool("augment_reverse_complement", _DEFAULTS.augment_reverse_complement,
                      "Show each training row on a random strand (reverse complement with "
                      "probability 0.5, same target). The original did not.")
    flags.DEFINE_bool("skip_bad_rows", _DEFAULTS.skip_bad_rows, "When preparing the cache, "
                      "drop malformed rows (counted in run.json) instead of stopping.")


def _define_training_flags():
    flags.DEFINE_string("output_dir", None, "Run directory: model.keras, target_scaler.json, "
                        "history.csv, tensorboard/, run.json, backup/ while running.")
    flags.DEFINE_bool("overwrite", False, "Start afresh: remove this package's run outputs "
                      "from --output_dir first (an unfinished run of this configuration "
                      "too, which is otherwise resumed); other files there are kept.")
    flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Number of epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "GLOBAL batch size, split "
                         "equally across replicas (so a multiple of their number); every "
                         "training batch is full.", lower_bound=1)
    flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer, list(OPTIMIZERS),
                      "rmsprop_tf2: RMSprop as the original's TF 2.x computed it (epsilon "
                      "after the square root); rmsprop: Keras 3's RMSprop (epsilon inside "
                      "the root); adam.")
    _define_float("learning_rate", _DEFAULTS.learning_rate, "Learning rate.",
                       lower_bound=0.0)
    flags.DEFINE_enum("lr_schedule", _DEFAULTS.lr_schedule, list(LR_SCHEDULES),
                      "constant: --learning_rate throughout (the original); cosine: "
                      "cosine decay from --learning_rate to 0 at the end of --epochs "
                      "(after any warm-up).")
    _define_float("lr_warmup_epochs", _DEFAULTS.lr_warmup_epochs, "Linear warm-up "
                       "of the learning rate from 0 over this many epochs (fractions "
                       "allowed; 0: none).", lower_bound=0.0)
    _define_float("clipnorm", _DEFAULTS.clipnorm, "Clip each gradient to this norm; "
                       "0 disables (the original did not clip).", lower_bound=0.0)
    flags.DEFINE_boolean("rollback_exploded_epochs", _DEFAULTS.rollback_exploded_epochs,
                         "Undo an epoch whose validation loss is above 1e3 or not finite "
                         "(the unbounded swish LSTM exploded): weights and optimizer "
                         "state go back to the epoch's start and the learning rate is "
                         "halved for the rest of the run. history.csv marks it in "
                         "rolled_back. Needs a constant learning rate. Off: the original.")
    _define_float("ema_momentum", _DEFAULTS.ema_momentum, "Weight averaging: keep "
                       "an exponential moving average of the weights (average <- m * "
                       "average + (1 - m) * weights after every step) and validate, keep "
                       "the best epoch and save the model with it; training continues "
                       "from the raw weights. 0 disables it (the original); e.g. 0.999 "
                       "averages over about the last 1,000 steps.", lower_bound=0.0,
                       upper_bound=0.9999)
    _define_float("passes_per_epoch", _DEFAULTS.passes_per_epoch, "Length of an "
                       "epoch in passes over the training rows: floor(passes * N_train / "
                       "batch_size) batches, at least 1; must be > 0. The original's "
                       "N_train/128 steps at batch 1024 is 8 (36,743 steps on the DREAM "
                       "data).")
    flags.register_validator("passes_per_epoch", lambda value: value > 0,
                             "--passes_per_epoch must be > 0")
    flags.DEFINE_integer("steps_per_epoch", _DEFAULTS.steps_per_epoch, "Batches per epoch; "
                         "overrides --passes_per_epoch when > 0.", lower_bound=0)
    flags.DEFINE_integer("early_stopping_patience", _DEFAULTS.early_stopping_patience,
                         "Stop after this many epochs without a better val_pearson.",
                         lower_bound=1)
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seeds the filter, split, shuffling and "
                         "weight initialisation (0 to 2**32 - 1).", lower_bound=0,
                         upper_bound=MAX_SEED)


def _define_phase_flags():
    """Pre-training on teacher labels and EvoAug-style augmentation (docs/small_data.md)."""
    flags.DEFINE_string("teacher", _DEFAULTS.teacher, "Pre-train on generated sequences "
                        "labelled by: 'ridge' (the k-mer ridge fitted on the training rows "
                        "only), model.keras paths or run directories, or both, comma-"
                        "separated (the label is their mean). Needs --pretrain_epochs.")
    flags.DEFINE_integer("pretrain_epochs", _DEFAULTS.pretrain_epochs, "Epochs of "
                         "pre-training on teacher labels before --epochs of fine-tuning on "
                         "the training rows; 0: none.", lower_bound=0)
    flags.DEFINE_integer("pretrain_steps_per_epoch", _DEFAULTS.pretrain_steps_per_epoch,
                         "Batches per pre-training epoch (each of --batch_size new "
                         "sequences); 0: the fine-tuning epoch's length.", lower_bound=0)
    _define_float("pretrain_learning_rate", _DEFAULTS.pretrain_learning_rate,
                       "Learning rate of pre-training; 0: --learning_rate.", lower_bound=0.0)
    flags.DEFINE_enum("pretrain_generator", _DEFAULTS.pretrain_generator,
                      ["design", "mutate", "shuffle", "auto"], "Pre-training sequences: "
                      "design (the training file's flanks, lengths and base composition, "
                      "inferred from it), mutate (training rows with "
                      "--pretrain_mutation_rate of their variable bases changed), shuffle "
                      "(training rows with their variable bases shuffled) or auto (design "
                      "when the ridge teacher's labels vary on designed sequences at least "
                      "0.6 as much as on the training rows, else mutate; run.json records "
                      "the choice).")
    _define_float("pretrain_mutation_rate", _DEFAULTS.pretrain_mutation_rate,
                       "Per-base mutation probability of --pretrain_generator=mutate.",
                       lower_bound=0.0, upper_bound=1.0)
    _define_float("augment_mutation_rate", _DEFAULTS.augment_mutation_rate,
                       "Augmentation: each variable base of a row mutated with this "
                       "probability; 0: off.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("augment_insertion_max", _DEFAULTS.augment_insertion_max,
                         "Augmentation: insert 1..N random bases into the variable part "
                         "(cut back to its length); 0: off.", lower_bound=0)
    flags.DEFINE_integer("augment_deletion_max", _DEFAULTS.augment_deletion_max,
                         "Augmentation: delete 1..N bases of the variable part (refilled "
                         "with random bases at its ends); 0: off.", lower_bound=0)
    flags.DEFINE_integer("augment_translocation_max", _DEFAULTS.augment_translocation_max,
                         "Augmentation: rotate the variable part by up to N bases either "
                         "way; 0: off.", lower_bound=0)
    _define_float("augment_probability", _DEFAULTS.augment_probability,
                       "Probability that each enabled augmentation is applied to a row.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("final_unaugmented_epochs", _DEFAULTS.final_unaugmented_epochs,
                         "After the augmented epochs, this many epochs on the rows without "
                         "the --augment_* augmentations (reverse-complement augmentation "
                         "stays as set; early stopping then acts in them; they run at "
                         "--learning_rate, as the augmented epochs do).", lower_bound=0)


def _define_device_flags():
    flags.DEFINE_enum("strategy", _DEFAULTS.strategy,
                      ["auto", "mirrored", "multi_worker", "one_device"],
                      "auto: MirroredStrategy over all GPUs when there are 2+, else the "
                      "default device; multi_worker: MultiWorkerMirroredStrategy from "
                      "TF_CONFIG. Replicated steps compile each replica with XLA "
                      "(docs/multi_device.md).")
    flags.DEFINE_integer("cpu_devices", _DEFAULTS.cpu_devices, "Split the CPU into this "
                         "many logical devices (test replica code paths without GPUs: "
                         "with --strategy=mirrored, which trains on them; auto uses "
                         "GPUs only); 0 leaves the CPU as it is.", lower_bound=0)
    flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "Compile the train step with "
                      "XLA (faster on CPU and GPU; same maths, float rounding may differ).")
    flags.DEFINE_enum("mixed_precision", _DEFAULTS.mixed_precision,
                      ["none", "float16", "bfloat16"], "Compute dtype; weights stay "
                      "float32, float16 uses loss scaling, outputs stay float32.")
    flags.DEFINE_integer("steps_per_execution", _DEFAULTS.steps_per_execution,
                         "Train steps run per call into the compiled function; must "
                         "divide every epoch's training and validation steps.",
                         lower_bound=1)
    flags.DEFINE_integer("data_parallel_calls", _DEFAULTS.data_parallel_calls,
                         "Parallel batch-assembly calls in tf.data; -1 = autotune.",
                         lower_bound=-1, upper_bound=_INT32_MAX)
    flags.DEFINE_integer("prefetch_batches", _DEFAULTS.prefetch_batches,
                         "Batches prefetched ahead of the model; -1 = autotune.",
                         lower_bound=-1, upper_bound=_INT32_MAX)


def _define_model_flags():
    for name, default in MODEL_DEFAULTS.items():
        help_text = f"Model: {MODEL_ARGUMENT_HELP[name]}"
        if isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, **_MODEL_FLAG_BOUNDS.get(name, {}))
        elif isinstance(default, float):
            _define_float(name, default, help_text)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, [str(v) for v in default], help_text + " (comma list)")
            flags.register_validator(name, _all_positive_integers,
                                     f"--{name} must be a comma list of positive integers")
        else:
            flags.DEFINE_string(name, default, help_text)


def _all_positive_integers(values) -> bool:
    return all(str(v).strip().isdigit() and int(v) > 0 for v in values)


def define_flags(required=("train_data", "output_dir")):
    """Define every train.py flag (call once, at import of the script)."""
    _define_data_flags()
    _define_training_flags()
    _define_phase_flags()
    _define_device_flags()
    _define_model_flags()
    runner.mark_required(required)


def config_from_flags(values=flags.FLAGS) -> TrainingConfig:
    """A TrainingConfig from parsed flags (flag values are read, never mutated)."""
    model = {}
    for name, default in MODEL_DEFAULTS.items():
        value = values[name].value
        model[name] = tuple(int(v) for v in value) if isinstance(default, tuple) else value
    fields = {name: values[name].value for name in TrainingConfig.flag_names()}
    return TrainingConfig(model=model, **fields)
