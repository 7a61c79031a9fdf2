"""dream-train (and train.py): train or resume a run; flags in training_flags.py.

  dream-train --flagfile=flags/base.flags --train_data=train_sequences.txt --output_dir=runs/base
  dream-train --flagfile=flags/quickstart.flags            (synthetic data, a few minutes)

The flagfiles live in the repository's flags/ folder (a checkout, as `make install` sets
up; a built wheel does not carry them): give their path. Flags after --flagfile override
its values. Rerunning the same command resumes a killed
run; see README and docs/training.md.
"""
from __future__ import annotations

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before the flags, whose defaults come from the model

import os  # noqa: E402

from dream_keras.cli import runner, training_flags  # noqa: E402
from dream_keras.errors import ConfigurationError  # noqa: E402
from dream_keras.file_errors import check_input_file  # noqa: E402
from dream_keras.safe_output import check_parent_writable  # noqa: E402

training_flags.define_flags()


def train_from_flags() -> str:
    from dream_keras.training import train  # the training machinery loads once flags parse

    config = training_flags.config_from_flags()
    check_training_paths(config)
    return outcome_line(train(config))


def outcome_line(record: dict) -> str:
    """train.py's last line: status, best epoch, diverged and rolled-back epochs, where."""
    from dream_keras.callbacks import epoch_ranges

    best = record.get("best_metrics") or {}
    notes = "".join(f" ({what.format(epoch_ranges(epochs))})" for what, epochs in (
        ("training DIVERGED in epochs {}", record.get("diverged_epochs")),
        ("epochs {} ROLLED BACK: the model exploded", record.get("rolled_back_epochs")))
        if epochs)
    return (f"{record['status']}: best epoch {record.get('best_epoch')}, "
            f"val_pearson {best.get('val_pearson', float('nan')):.4f}{notes}; outputs in "
            f"{record['flags']['output_dir']}")


def check_training_paths(config) -> None:
    """One line, before anything is written, for a training file that is a directory,
    FIFO or unreadable, and for an --output_dir that is a file or cannot be created."""
    if os.path.lexists(config.train_data):
        check_input_file(config.train_data, "--train_data")
    if os.path.lexists(config.output_dir) and not os.path.isdir(config.output_dir):
        raise ConfigurationError(f"{config.output_dir}: --output_dir exists and is not a "
                                 "directory")
    check_parent_writable(os.path.join(config.output_dir, "run.json"), "output_dir")


def main() -> None:
    runner.run(train_from_flags)


if __name__ == "__main__":
    main()
