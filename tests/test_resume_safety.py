"""A run killed at any point resumes to the uninterrupted run's history; one process owns a
run directory; a resumed run refuses data other than the data it started on.

Kills are exact, not timed: tests/kill_driver.py runs train.py with a hook that SIGKILLs
the process at a chosen point (a batch, validation, the end of an epoch, or the middle of
a named file's write). Tiny runs: the narrow model, 2 steps per epoch, 3 epochs.
"""
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_distributed_workers import SMALL_MODEL_FLAGS
from tests.test_training import history, run_train, small_cache  # noqa: F401

RUN = ["--epochs=3", "--steps_per_epoch=2", "--batch_size=32", "--optimizer=adam",
       "--learning_rate=1e-3", "--nojit_compile", "--singleton_keep_prob=1",
       "--validation_fraction=0.2", *SMALL_MODEL_FLAGS]


def _flags(cache, run_dir):
    return [f"--train_data={cache}", f"--output_dir={run_dir}", *RUN]


def _driver(action: dict, cache, run_dir, **popen):
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "kill_driver.py"),
                             json.dumps(action), *_flags(cache, run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def _killed(action: dict, cache, run_dir) -> str:
    """Run until the driver's SIGKILL at `action`; its stderr."""
    process = _driver(action, cache, run_dir)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -9, f"{action} was never reached:\n{err[-3000:]}"
    return err


def _model_weights(path) -> dict:
    """Every weight array of a .keras file, read without Keras."""
    with zipfile.ZipFile(path) as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}
    with h5py.File(data, "r") as h5:
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[...])
                      if isinstance(item, h5py.Dataset) else None)
    return arrays


def _snapshot(directory, skip=()) -> dict:
    """Every file's bytes, but the lock file (it holds its latest owner's pid) and
    `skip` (TensorBoard's writer flushes on a timer of its own)."""
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()
            and path.name != ".dream_keras.lock"
            and path.relative_to(directory).parts[0] not in skip}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_cache):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_train(*_flags(small_cache, run_dir))
    return run_dir


# (kill point, history rows on disk after the kill). In life order: each rerun of the
# same directory resumes from the previous kill and runs on to the next point.
KILL_POINTS = [
    ({"at": "train_batch", "epoch": 0, "batch": 0}, 0),           # during the first epoch
    ({"at": "replace", "name": "model.keras", "nth": 1, "how": "partial"}, 0),  # checkpoint
    ({"at": "replace", "name": "epoch-*.weights.h5", "nth": 1, "how": "partial"}, 0),
    # Epoch 1 backed up, history.csv not yet written: the rerun writes it from the backup.
    ({"at": "replace", "name": "epoch-*.json", "nth": 1, "how": "after"}, 0),
    ({"at": "test_batch", "epoch": 1}, 1),                        # during validation
    ({"at": "epoch_end", "epoch": 1}, 2),     # right after the epoch's history row
    # (here the test damages the newest backup: the rerun falls back to the one before)
    # history.csv writes of that rerun: its start (1 row), epoch 2, epoch 3 (the third).
    ({"at": "replace", "name": "history.csv", "nth": 3, "how": "partial"}, 2),
    # Every epoch trained; killed before run.json records the outcome.
    ({"at": "replace", "name": "run.json", "nth": 2, "how": "before"}, 3),
]


def test_killed_anywhere_resumes_to_the_same_history(tmp_path, small_cache,  # noqa: F811
                                                     reference):
    run_dir = tmp_path / "run"
    expected = history(reference)
    for action, rows in KILL_POINTS:
        _killed(action, small_cache, run_dir)
        on_disk = history(run_dir) if (run_dir / "history.csv").exists() else []
        assert on_disk == expected[:rows], action  # never cut short, never ahead
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
        if action["at"] == "epoch_end":
            newest = run_dir / "backup" / "epoch-000002.weights.h5"
            newest.write_bytes(newest.read_bytes()[:1000])  # a damaged newest backup
    result = run_train(*_flags(small_cache, run_dir))
    assert "resuming" in result.stderr
    assert history(run_dir) == expected
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == 3
    assert sorted(os.listdir(run_dir)) == ["history.csv", "model.keras", "run.json",
                                           "target_scaler.json", "tensorboard"]
    saved, wanted = _model_weights(run_dir / "model.keras"), _model_weights(
        reference / "model.keras")
    assert saved.keys() == wanted.keys()
    for name in wanted:
        np.testing.assert_array_equal(saved[name], wanted[name], err_msg=name)


def test_damaged_newest_backup_falls_back_to_the_one_before(tmp_path, small_cache,  # noqa: F811
                                                           reference):
    run_dir = tmp_path / "run"
    _killed({"at": "epoch_end", "epoch": 1}, small_cache, run_dir)
    backup = run_dir / "backup"
    assert sorted(os.listdir(backup)) == [
        "epoch-000001.json", "epoch-000001.weights.h5", "epoch-000002.json",
        "epoch-000002.weights.h5"]  # the last two
    (backup / "epoch-000002.json").write_text('{"epoch": 2, "format_ver')  # cut short
    result = run_train(*_flags(small_cache, run_dir))
    assert "backup of epoch 2" in result.stderr and "unusable" in result.stderr
    assert f"resuming {run_dir} at epoch 2" in result.stderr
    assert history(run_dir) == history(reference)


def test_one_owner_per_run_directory(tmp_path, small_cache, reference):  # noqa: F811
    run_dir = tmp_path / "run"
    markers = [tmp_path / f"paused{i}" for i in range(2)]
    release = tmp_path / "release"
    # Started at the same moment: one owns the directory, the other is refused at once.
    processes = [_driver({"at": "pause", "epoch": 0, "marker": str(marker),
                          "release": str(release)}, small_cache, run_dir)
                 for marker in markers]
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not any(m.exists() for m in markers):
            assert sum(p.poll() is None for p in processes) >= 1
            time.sleep(0.1)
        owner = next(i for i, m in enumerate(markers) if m.exists())
        refused = processes[1 - owner]
        _, err = refused.communicate(timeout=300)
        assert refused.returncode == 1
        line = err.strip().splitlines()[-1]
        assert line == (f"error: {run_dir} is in use by another training run (pid "
                        f"{processes[owner].pid}); wait for it to end or choose another "
                        "--output_dir")
        before = _snapshot(run_dir, skip=("tensorboard",))
        # Started later, while the owner trains: refused the same way, nothing touched.
        late = run_train(*_flags(small_cache, run_dir), check=False)
        assert late.returncode == 1
        assert late.stderr.strip().splitlines()[-1] == line
        assert _snapshot(run_dir, skip=("tensorboard",)) == before
        release.touch()
        out, err = processes[owner].communicate(timeout=300)
        assert processes[owner].returncode == 0, err[-3000:]
    finally:
        release.touch()
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert history(run_dir) == history(reference)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == 3
    assert ".dream_keras.lock" not in os.listdir(run_dir)  # removed by its owner


def test_resume_refuses_other_data_and_changes_nothing(tmp_path, small_cache,  # noqa: F811
                                                       tmp_path_factory):
    from dream_keras.errors import RunDirectoryError
    from dream_keras.model import MODEL_DEFAULTS
    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig
    from tests.test_training import synthetic_cache

    data = tmp_path / "train.h5"
    shutil.copy(small_cache, data)
    run_dir = tmp_path / "run"
    _killed({"at": "epoch_end", "epoch": 0}, data, run_dir)
    before = _snapshot(run_dir)
    config = TrainingConfig(
        train_data=str(data), output_dir=str(run_dir), epochs=3, steps_per_epoch=2,
        batch_size=32, optimizer="adam", learning_rate=1e-3, jit_compile=False,
        singleton_keep_prob=1.0, validation_fraction=0.2,
        model={**MODEL_DEFAULTS, "conv_kernel_sizes": (5,), "conv_filters": 16,
               "conv_out_filters": 8, "key_size": 8, "value_size": 8,
               "num_transformer_blocks": 1})  # SMALL_MODEL_FLAGS

    shutil.copy(synthetic_cache(tmp_path_factory, 330), data)  # other rows, same path
    with pytest.raises(RunDirectoryError) as refused:
        train(config)
    message = str(refused.value)
    assert message.startswith(f"{run_dir}: cannot resume: the training data {data} "
                              "changed (sha256 ")
    assert message.endswith("since the run started; to start afresh pass --overwrite "
                            "(replaces this run's outputs) or choose a new --output_dir")
    assert "\n" not in message
    assert _snapshot(run_dir) == before

    shutil.copy(small_cache, data)
    scaler = json.loads((run_dir / "target_scaler.json").read_text())
    (run_dir / "target_scaler.json").write_text(json.dumps({**scaler, "std": 1.0}))
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match="cannot resume: target_scaler.json "
                                                "changed"):
        train(config)
    assert _snapshot(run_dir) == before

    # A run.json from a version that split the rows otherwise.
    (run_dir / "target_scaler.json").write_text(json.dumps(scaler, indent=2) + "\n")
    record = json.loads((run_dir / "run.json").read_text())
    record["data"]["split_sha256"] = "0" * 64
    (run_dir / "run.json").write_text(json.dumps(record))
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match="cannot resume: the training/validation "
                                                "split changed"):
        train(config)
    assert _snapshot(run_dir) == before
