"""A run killed at any point resumes to the uninterrupted run's history; one process owns a
run directory; a resumed run refuses data other than the data it started on.

Kills are exact, not timed: tests/kill_driver.py runs train.py with a hook that SIGKILLs
the process at a chosen point (a batch, validation, the end of an epoch, or the middle of
a named file's write). Tiny runs: the narrow model, 2 steps per epoch, 3 epochs, a
learning-rate schedule and weight averaging (both must carry over a kill).
"""
import dataclasses
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

from tests import warm_fork
from tests.conftest import REPO, SMALL_MODEL, small_model_flags
from tests.run_helpers import history, run_train

pytestmark = pytest.mark.long(seconds=45)  # scheduled by length (tests/conftest.py)

SMALL_MODEL_FLAGS = small_model_flags()

# A warm-up and cosine schedule: a resumed run must also continue the learning-rate curve.
# Weight averaging on: validation (and model.keras) use the optimizer's averages, so every
# kill point also shows that the backup restores the averages with the raw weights.
EMA_MOMENTUM = 0.9
DROPOUT = 0.2
RUN = ["--epochs=3", "--steps_per_epoch=2", "--batch_size=32", "--optimizer=adam",
       "--learning_rate=1e-3", "--lr_schedule=cosine", "--lr_warmup_epochs=0.5",
       f"--ema_momentum={EMA_MOMENTUM}", "--nojit_compile", "--singleton_keep_prob=1",
       "--validation_fraction=0.2", *SMALL_MODEL_FLAGS,
       # Dropout draws other masks every epoch: a resumed run matches only if the backup
       # carried the dropout layers' seed states (save_weights leaves them out).
       f"--attention_dropout={DROPOUT}", f"--positional_dropout={DROPOUT}"]


def _flags(cache, run_dir):
    return [f"--train_data={cache}", f"--output_dir={run_dir}", *RUN]


def _driver(action: dict, cache, run_dir, *extra, **popen):
    return warm_fork.popen([sys.executable, str(REPO / "tests" / "kill_driver.py"),
                             json.dumps(action), *_flags(cache, run_dir), *extra],
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
    # Mid-write of the best-epoch checkpoint (pending until its epoch commits).
    ({"at": "replace", "name": "model.pending-epoch-*.keras", "nth": 1, "how": "partial"}, 0),
    ({"at": "replace", "name": "epoch-*.weights.h5", "nth": 1, "how": "partial"}, 0),
    # Epoch 1 backed up, history.csv not yet written: the rerun writes it from the backup,
    # and renames epoch 1's pending checkpoint to model.keras ...
    ({"at": "replace", "name": "epoch-*.json", "nth": 1, "how": "after"}, 0),
    # ... killed just before that rename, the next rerun does it.
    ({"at": "replace", "name": "model.keras", "nth": 1, "how": "before"}, 0),
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
    """Every kill point in turn, then a last rerun: the run's history, weights and files
    are those of the uninterrupted `reference` run. (The first rerun starts from nothing,
    so this also shows that one seed gives one history in separate processes; each later
    one resumes mid-schedule: the same batches at the same learning rates.)"""
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
    assert record["flags"]["ema_momentum"] == EMA_MOMENTUM
    assert record["flags"]["model"]["attention_dropout"] == DROPOUT
    assert sorted(os.listdir(run_dir)) == ["history.csv", "model.keras", "run.json",
                                           "target_scaler.json", "tensorboard"]
    saved, wanted = _model_weights(run_dir / "model.keras"), _model_weights(
        reference / "model.keras")
    assert saved.keys() == wanted.keys()
    for name in wanted:
        np.testing.assert_array_equal(saved[name], wanted[name], err_msg=name)


def test_a_stop_under_overwrite_says_how_to_resume_and_a_rerun_says_what_it_discards(
        tmp_path, small_cache, reference):  # noqa: F811
    """A run started with --overwrite and stopped (SIGTERM after epoch 1's backup): its
    last line says to rerun WITHOUT --overwrite to resume; rerunning the same command line
    (--overwrite included) starts afresh, and says it discards the finished epoch."""
    run_dir = tmp_path / "run"
    process = _driver({"at": "epoch_end", "epoch": 1, "signal": "SIGTERM"}, small_cache,
                      run_dir, "--overwrite")
    _, err = process.communicate(timeout=300)
    assert process.returncode == -15, err[-3000:]  # ended by its SIGTERM, after cleanup
    assert "Traceback" not in err
    assert "rerun the command WITHOUT --overwrite to resume" in err.strip().splitlines()[-1]
    result = run_train(*_flags(small_cache, run_dir), "--overwrite")
    assert (f"{run_dir}: --overwrite discards this unfinished run's 2 finished epoch(s) "
            "and starts afresh; without --overwrite it would have resumed at epoch 3"
            in result.stderr), result.stderr[-3000:]
    assert history(run_dir) == history(reference)  # the whole run again


def _config(data, run_dir):
    """train.py's configuration for _flags(data, run_dir), for in-process runs."""
    from dream_keras.model import MODEL_DEFAULTS
    from dream_keras.training_config import TrainingConfig

    return TrainingConfig(
        train_data=str(data), output_dir=str(run_dir), epochs=3, steps_per_epoch=2,
        batch_size=32, optimizer="adam", learning_rate=1e-3, lr_schedule="cosine",
        lr_warmup_epochs=0.5, ema_momentum=EMA_MOMENTUM, jit_compile=False,
        singleton_keep_prob=1.0, validation_fraction=0.2,
        model={**MODEL_DEFAULTS, **SMALL_MODEL, "attention_dropout": DROPOUT,
               "positional_dropout": DROPOUT})


def _wait_for_owner(processes, markers) -> int:
    deadline = time.time() + 300
    while time.time() < deadline:
        for index, marker in enumerate(markers):
            if marker.exists():
                return index
        assert any(p.poll() is None for p in processes), "both runs ended"
        time.sleep(0.1)
    raise AssertionError("no run reached the end of its first epoch")


def test_one_owner_and_resume_only_on_the_same_data(tmp_path, small_cache,  # noqa: F811
                                                    tmp_path_factory, reference):
    from dream_keras.errors import RunDirectoryError
    from dream_keras.training import train
    from tests.run_helpers import synthetic_cache

    data = tmp_path / "train.h5"
    shutil.copy(small_cache, data)
    run_dir = tmp_path / "run"
    markers = [tmp_path / f"paused{i}" for i in range(2)]
    release = tmp_path / "release"
    # Two runs started at the same moment: one owns the directory (and pauses after its
    # first epoch), the other is refused at once in one line naming the owner.
    processes = [_driver({"at": "pause", "epoch": 0, "marker": str(marker),
                          "release": str(release)}, data, run_dir) for marker in markers]
    try:
        owner = processes[_wait_for_owner(processes, markers)]
        refused = processes[1 - processes.index(owner)]
        _, err = refused.communicate(timeout=300)
        assert refused.returncode == 1
        line = (f"{run_dir} is in use by another training run (pid {owner.pid}); wait "
                "for it to end or choose another --output_dir")
        assert err.strip().splitlines()[-1] == f"error: {line}"
        # A run started later (this process) is refused the same way and touches nothing.
        before = _snapshot(run_dir, skip=("tensorboard",))
        with pytest.raises(RunDirectoryError) as late:
            train(_config(data, run_dir))
        assert str(late.value) == line
        assert _snapshot(run_dir, skip=("tensorboard",)) == before
        owner.kill()  # the owner dies after epoch 1: the kernel drops its lock
        owner.wait(timeout=60)
    finally:
        release.touch()
        for process in processes:
            if process.poll() is None:
                process.kill()

    # Resumed on other data (same path), it refuses before changing anything.
    before = _snapshot(run_dir)
    shutil.copy(synthetic_cache(tmp_path_factory, 330), data)
    with pytest.raises(RunDirectoryError) as refused_data:
        train(_config(data, run_dir))
    message = str(refused_data.value)
    assert message.startswith(f"{run_dir}: cannot resume: the training data {data} "
                              "changed (sha256 ")
    assert message.endswith("since the run started; to start afresh pass --overwrite "
                            "(replaces this run's outputs) or choose a new --output_dir")
    assert "\n" not in message
    assert _snapshot(run_dir) == before

    shutil.copy(small_cache, data)
    scaler_path = run_dir / "target_scaler.json"
    scaler_text = scaler_path.read_text()
    scaler_path.write_text(json.dumps({**json.loads(scaler_text), "std": 1.0}))
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match="cannot resume: target_scaler.json "
                                                "changed"):
        train(_config(data, run_dir))
    assert _snapshot(run_dir) == before
    scaler_path.write_text(scaler_text)

    # A run.json written by a version that split the rows otherwise.
    record_text = (run_dir / "run.json").read_text()
    record = json.loads(record_text)
    (run_dir / "run.json").write_text(json.dumps(
        {**record, "data": {**record["data"], "split_sha256": "0" * 64}}))
    before = _snapshot(run_dir)
    with pytest.raises(RunDirectoryError, match="cannot resume: the training/validation "
                                                "split changed"):
        train(_config(data, run_dir))
    assert _snapshot(run_dir) == before
    (run_dir / "run.json").write_text(record_text)

    # On its own data it resumes after the owner's epoch and ends as if never stopped.
    assert train(_config(data, run_dir))["status"] == "completed"
    assert history(run_dir) == history(reference)
    assert ".dream_keras.lock" not in os.listdir(run_dir)  # removed by its last owner

    # --overwrite removes the finished run only once the new start has passed its checks:
    # a refused one (contradictory settings, a bad row) leaves it as it was.
    from dream_keras.errors import ConfigurationError, DataFormatError

    before = _snapshot(run_dir)
    with pytest.raises(ConfigurationError, match="--teacher and --pretrain_epochs go"):
        train(dataclasses.replace(_config(data, run_dir), overwrite=True, teacher="ridge"))
    (tmp_path / "bad.txt").write_text("ACGTACGT\t1.5\nACGXACGT\t2.5\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: "):
        train(dataclasses.replace(_config(tmp_path / "bad.txt", run_dir), overwrite=True))
    assert _snapshot(run_dir) == before
