"""Train the DREAM model: python train.py --flagfile=flags/base.flags (see README)."""
import sys

from absl import app

from dream_keras import flags as dream_flags

dream_flags.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from dream_keras.readers import DataFormatError
    from dream_keras.run_directory import RunDirectoryError
    from dream_keras.training import train
    from dream_keras.training_config import ConfigurationError
    from dream_keras.training_data import MissingDataError

    try:
        record = train(dream_flags.config_from_flags())
    except (MissingDataError, RunDirectoryError, DataFormatError, FileExistsError,
            ConfigurationError) as error:
        sys.exit(f"error: {error}")
    best = record.get("best_metrics") or {}
    print(f"{record['status']}: best epoch {record.get('best_epoch')}, "
          f"val_pearson {best.get('val_pearson', float('nan')):.4f}; outputs in "
          f"{record['flags']['output_dir']}")


if __name__ == "__main__":
    app.run(main)
