"""The run directory: what a training run writes, who may write it, and when it may be
reused.

One process owns a directory at a time (`locked`: an OS lock the kernel drops when the
owner dies). A directory is resumed only by the same configuration (run.json's identity)
on the same data (`check_same_data`), refused when it holds anything else unless
--overwrite, and --overwrite removes only files this package writes, never anything else
a user put there. Every file is replaced whole (atomic_files), never written in place.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time

from dream_keras import atomic_files, backups
from dream_keras.errors import RunDirectoryError
from dream_keras.training_config import NOT_PART_OF_A_RUN

MODEL_FILE = "model.keras"
SCALER_FILE = "target_scaler.json"
HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"
ENSEMBLE_FILE = "ensemble.json"  # an ensemble directory's record (dream_keras.ensemble)
TENSORBOARD_DIR = "tensorboard"
BACKUP_DIR = "backup"
# In BACKUP_DIR of a --teacher=ridge run, from its start until backup/ goes at its end: the
# fitted ridge teacher, which a run resumed in pre-training reads instead of fitting again
# (dream_keras.teachers).
RIDGE_TEACHER_FILE = "teacher_ridge.npz"
RUN_OUTPUTS = (MODEL_FILE, SCALER_FILE, HISTORY_FILE, RUN_FILE, TENSORBOARD_DIR, BACKUP_DIR)
# Held (flock) by the process that owns the directory; holds its pid. Removed when the
# owner ends; a killed owner leaves the file but no lock, so it is never stale.
LOCK_FILE = ".dream_keras.lock"
START_AFRESH = "to start afresh pass --overwrite (replaces this run's outputs) or choose " \
                "a new --output_dir"


def model_path_of(path) -> str:
    """`path` itself if it is a file, else `path/model.keras` (a run directory)."""
    path = os.fspath(path)
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def scaler_path_of(path) -> str:
    """The target scaler read with the model `path` (RUN/model.keras or RUN):
    target_scaler.json beside the model."""
    return os.path.join(os.path.dirname(os.path.abspath(model_path_of(path))), SCALER_FILE)


@contextlib.contextmanager
def locked(output_dir):
    """Own `output_dir` (created if needed) for the duration of the block, or raise
    RunDirectoryError naming the owner's pid when another process owns it. A block that
    fails (a refused configuration, bad data) leaves no empty directory that it created."""
    created = _missing_directories(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise RunDirectoryError(f"{output_dir}: cannot create the run directory "
                                f"({error.strerror})") from None
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        descriptor = _acquire(path, output_dir)
    except RunDirectoryError:
        _remove_if_empty(created)
        raise
    failed = True
    try:
        yield
        failed = False
    finally:
        # Removed while still held: a process that opened it meanwhile sees, once it gets
        # the lock, that the name no longer leads to its file, and starts over (_acquire).
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(descriptor)
        if failed:
            _remove_if_empty(created)


def _missing_directories(path) -> list:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_if_empty(directories) -> None:
    """rmdir each of `directories` (deepest first) while it is empty: never a file."""
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError:
            return


def _acquire(path, output_dir) -> int:
    recreated = False
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError as error:
            # A previous owner that failed removed the (empty) directory it had created
            # while this process waited on its lock file: create it again and go round
            # (once: anything else that keeps the name unopenable is an error).
            if os.path.isdir(output_dir) or recreated:
                raise RunDirectoryError(f"{output_dir}: cannot write to the run directory "
                                        f"({error.strerror})") from None
            try:
                os.makedirs(output_dir, exist_ok=True)
            except OSError as error:
                raise RunDirectoryError(f"{output_dir}: cannot create the run directory "
                                        f"({error.strerror})") from None
            recreated = True
            continue
        except OSError as error:
            raise RunDirectoryError(f"{output_dir}: cannot write to the run directory "
                                    f"({error.strerror})") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner_pid(descriptor)
            os.close(descriptor)
            raise RunDirectoryError(
                f"{output_dir} is in use by another training run (pid {owner}); wait for "
                "it to end or choose another --output_dir") from None
        except OSError as error:
            os.close(descriptor)
            raise RunDirectoryError(f"{output_dir}: cannot lock the run directory "
                                    f"({error.strerror}); put it on a file system with "
                                    "file locks") from None
        try:
            current = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(descriptor)  # the previous owner removed it as we opened it
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def _owner_pid(descriptor, wait_seconds: float = 2.0) -> str:
    # The owner writes its pid just after locking: allow it that moment.
    deadline = time.monotonic() + wait_seconds
    while True:
        text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        if text or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.05)


def _ours_to_ignore(name: str) -> bool:
    """The lock, and temporary files of killed writers: not content of a run."""
    return name == LOCK_FILE or atomic_files.is_partial(name)


def _is_own_input(output_dir, name: str, identity: dict) -> bool:
    """Whether `name` in `output_dir` is this run's --train_data or --cache_path, or the
    cache prepared beside --train_data (`<train_data>.seq<N>.h5`). A run writes these
    (--synthetic_rows, the cache) before its first run.json: they must not make its
    killed start look like someone else's directory."""
    train_data, cache_path = (identity.get(key) or "" for key in ("train_data", "cache_path"))
    path = os.path.realpath(os.path.join(output_dir, name))
    if path in {os.path.realpath(given) for given in (train_data, cache_path) if given}:
        return True
    default_cache = re.escape(os.path.basename(train_data)) + r"\.seq\d+\.h5"
    return (bool(train_data) and re.fullmatch(default_cache, name) is not None
            and os.path.realpath(os.path.dirname(os.path.abspath(train_data)))
            == os.path.realpath(output_dir))


def read_json_record(path) -> dict | None:
    """A record file this package wrote (run.json, ensemble.json); None if absent or
    unreadable as JSON."""
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        try:
            return json.load(handle)
        except ValueError:
            return None


def trained_run_records(model_path) -> list[dict]:
    """The run.json records behind a model file or run directory: its own run's, or an
    ensemble's members' (ensemble.json lists them); [] when none is found."""
    directory = os.path.dirname(os.path.abspath(model_path))
    record = read_run_record(directory)
    if isinstance(record, dict):
        return [record]
    ensemble = read_json_record(os.path.join(directory, ENSEMBLE_FILE))
    members = ensemble.get("members") if isinstance(ensemble, dict) else None
    records = [read_run_record(member["run"])
               for member in (members if isinstance(members, list) else ())
               if isinstance(member, dict) and isinstance(member.get("run"), str)
               and member["run"]]
    return [record if isinstance(record, dict) else {} for record in records]


def write_json_record(path, record: dict) -> None:
    """Write a record file atomically, so a kill never leaves it half-written."""
    atomic_files.write_text(path, json.dumps(record, indent=2, sort_keys=True,
                                             default=str) + "\n")


def read_run_record(output_dir) -> dict | None:
    return read_json_record(os.path.join(output_dir, RUN_FILE))


def write_run_record(output_dir, record: dict) -> None:
    write_json_record(os.path.join(output_dir, RUN_FILE), record)


def claim_output_dir(output_dir, identity: dict, overwrite: bool) -> bool:
    """Decide what a run with this identity does with `output_dir`; True when resuming.

    Raises RunDirectoryError for a non-empty directory that is not an unfinished run of
    the same configuration (unless overwrite), or for a run that already finished. Reads
    only: with `overwrite`, the previous run's outputs are removed by
    `remove_run_outputs`, which the run calls once its settings, data and teachers have
    passed every check, so a refused start leaves the previous run as it was.
    """
    os.makedirs(output_dir, exist_ok=True)
    if not [name for name in os.listdir(output_dir) if not _ours_to_ignore(name)
            and not _is_own_input(output_dir, name, identity)]:
        return False
    record = read_run_record(output_dir)
    same_run = record is not None and same_identity(record.get("identity"), identity)
    if same_run and record.get("status") == "running" and not overwrite:
        return True
    if not overwrite:
        if same_run:
            raise RunDirectoryError(
                f"{output_dir} already holds a finished run of this configuration "
                f"(status {record.get('status')!r}); pass --overwrite to train it again")
        raise RunDirectoryError(
            f"{output_dir} is not empty and is not a resumable run of this configuration"
            f"{_differences(record, identity)}; choose another --output_dir or pass "
            "--overwrite to replace its run outputs")
    check_removable(output_dir)  # refused now, before the data is read
    return False


# What this package writes inside its run directories, by directory: file names, and the
# subdirectories that hold only such files (Keras' TensorBoard callback writes train/ and
# validation/). Temporary names of killed writers (atomic_files) count as its own too.
_BACKUP_FILE = re.compile(r"epoch-\d{6}\.(json|weights\.h5)")
_OWN_TREES = {
    BACKUP_DIR: (lambda name: bool(_BACKUP_FILE.fullmatch(name))
                 or name in (*backups.LEGACY_FILES, RIDGE_TEACHER_FILE), ()),
    TENSORBOARD_DIR: (lambda name: name.startswith("events.out.tfevents."),
                      ("train", "validation")),
}


def check_removable(output_dir) -> None:
    """Refuse --overwrite (RunDirectoryError) when a run output holds anything this
    package did not write, or is a symlink: it would be deleted with the run's files."""
    found = _first_foreign(output_dir)
    if found:
        raise RunDirectoryError(
            f"{output_dir}: cannot --overwrite: {found} is in the way (--overwrite removes "
            "only files this package wrote); move it elsewhere or choose another "
            "--output_dir")


def _first_foreign(output_dir) -> str | None:
    """'PATH (what it is)' of the first thing among the run outputs that is not the
    package's own; None when they all are (or are absent)."""
    for name in RUN_OUTPUTS:
        path = os.path.join(output_dir, name)
        if name in _OWN_TREES:
            found = _foreign_in_tree(path, *_OWN_TREES[name])
        elif os.path.isdir(path) and not os.path.islink(path):
            found = f"{path} (a directory; the run writes a file there)"
        else:
            found = None  # a file (or a link, removed without touching its target)
        if found:
            return found
    return None


def _foreign_in_tree(path, is_own_file, subdirectories=()) -> str | None:
    """Like _first_foreign, for the directory `path`: a symlink is never the package's
    (rmtree would fail on it, after the run's files were gone)."""
    if os.path.islink(path):
        return f"{path} (a symbolic link to {os.readlink(path)})"
    if not os.path.isdir(path):
        return f"{path} (a file, where the run writes a directory)" \
            if os.path.lexists(path) else None
    for name in sorted(os.listdir(path)):
        entry = os.path.join(path, name)
        if name in subdirectories:
            found = _foreign_in_tree(entry, is_own_file)
        elif os.path.isdir(entry):
            found = f"{entry} (a directory the run does not write)"
        elif not (is_own_file(name) or atomic_files.is_partial(name)):
            found = f"{entry} (a file the run does not write)"
        else:
            found = None
        if found:
            return found
    return None


def remove_run_outputs(output_dir) -> None:
    """Remove a previous run's outputs (--overwrite), run.json first: a kill part-way
    leaves no record that would resume what remains. Nothing is removed unless all of it
    is the package's own (check_removable). (Killed writers' temporary files are
    clear_partials' job, which the run calls next.)"""
    check_removable(output_dir)
    for name in (RUN_FILE, *(name for name in RUN_OUTPUTS if name != RUN_FILE)):
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def check_same_data(output_dir, data: dict, scaler) -> None:
    """Refuse to resume on data other than the data the run started on.

    `data` is this start's run.json "data" record, `scaler` its TargetScaler; both are
    compared with what the run recorded (run.json, target_scaler.json) before anything in
    the directory changes. Raises RunDirectoryError saying what changed."""
    started = (read_run_record(output_dir) or {}).get("data") or {}
    change = _data_change(started, data) or _scaler_change(output_dir, scaler)
    if change:
        raise RunDirectoryError(f"{output_dir}: cannot resume: {change} since the run "
                                f"started; {START_AFRESH}")


def _data_change(started: dict, now: dict) -> str | None:
    def differs(key):
        return key in started and key in now and started[key] != now[key]

    if differs("source_sha256"):
        return (f"the training data {now.get('train_data')} changed (sha256 "
                f"{str(started['source_sha256'])[:12]}... then, "
                f"{str(now['source_sha256'])[:12]}... now)")
    for key, what in (("rows_in_cache", "rows in the training data"),
                      ("skipped_rows", "bad rows skipped"),
                      ("rows_after_singleton_filter", "rows after the singleton filter")):
        if differs(key):
            return f"the number of {what} changed ({started[key]} then, {now[key]} now)"
    if any(differs(key) for key in ("train_rows", "validation_rows", "split_sha256")):
        return (f"the training/validation split changed ({started.get('train_rows')}/"
                f"{started.get('validation_rows')} rows then, {now.get('train_rows')}/"
                f"{now.get('validation_rows')} now, or other rows)")
    if differs("target_mean") or differs("target_std"):
        return (f"the target scaler changed (mean {started.get('target_mean')}, std "
                f"{started.get('target_std')} then; mean {now.get('target_mean')}, std "
                f"{now.get('target_std')} now)")
    return None


def _scaler_change(output_dir, scaler) -> str | None:
    path = os.path.join(output_dir, SCALER_FILE)
    if not os.path.exists(path):
        return None  # killed before it was written: written once this check passes
    try:
        with open(path) as handle:
            saved = json.load(handle)
        same = saved.get("mean") == scaler.mean and saved.get("std") == scaler.std
    except (OSError, ValueError, AttributeError) as error:
        return f"{SCALER_FILE} became unreadable ({error})"
    if not same:
        return (f"{SCALER_FILE} changed (mean {saved.get('mean')}, std {saved.get('std')}; "
                f"the training rows give mean {scaler.mean}, std {scaler.std})")
    return None


def resume_point(output_dir) -> backups.Backup | None:
    """The verified backup a resumed run continues from; None: start at epoch 0."""
    backup_dir = os.path.join(output_dir, BACKUP_DIR)
    if backups.has_legacy_backup(backup_dir):
        raise RunDirectoryError(
            f"{output_dir} holds a backup written by an earlier dream_keras "
            f"({', '.join(backups.LEGACY_FILES)}), which this version does not resume; "
            f"{START_AFRESH}")
    return backups.latest(backup_dir)


_PENDING_MODEL = re.compile(r"model\.pending-epoch-(\d{6})\.keras")


def pending_model_path(model_path, epoch: int) -> str:
    """Where the best-epoch checkpoint writes epoch `epoch`'s model (1-based, as the
    backup counts) until that epoch's backup commits (callbacks.BestModelCheckpoint)."""
    return os.path.join(os.path.dirname(os.fspath(model_path)),
                        f"model.pending-epoch-{epoch:06d}.keras")


def settle_pending_model(output_dir, committed_epochs: int) -> None:
    """model.keras only ever holds an epoch the backup committed: a kill between an
    epoch's checkpoint and its commit would otherwise leave model.keras with weights the
    resumed run redoes (differently, on a GPU or another number of replicas) while
    run.json describes the redo. A pending model of the last committed epoch (a kill
    between the commit and the rename) is renamed into place; any other is a lost
    attempt, removed. Call while owning the directory, before training."""
    for name in os.listdir(output_dir):
        match = _PENDING_MODEL.fullmatch(name)
        if match is None:
            continue
        path = os.path.join(output_dir, name)
        if committed_epochs and int(match.group(1)) == committed_epochs:
            os.replace(path, os.path.join(output_dir, MODEL_FILE))
        else:
            os.remove(path)


def clear_partials(output_dir) -> None:
    """Remove the temporary files a killed owner left (call only while owning the
    directory, once it is known to be kept)."""
    for directory in (output_dir, os.path.join(output_dir, BACKUP_DIR)):
        atomic_files.remove_stale_partials(directory)


def remove_backups(output_dir) -> None:
    """Once run.json records the outcome, the backups are no longer needed."""
    shutil.rmtree(os.path.join(output_dir, BACKUP_DIR), ignore_errors=True)


# Identity entries that name files or directories: compared by where they lead, so
# `runs/x`, `runs/x/` and `/home/me/runs/x` (from the same working directory) resume one
# run. The recorded identity keeps the spelling the run started with.
_PATH_KEYS = ("train_data", "output_dir", "cache_path")


def _comparable(identity):
    """`identity` (a run's, or an ensemble's holding one under "training") with its paths
    resolved; anything that is not a dict is returned as it is."""
    if not isinstance(identity, dict):
        return identity
    resolved = {key: _comparable(value) if key == "training" else value
                for key, value in identity.items() if key not in NOT_PART_OF_A_RUN}
    for key in _PATH_KEYS:
        if isinstance(resolved.get(key), str) and resolved[key]:
            resolved[key] = os.path.realpath(resolved[key])
    teacher = resolved.get("teacher")
    if isinstance(teacher, str) and teacher:
        resolved["teacher"] = ",".join(
            part.strip() if part.strip() in ("", "ridge") else os.path.realpath(part.strip())
            for part in teacher.split(","))
    return resolved


def same_identity(recorded, identity) -> bool:
    """Whether a recorded run (or ensemble) identity is this one's, paths resolved."""
    return recorded is not None and _comparable(recorded) == _comparable(identity)


def _differences(record, identity) -> str:
    if record is None or "identity" not in record:
        return " (it has no run.json of this package)"
    started, now = record["identity"], identity
    old, identity = _comparable(started), _comparable(identity)
    changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    if "model" in changed:
        changed.remove("model")
        changed += sorted(f"model.{k}" for k in set(old["model"]) | set(identity["model"])
                          if old["model"].get(k) != identity["model"].get(k))

    def shown(settings, key):  # as the user spelled it; a long value keeps its end
        if key.startswith("model."):
            settings, key = (settings or {}).get("model"), key[len("model."):]
        text = (repr(settings[key]) if isinstance(settings, dict) and key in settings
                else "unset")
        return text if len(text) <= 60 else "..." + text[-57:]

    return " (differs in: " + "; ".join(
        f"{key}: {shown(started, key)} at the start, {shown(now, key)} now"
        for key in changed) + ")"
