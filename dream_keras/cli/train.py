"""dream-train (and train.py): train or resume a run; flags in training_flags.py."""
from __future__ import annotations

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before the flags, whose defaults come from the model

from dream_keras.cli import runner, training_flags  # noqa: E402

training_flags.define_flags()


def train_from_flags() -> str:
    from dream_keras.training import train  # TensorFlow is imported only once flags parse

    record = train(training_flags.config_from_flags())
    best = record.get("best_metrics") or {}
    return (f"{record['status']}: best epoch {record.get('best_epoch')}, "
            f"val_pearson {best.get('val_pearson', float('nan')):.4f}; outputs in "
            f"{record['flags']['output_dir']}")


def main() -> None:
    runner.run(train_from_flags)


if __name__ == "__main__":
    main()
