"""TrainingConfig: every setting of a training run, in one plain, JSON-able record.

The scripts fill it from flags; tests and notebooks build it directly. Defaults are the
seed's recipe (flags/base.flags writes them out too).
"""
from __future__ import annotations

import dataclasses
import math
import numbers

from dream_keras.errors import ConfigurationError


# Settings that may differ between a run and its resumption: they change how the run is
# driven or how fast its input pipeline runs (tf.data keeps the order: deterministic),
# never what it learns. run_directory also leaves them out of identities recorded by
# releases that kept them.
NOT_PART_OF_A_RUN = ("overwrite", "prefetch_batches", "data_parallel_calls")


# The largest seed Keras and NumPy take (keras.utils.set_random_seed).
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    train_data: str
    output_dir: str
    cache_path: str | None = None
    synthetic_rows: int = 0
    synthetic_seed: int = 0
    singleton_keep_prob: float = 0.5
    validation_fraction: float = 0.02
    skip_bad_rows: bool = False
    augment_reverse_complement: bool = False
    epochs: int = 10
    batch_size: int = 1024
    optimizer: str = "rmsprop_tf2"
    learning_rate: float = 1e-4
    clipnorm: float = 0.0
    ema_momentum: float = 0.0
    rollback_exploded_epochs: bool = False
    lr_schedule: str = "constant"
    lr_warmup_epochs: float = 0.0
    passes_per_epoch: float = 8.0
    steps_per_epoch: int = 0
    early_stopping_patience: int = 20
    seed: int = 0
    strategy: str = "auto"
    cpu_devices: int = 0
    jit_compile: bool = True
    mixed_precision: str = "none"
    steps_per_execution: int = 1
    data_parallel_calls: int = -1
    prefetch_batches: int = -1
    overwrite: bool = False
    # Pre-training on teacher-labelled generated sequences, then fine-tuning (phases.py).
    teacher: str = ""
    pretrain_epochs: int = 0
    pretrain_steps_per_epoch: int = 0
    pretrain_learning_rate: float = 0.0
    pretrain_generator: str = "design"
    pretrain_mutation_rate: float = 0.1
    # EvoAug-style augmentations of the training rows (data/augment.py).
    augment_mutation_rate: float = 0.0
    augment_insertion_max: int = 0
    augment_deletion_max: int = 0
    augment_translocation_max: int = 0
    augment_probability: float = 0.5
    final_unaugmented_epochs: int = 0
    model: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        """A NaN or infinite setting (learning rate, rates, probabilities) would train on
        silently, into NaN weights or a rate that means nothing: refused here, where both
        the API and the command lines pass."""
        settings = {name: getattr(self, name) for name in self.flag_names()}
        settings.update({f"model {name}": value for name, value in self.model.items()})
        for name, value in settings.items():
            if isinstance(value, numbers.Real) and not math.isfinite(value):  # NumPy's too
                raise ConfigurationError(f"{name} must be a finite number, got {value}")

    @classmethod
    def flag_names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls) if field.name != "model"]

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["model"] = {k: list(v) if isinstance(v, tuple) else v
                           for k, v in self.model.items()}
        return record

    def resolved_steps_per_epoch(self, train_rows: int) -> int:
        """Batches per epoch: --steps_per_epoch when set, else passes_per_epoch passes over
        `train_rows` (floor, at least 1). The original's N_train/128 steps at batch 1,024
        is passes_per_epoch=8 for any training file (36,743 steps on the DREAM data).
        ConfigurationError when passes_per_epoch is used and not > 0."""
        if self.steps_per_epoch > 0:
            return self.steps_per_epoch
        if not self.passes_per_epoch > 0:
            raise ConfigurationError(f"passes_per_epoch must be > 0, got "
                                     f"{self.passes_per_epoch}")
        return max(1, math.floor(self.passes_per_epoch * train_rows / self.batch_size))

    def learning_rate_steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """(total, warm-up) optimizer steps of the learning-rate schedule: the whole run
        (--epochs, even when early stopping ends it sooner) and --lr_warmup_epochs of it."""
        return (self.epochs * steps_per_epoch,
                int(round(self.lr_warmup_epochs * steps_per_epoch)))

    def run_identity(self) -> dict:
        """What must match for a run directory to be resumed by this configuration."""
        record = self.to_json()
        for name in NOT_PART_OF_A_RUN:
            record.pop(name)
        return record
