"""The epoch backup carries the dropout layers' random state (their seed generators),
which save_weights leaves out; a backup written without it still restores. That a run
with dropout killed anywhere resumes to the uninterrupted history is
tests/test_resume_safety.py's kill chain, which runs with dropout."""
import json

import numpy as np

from dream_keras import backups
from tests.conftest import SMALL_MODEL


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
