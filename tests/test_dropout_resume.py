"""A run with dropout, killed after an epoch's backup, resumes to the uninterrupted run's
history: the backup carries the dropout layers' random state (their seed generators),
which save_weights leaves out. A backup written without that state still restores."""
import json
import subprocess
import sys

import numpy as np
import pytest

from dream_keras import backups
from tests import warm_fork
from tests.conftest import REPO, SMALL_MODEL
from tests.run_helpers import SMALL_RUN, history, run_train, synthetic_cache

pytestmark = pytest.mark.long(seconds=17)  # scheduled by length (tests/conftest.py)

DROPOUT_RUN = [*SMALL_RUN, "--epochs=3", "--steps_per_epoch=3",
               "--attention_dropout=0.2", "--positional_dropout=0.2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return synthetic_cache(tmp_path_factory, 200)


def _flags(cache, run_dir):
    return [f"--train_data={cache}", f"--output_dir={run_dir}", *DROPOUT_RUN]


def test_a_run_with_dropout_killed_after_a_backup_resumes_to_the_same_history(tmp_path,
                                                                             cache):
    reference = tmp_path / "reference"
    run_train(*_flags(cache, reference))
    run_dir = tmp_path / "run"
    killer = warm_fork.popen(
        [sys.executable, str(REPO / "tests" / "kill_driver.py"),
         json.dumps({"at": "epoch_end", "epoch": 0}), *_flags(cache, run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = killer.communicate(timeout=300)
    assert killer.returncode == -9, err[-3000:]  # killed right after epoch 1's backup
    assert backups.latest(run_dir / "backup").epoch == 1
    resumed = run_train(*_flags(cache, run_dir))
    assert f"resuming {run_dir} at epoch 2" in resumed.stderr
    expected = history(reference)
    assert len(expected) == 3
    # Dropout draws other masks in each epoch: epoch 2 and 3 match only if the resumed
    # run continues the seed state where the killed run left it.
    assert history(run_dir) == expected


def _dropout_model():
    from dream_keras.model import build_model

    return build_model(**SMALL_MODEL, attention_dropout=0.2, positional_dropout=0.2)


def test_seed_states_round_trip_and_an_older_backup_keeps_them(tmp_path, caplog):
    """What EpochBackup stores of the seed generators comes back into another model; a
    backup without them (written before they were stored) restores the weights and
    leaves the seed states as they are, saying so."""
    from dream_keras import callbacks

    trained = _dropout_model()
    states = callbacks.seed_state_variables(trained)
    # The attention's two Dropout layers and the Bidirectional LSTM's two cells (whose
    # seed generators exist, unused, at its dropout of 0).
    assert len(states) == 4
    for number, variable in enumerate(states):
        variable.assign(np.array([number + 7, 42], dtype=variable.dtype))
    stored = callbacks.seed_state_values(trained)
    backups.commit(tmp_path, 1, trained.save_weights, [{"epoch": 0}], stopped=False,
                   seed_states=stored)
    backup = backups.latest(tmp_path)
    assert backup.seed_states == stored

    fresh = _dropout_model()
    callback = callbacks.EpochBackup(tmp_path, backup)
    callback.set_model(fresh)
    callback.on_train_begin()
    assert [v.numpy().tolist() for v in callbacks.seed_state_variables(fresh)] == [
        [number + 7, 42] for number in range(4)]

    record = tmp_path / "epoch-000001.json"
    fields = json.loads(record.read_text())
    del fields["seed_states"]
    record.write_text(json.dumps(fields))
    older = backups.latest(tmp_path)
    assert older.seed_states is None
    untouched = _dropout_model()
    before = [v.numpy().tolist() for v in callbacks.seed_state_variables(untouched)]
    callback = callbacks.EpochBackup(tmp_path, older)
    callback.set_model(untouched)
    with caplog.at_level("INFO", logger="absl"):
        callback.on_train_begin()
    assert [v.numpy().tolist() for v in callbacks.seed_state_variables(untouched)] == before
    assert "no dropout seed state" in caplog.text
    for a, b in zip(untouched.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)
