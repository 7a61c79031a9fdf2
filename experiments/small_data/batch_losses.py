"""train.py, printing the training loss of individual batches: every batch of epoch
--report_epoch (default 1) whose own loss exceeds --report_above (and its first 5
batches, for scale), numbered from 1. Keras logs the epoch's running mean; a batch's own
loss is recovered from two consecutive means (exact until one batch dwarfs the rest, then
float32 rounding of the mean dominates later rows).

    python experiments/small_data/batch_losses.py [train.py flags...] [--report_above=20]
        [--report_epoch=1]

What it showed (docs/small_data.md, "Divergence"): on the leaderboard rows one
pre-training batch, not a drift; on CV fold 3 one batch, then nearly every batch.
"""
# First: imports TensorFlow quietly and defines train.py's flags.
from dream_keras.cli import train as train_command

import keras  # noqa: E402
from absl import flags  # noqa: E402

from dream_keras.cli import runner  # noqa: E402
from dream_keras.cli.training_flags import config_from_flags  # noqa: E402
from dream_keras.training import train  # noqa: E402

_REPORT_ABOVE = flags.DEFINE_float("report_above", 20.0,
                                   "Print every batch whose own loss exceeds this.")
_REPORT_EPOCH = flags.DEFINE_integer("report_epoch", 1, "The epoch (from 1) to report.",
                                     lower_bound=1)


class BatchLosses(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.previous_mean = epoch, 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        own = (batch + 1) * mean - batch * self.previous_mean
        self.previous_mean = mean
        if self.epoch + 1 == _REPORT_EPOCH.value and (batch < 5 or own > _REPORT_ABOVE.value):
            print(f"epoch {self.epoch + 1} batch {batch + 1}: loss {own:.3g} (running mean "
                  f"{mean:.3g})", flush=True)


def train_printing_batch_losses() -> str:
    config = config_from_flags()
    train_command.check_training_paths(config)
    record = train(config, extra_callbacks=[BatchLosses()])
    return f"{record['status']}: outputs in {config.output_dir}"


if __name__ == "__main__":
    runner.run(train_printing_batch_losses)
