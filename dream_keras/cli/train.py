"""dream-train (and train.py): train or resume a run; flags in training_flags.py."""
from __future__ import annotations

from dream_keras.cli import runner, training_flags

training_flags.define_flags()


def train_from_flags() -> str:
    # Importing the flags above already loaded TensorFlow and Keras (training_flags reads
    # MODEL_DEFAULTS from model.py); training.py itself is imported once they parse.
    from dream_keras.training import train

    record = train(training_flags.config_from_flags())
    best = record.get("best_metrics") or {}
    return (f"{record['status']}: best epoch {record.get('best_epoch')}, "
            f"val_pearson {best.get('val_pearson', float('nan')):.4f}; outputs in "
            f"{record['flags']['output_dir']}")


def main() -> None:
    runner.run(train_from_flags)


if __name__ == "__main__":
    main()
