"""The run directory's files without training: atomic writes, verified backups with
fallback, the directory lock, and the data-identity check of a resumed run."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from dream_keras import atomic_files, backups
from dream_keras import run_directory as rundir
from dream_keras.callbacks import read_history, write_history
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import RunDirectoryError
from dream_keras.training_config import TrainingConfig

pytestmark = pytest.mark.long(seconds=35)  # scheduled by length (tests/conftest.py)


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_files.replacing(target) as temporary:
            assert os.path.dirname(temporary) == str(tmp_path)
            with open(temporary, "w") as handle:
                handle.write("half of the new")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["run.json"]
    atomic_files.write_text(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["run.json"]


def test_partial_names_keep_the_ending_and_only_dead_writers_are_cleared(tmp_path):
    assert atomic_files.partial_path(tmp_path / "model.keras").endswith(
        f".partial-{atomic_files.HOST}-{os.getpid()}.model.keras")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until reused)
    host = atomic_files.HOST
    killed = [f".partial-{host}-{dead.pid}.history.csv", f".partial-{dead.pid}.run.json",
              f".partial-{host}-{dead.pid}.backup"]  # the last a directory
    kept = [f".partial-{host}-{os.getpid()}.model.keras",  # a live writer's
            f".partial-elsewhere-{dead.pid}.cache.h5", "history.csv"]  # another host's
    for name in killed + kept:
        (tmp_path / name).write_text("half") if name != killed[2] else \
            (tmp_path / name).mkdir()
    assert atomic_files.remove_stale_partials(tmp_path) == sorted(killed)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def _rows(count):
    return [{"epoch": e, "loss": 1.0 / (e + 1), "val_pearson": 0.1 * e} for e in range(count)]


def _commit(backup_dir, epoch, stopped=False):
    backups.commit(backup_dir, epoch, lambda path: open(path, "wb").write(
        f"weights of epoch {epoch}".encode()), _rows(epoch), stopped=stopped)


def test_backups_keep_the_last_two_and_resume_the_newest(tmp_path):
    for epoch in (1, 2, 3):
        _commit(tmp_path, epoch, stopped=epoch == 3)
    assert sorted(os.listdir(tmp_path)) == [
        "epoch-000002.json", "epoch-000002.weights.h5", "epoch-000003.json",
        "epoch-000003.weights.h5"]
    latest = backups.latest(tmp_path)
    assert (latest.epoch, latest.stopped, latest.history) == (3, True, _rows(3))
    assert open(latest.weights_path, "rb").read() == b"weights of epoch 3"


@pytest.mark.parametrize("damage", ["truncated weights", "missing weights", "cut record",
                                    "short history"])
def test_a_damaged_newest_backup_falls_back_to_the_one_before(tmp_path, damage, caplog):
    _commit(tmp_path, 1)
    _commit(tmp_path, 2)
    weights, record = tmp_path / "epoch-000002.weights.h5", tmp_path / "epoch-000002.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:5])
    elif damage == "missing weights":
        weights.unlink()
    elif damage == "cut record":
        record.write_text(record.read_text()[:40])
    else:
        fields = json.loads(record.read_text())
        record.write_text(json.dumps({**fields, "history": fields["history"][:1]}))
    with caplog.at_level("WARNING", logger="absl"):
        latest = backups.latest(tmp_path)
    assert latest.epoch == 1 and latest.history == _rows(1)
    assert "backup of epoch 2" in caplog.text and "unusable" in caplog.text


def test_commits_below_unusable_backups_are_kept_and_supersede_them(tmp_path):
    """Both kept backups unusable: the run starts afresh. Those records, kept, outranked
    its new commits, which pruning then deleted at once (a kill: epoch 0 again)."""
    for epoch in (1, 2, 3):
        _commit(tmp_path, epoch)
    for epoch in (2, 3):
        (tmp_path / f"epoch-{epoch:06d}.weights.h5").write_bytes(b"junk")
    (tmp_path / "epoch-000004.weights.h5").write_bytes(b"a commit cut short")
    (tmp_path / "notes.txt").write_text("the user's")
    assert backups.latest(tmp_path) is None
    _commit(tmp_path, 1)
    assert backups.latest(tmp_path).epoch == 1  # a kill now resumes at epoch 1
    _commit(tmp_path, 2)
    latest = backups.latest(tmp_path)
    assert (latest.epoch, latest.history) == (2, _rows(2))
    assert sorted(os.listdir(tmp_path)) == [
        "epoch-000001.json", "epoch-000001.weights.h5", "epoch-000002.json",
        "epoch-000002.weights.h5", "notes.txt"]


def test_no_usable_backup_means_a_fresh_start(tmp_path):
    assert backups.latest(tmp_path / "absent") is None
    _commit(tmp_path, 1)
    (tmp_path / "epoch-000001.weights.h5").write_bytes(b"")
    assert backups.latest(tmp_path) is None


def test_a_keras_backup_of_an_earlier_version_is_refused(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    with pytest.raises(RunDirectoryError, match="earlier dream_keras.*--overwrite"):
        rundir.resume_point(tmp_path)


def test_history_is_rewritten_whole(tmp_path):
    path = tmp_path / "history.csv"
    write_history(path, _rows(2))
    assert path.read_text().splitlines()[0] == "epoch,loss,val_pearson"
    assert read_history(path) == _rows(2)
    write_history(path, [])  # a run resumed at epoch 0 keeps no rows
    assert not path.exists()


def test_lock_refuses_a_second_owner_naming_the_first(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with rundir.locked(run_dir):  # creates the directory
        lock = run_dir / rundir.LOCK_FILE
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunDirectoryError) as refused:
            with rundir.locked(run_dir):
                pass
        assert str(refused.value) == (
            f"{run_dir} is in use by another training run (pid {os.getpid()}); wait for "
            "it to end or choose another --output_dir")
        assert lock.exists()  # the refused one took nothing away
    assert os.listdir(run_dir) == []  # the owner removes its lock file


def test_a_failed_owner_removes_only_the_empty_directories_it_created(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    for run_dir, kept in [(tmp_path / "new" / "deeper" / "run", tmp_path),
                          (existing / "run", existing), (existing, existing)]:
        with pytest.raises(ValueError):
            with rundir.locked(run_dir):
                raise ValueError("refused after the directory was created")
        assert kept.is_dir() and not run_dir.exists() or run_dir == kept
    assert sorted(os.listdir(tmp_path)) == ["existing"] and os.listdir(existing) == []
    # A directory the failed block wrote into is kept, with what was written.
    with pytest.raises(ValueError):
        with rundir.locked(tmp_path / "wrote"):
            (tmp_path / "wrote" / "run.json").write_text("{}")
            raise ValueError("failed after writing")
    assert os.listdir(tmp_path / "wrote") == ["run.json"]
    # A block that succeeds keeps its directory, empty or not.
    with rundir.locked(tmp_path / "fine"):
        pass
    assert (tmp_path / "fine").is_dir()


def test_a_waiter_whose_failed_owner_removed_the_directory_takes_it_over(tmp_path,
                                                                          monkeypatch):
    """B opens A's lock file; A's block fails (removing its lock and the directory it
    created); B then finds the name gone and must own a recreated directory, not fail."""
    run_dir = tmp_path / "run"
    first = rundir.locked(run_dir)
    first.__enter__()
    real_open = os.open

    def open_then_the_first_owner_fails(path, flags, mode=0o777):
        descriptor = real_open(path, flags, mode)
        if not getattr(first, "failed", False):
            first.failed = True
            assert first.__exit__(ValueError, ValueError("bad data"), None) is False
            assert not run_dir.exists()
        return descriptor

    monkeypatch.setattr(rundir.os, "open", open_then_the_first_owner_fails)
    with rundir.locked(run_dir):
        assert (run_dir / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_lock_name_that_cannot_be_opened_is_one_error_not_a_loop(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / rundir.LOCK_FILE).symlink_to(tmp_path / "gone" / "lock")  # dangling
    with pytest.raises(RunDirectoryError, match="cannot write to the run directory"):
        with rundir.locked(tmp_path / "run"):
            pass


def test_a_killed_owner_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from dream_keras import run_directory
        with run_directory.locked({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=f"pid {holder.pid}\\)"):
            with rundir.locked(tmp_path):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (tmp_path / rundir.LOCK_FILE).read_text() == f"{holder.pid}\n"  # left behind
    with rundir.locked(tmp_path):  # ... but not locked
        assert (tmp_path / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_claim_ignores_the_lock_and_killed_writers_files(tmp_path):
    (tmp_path / rundir.LOCK_FILE).write_text("123\n")
    (tmp_path / ".partial-123.run.json").write_text("{")
    assert rundir.claim_output_dir(tmp_path, {"seed": 0}, overwrite=False) is False


def test_claim_ignores_the_runs_own_inputs_in_its_directory(tmp_path, monkeypatch):
    """--synthetic_rows' --train_data and the cache are written before run.json: a start
    killed then is resumable by the same command (and the command corrected); anything
    else, or the same files for a command that does not name them, is still refused."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("train.txt", "train.txt.seq230.h5", "rows.seq.h5",
                 f".partial-{atomic_files.HOST}-1.rows.seq.h5"):
        (run_dir / name).write_text("written by the run")
    identity = TrainingConfig(train_data="run/train.txt", output_dir="run",
                              cache_path=str(run_dir / "rows.seq.h5")).run_identity()
    assert rundir.claim_output_dir(run_dir, identity, overwrite=False) is False
    assert rundir.claim_output_dir(run_dir, {**identity, "steps_per_execution": 3},
                                   overwrite=False) is False
    with pytest.raises(RunDirectoryError, match="has no run.json of this package"):
        rundir.claim_output_dir(run_dir, {**identity, "cache_path": None}, overwrite=False)
    with pytest.raises(RunDirectoryError, match="is not empty"):
        rundir.claim_output_dir(run_dir, {**identity, "train_data": "elsewhere/train.txt"},
                                overwrite=False)
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="is not empty"):
        rundir.claim_output_dir(run_dir, identity, overwrite=False)


def _finished_run(run_dir):
    """A run directory as a run killed in its second epoch leaves it, every file ours."""
    rundir.write_run_record(run_dir, {"status": "running", "identity": {"seed": 1}})
    for name in (rundir.MODEL_FILE, rundir.SCALER_FILE, rundir.HISTORY_FILE):
        (run_dir / name).write_text("written by the run")
    _commit(run_dir / rundir.BACKUP_DIR, 1)
    (run_dir / rundir.BACKUP_DIR / ".partial-host-1.epoch-000002.weights.h5").write_text("")
    (run_dir / rundir.BACKUP_DIR / rundir.RIDGE_TEACHER_FILE).write_text("")  # --teacher=ridge
    for part in ("train", "validation"):
        (run_dir / "tensorboard" / part).mkdir(parents=True)
        (run_dir / "tensorboard" / part / "events.out.tfevents.1.host.1.0.v2").write_text("")


def _every_path(root):
    return sorted(os.path.join(top, name) for top, folders, files in os.walk(root)
                  for name in folders + files)


def test_overwrite_removes_the_runs_files_and_nothing_else(tmp_path):
    _finished_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert rundir.claim_output_dir(tmp_path, {"seed": 0}, overwrite=True) is False
    rundir.remove_run_outputs(tmp_path)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("intruder, says", [
    ("backup/thesis_draft.tex", "backup/thesis_draft.tex (a file the run does not write)"),
    ("tensorboard/my_own_logs.txt", "tensorboard/my_own_logs.txt (a file the run does"),
    ("tensorboard/train/plots/a.png", "tensorboard/train/plots (a directory the run"),
    ("model.keras/saved.pb", "model.keras (a directory; the run writes a file there)"),
    ("tensorboard -> shared", "tensorboard (a symbolic link to "),
    ("backup -> shared", "backup (a symbolic link to "),
])
def test_overwrite_refuses_what_it_did_not_write_and_deletes_nothing(tmp_path, intruder,
                                                                     says):
    """A user's files in backup/ or tensorboard/, or one of them a symlink (rmtree would
    fail on it after run.json was gone): refused before anything is removed."""
    run_dir, shared = tmp_path / "run", tmp_path / "shared"
    run_dir.mkdir()
    shared.mkdir()
    (shared / "events.out.tfevents.1.host.1.0.v2").write_text("a shared log")
    _finished_run(run_dir)
    if " -> " in intruder:
        name = intruder.split(" -> ")[0]
        shutil.rmtree(run_dir / name)
        (run_dir / name).symlink_to(shared)
    else:
        folder = (run_dir / intruder).parent
        if folder.is_file():  # model.keras
            folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        (run_dir / intruder).write_text("precious")
    before = _every_path(tmp_path)
    for attempt in (lambda: rundir.claim_output_dir(run_dir, {"seed": 0}, overwrite=True),
                    lambda: rundir.remove_run_outputs(run_dir)):
        with pytest.raises(RunDirectoryError) as refused:
            attempt()
        assert str(refused.value).startswith(f"{run_dir}: cannot --overwrite: {run_dir}/")
        assert says in str(refused.value) and "\n" not in str(refused.value)
        assert _every_path(tmp_path) == before


def test_a_run_resumes_under_any_spelling_of_its_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    started = {"output_dir": "runs/x", "train_data": "data/train.txt", "cache_path": None,
               "teacher": "ridge,runs/teacher", "seed": 0}
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "run.json").write_text(json.dumps(
        {"status": "running", "identity": started}))
    for spelling in ({"output_dir": "runs/x/"},
                     {"output_dir": str(tmp_path / "runs" / "x"),
                      "train_data": "data//train.txt", "teacher": "ridge, runs/teacher/"}):
        assert rundir.claim_output_dir(tmp_path / "runs" / "x", {**started, **spelling},
                                       overwrite=False) is True
    with pytest.raises(RunDirectoryError, match=r"differs in: seed: 0 at the start, 1 now; "
                                                r"train_data: 'data/train.txt' at the start, "
                                                r"'data/other.txt' now\)"):
        rundir.claim_output_dir(tmp_path / "runs" / "x", {
            **started, "train_data": "data/other.txt", "seed": 1}, overwrite=False)


def test_input_pipeline_speed_settings_do_not_stop_a_resume(tmp_path):
    """--prefetch_batches and --data_parallel_calls change how fast batches come, not
    which (tf.data keeps their order): a killed run resumes under other values, also one
    whose run.json recorded them (earlier releases did)."""
    from dream_keras.training_config import TrainingConfig

    run = tmp_path / "run"
    config = TrainingConfig(train_data="train.txt", output_dir=str(run))
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running", "identity": {
        **config.run_identity(), "prefetch_batches": 8, "data_parallel_calls": 2}}))
    faster = dataclasses.replace(config, prefetch_batches=2, data_parallel_calls=-1)
    assert "prefetch_batches" not in faster.run_identity()
    assert rundir.claim_output_dir(run, faster.run_identity(), overwrite=False) is True
    with pytest.raises(RunDirectoryError, match=r"differs in: batch_size: 1024 at the start, "
                                                r"64 now\)"):
        rundir.claim_output_dir(run, dataclasses.replace(config, batch_size=64)
                                .run_identity(), overwrite=False)


DATA = {"train_data": "/d/train.txt", "source_sha256": "a" * 64, "rows_in_cache": 300,
        "skipped_rows": 0, "rows_after_singleton_filter": 300, "train_rows": 240,
        "validation_rows": 60, "split_sha256": "b" * 64, "target_mean": 11.0,
        "target_std": 2.5}


@pytest.mark.parametrize("change, says", [
    ({"source_sha256": "c" * 64}, "the training data /d/train.txt changed (sha256 "
                                  "aaaaaaaaaaaa... then, cccccccccccc... now)"),
    ({"rows_in_cache": 301}, "the number of rows in the training data changed (300 "
                             "then, 301 now)"),
    ({"train_rows": 239, "validation_rows": 61}, "the training/validation split changed "
                                                 "(240/60 rows then, 239/61 now"),
    ({"split_sha256": "d" * 64}, "the training/validation split changed"),
    ({"target_std": 2.0}, "the target scaler changed (mean 11.0, std 2.5 then; mean "
                          "11.0, std 2.0 now)"),
])
def test_resuming_on_changed_data_says_what_changed(tmp_path, change, says):
    rundir.write_run_record(tmp_path, {"data": DATA})
    TargetScaler(11.0, 2.5).save(tmp_path / rundir.SCALER_FILE)
    rundir.check_same_data(tmp_path, DATA, TargetScaler(11.0, 2.5))  # unchanged: passes
    now = {**DATA, **change}
    with pytest.raises(RunDirectoryError) as refused:
        rundir.check_same_data(tmp_path, now, TargetScaler(now["target_mean"],
                                                           now["target_std"]))
    assert f"{tmp_path}: cannot resume: {says}" in str(refused.value)
    assert str(refused.value).endswith("since the run started; to start afresh pass "
                                       "--overwrite (replaces this run's outputs) or "
                                       "choose a new --output_dir")


def test_a_scaler_file_that_differs_from_the_data_is_refused(tmp_path):
    rundir.write_run_record(tmp_path, {"data": DATA})
    rundir.check_same_data(tmp_path, DATA, TargetScaler(11.0, 2.5))  # not written yet
    (tmp_path / rundir.SCALER_FILE).write_text('{"mean": 11.0, "std": 3.0}')
    with pytest.raises(RunDirectoryError, match="target_scaler.json changed \\(mean 11.0, "
                                                "std 3.0; the training rows give mean "
                                                "11.0, std 2.5\\)"):
        rundir.check_same_data(tmp_path, DATA, TargetScaler(11.0, 2.5))


def test_a_pending_best_model_is_settled_by_the_committed_epochs(tmp_path):
    """The checkpoint of the last committed epoch (killed before its rename) becomes
    model.keras; one of an uncommitted epoch (killed before its commit) is removed."""
    (tmp_path / rundir.MODEL_FILE).write_text("epoch 1")
    (tmp_path / "model.pending-epoch-000003.keras").write_text("epoch 3")
    (tmp_path / "model.pending-epoch-000004.keras").write_text("epoch 4")
    rundir.settle_pending_model(tmp_path, 3)
    assert (tmp_path / rundir.MODEL_FILE).read_text() == "epoch 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.MODEL_FILE]
    (tmp_path / "model.pending-epoch-000001.keras").write_text("a fresh start's leftover")
    rundir.settle_pending_model(tmp_path, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.MODEL_FILE]


def test_model_keras_never_holds_an_epoch_the_backup_did_not_commit(tmp_path, tmp_path_factory,
                                                                    monkeypatch):
    """A run stopped after epoch 2's checkpoint but before its commit (as a kill there
    would) keeps epoch 1's model.keras; the resumed run redoes epoch 2 and ends with no
    pending file. Were model.keras written first, it would hold an attempt at epoch 2
    that the resumed run replaces by its own (which, on a GPU or another number of
    replicas, need not be equal) while run.json describes the redo."""
    import numpy as np

    from dream_keras.model import load_model
    from dream_keras.training import train
    from tests.conftest import SMALL_MODEL
    from tests.run_helpers import synthetic_cache

    cache = synthetic_cache(tmp_path_factory, 320)
    config = TrainingConfig(train_data=str(cache), output_dir=str(tmp_path / "run"),
                            epochs=2, batch_size=32, steps_per_epoch=2, optimizer="adam",
                            learning_rate=1e-2, singleton_keep_prob=1.0,
                            validation_fraction=0.2, jit_compile=False, model=SMALL_MODEL,
                            early_stopping_patience=10)
    commit = backups.commit

    class Killed(Exception):
        pass

    def commit_unless_epoch_2(backup_dir, epoch, *args, **kwargs):
        if epoch == 2:
            raise Killed
        return commit(backup_dir, epoch, *args, **kwargs)

    monkeypatch.setattr(backups, "commit", commit_unless_epoch_2)
    with pytest.raises(Killed):
        train(config)
    run = tmp_path / "run"
    # Epoch 2 improved on epoch 1 (so its checkpoint was written) ...
    assert (run / "model.pending-epoch-000002.keras").exists()
    # ... yet model.keras holds epoch 1, the committed epoch (its backup's weights).
    saved = load_model(run / rundir.MODEL_FILE)
    committed = load_model(run / "model.pending-epoch-000002.keras")
    committed.load_weights(backups.latest(run / rundir.BACKUP_DIR).weights_path)
    assert backups.latest(run / rundir.BACKUP_DIR).epoch == 1
    for kept, epoch_1 in zip(saved.trainable_weights, committed.trainable_weights):
        np.testing.assert_array_equal(np.array(kept), np.array(epoch_1))
    monkeypatch.setattr(backups, "commit", commit)
    record = train(config)
    assert record["status"] == "completed" and record["epochs_completed"] == 2
    assert not list(run.glob("model.pending-*"))


def test_the_runs_behind_a_model_are_read_whatever_their_files_hold(tmp_path):
    """trained_run_records (in-sample checks, logo flanks, teachers): a run's run.json, or
    an ensemble's members'; members without a run, or records that are not objects, are
    left out or read as empty, never an error, and never a run.json of the working
    directory."""
    run, ensemble = tmp_path / "run", tmp_path / "ens"
    run.mkdir()
    ensemble.mkdir()
    (run / "run.json").write_text(json.dumps({"seed": 3}))
    assert rundir.trained_run_records(run / "model.keras") == [{"seed": 3}]
    (ensemble / "ensemble.json").write_text(json.dumps({"members": [
        {"run": str(run)}, {"seed": 1}, "not a member", {"run": ""},
        {"run": str(tmp_path / "gone")}]}))
    assert rundir.trained_run_records(ensemble / "model.keras") == [{"seed": 3}, {}]
    for text in ("[]", '{"members": 5}', "{not json"):
        (ensemble / "ensemble.json").write_text(text)
        assert rundir.trained_run_records(ensemble / "model.keras") == []
