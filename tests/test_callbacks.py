"""Diverged training batches (docs/small_data.md): the epoch summary's warning and the
epochs a finished run lists in run.json (diverged_epochs)."""
import logging

from dream_keras.callbacks import (DIVERGED_TRAINING_LOSS, EpochSummary, diverged_epochs,
                                   epoch_ranges)


def _warnings(caplog, logs):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="absl"):
        EpochSummary().on_epoch_end(2, logs)
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_diverged_training_loss_is_flagged_with_its_epoch(caplog):
    # The quickstart's flags with --seed=1 logged epoch-mean training losses of 1e18.
    messages = _warnings(caplog, {"loss": 1.0063e18, "val_loss": 2.25, "val_pearson": 0.31})
    assert len(messages) == 1
    assert "epoch 3: mean training loss 1.01e+18" in messages[0]
    assert "judge it by val_loss and val_pearson" in messages[0]


def test_sane_or_missing_losses_are_not_flagged(caplog):
    assert _warnings(caplog, {"loss": 2.8, "val_pearson": 0.4}) == []
    assert _warnings(caplog, {"loss": DIVERGED_TRAINING_LOSS}) == []
    assert _warnings(caplog, {"val_pearson": 0.4}) == []
    assert _warnings(caplog, {"loss": float("nan")}) == []  # TerminateOnNaN's case


def test_diverged_epochs_are_listed_as_the_logs_count_them():
    # history.csv rows of a measured run (fold 3, seed 1: exploded in epoch 2 and never
    # recovered), an infinite and a NaN epoch, the threshold itself, a row without loss.
    rows = [{"epoch": 0, "loss": 2.546}, {"epoch": 1, "loss": 5.15e20},
            {"epoch": 2, "loss": float("inf")}, {"epoch": 3, "loss": float("nan")},
            {"epoch": 4, "loss": DIVERGED_TRAINING_LOSS}, {"epoch": 5, "loss": 1.17e23},
            {"epoch": 6, "val_pearson": 0.3}]
    assert diverged_epochs(rows) == [2, 3, 4, 6]
    assert diverged_epochs(rows[:1]) == []
    assert epoch_ranges([2, 3, 4, 6]) == "2-4, 6"
    assert epoch_ranges([5]) == "5"
