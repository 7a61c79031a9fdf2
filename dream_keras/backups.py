"""The epoch backups of a run (RUN/backup/): the state a killed run resumes from.

After each epoch the chief commits one backup: `epoch-NNNNNN.weights.h5` (the model's and
the optimizer's variables, via Keras' public save_weights) and then `epoch-NNNNNN.json`,
which records the epoch count, the weights file's sha256, the history rows so far,
whether training stopped and the model's random seed states (the dropout layers' seed
generators, which save_weights leaves out: without them a resumed run would draw other
dropout masks than the uninterrupted one). The JSON is the commit record: both files are
renamed into place complete (atomic_files), the JSON last, so a kill leaves either the
new backup or only the old ones. On load each backup is verified (JSON readable, weights
present with the recorded sha256) and a bad one is skipped for the one before it: the
last two are kept. A commit also removes every backup above its epoch: those are what a
run resumed below (or started afresh without) because they were unusable; kept, they
would outrank the new commits, and pruning would delete each new commit at once.
Standard library only; the Keras side is in callbacks.EpochBackup.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from absl import logging

from dream_keras import atomic_files

FORMAT_VERSION = 1
KEEP = 2
_RECORD = re.compile(r"^epoch-(\d{6})\.json$")
_WEIGHTS = re.compile(r"^epoch-(\d{6})\.weights\.h5$")
# What Keras' BackupAndRestore wrote (before this module): a run backed up that way is
# not resumed by this one.
LEGACY_FILES = ("training_metadata.json", "latest.weights.h5")


@dataclasses.dataclass(frozen=True)
class Backup:
    """One verified backup: the state after `epoch` completed epochs."""

    epoch: int
    weights_path: str
    history: list  # history.csv rows of epochs 0 .. epoch-1, as dicts
    stopped: bool  # training had stopped (early stopping, NaN) after this epoch
    # [variable path, state values] of each seed generator, in model.variables order;
    # None for a backup written before they were recorded.
    seed_states: list | None = None


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def weights_path(backup_dir, epoch: int) -> str:
    return os.path.join(backup_dir, f"epoch-{epoch:06d}.weights.h5")


def _record_path(backup_dir, epoch: int) -> str:
    return os.path.join(backup_dir, f"epoch-{epoch:06d}.json")


def _epochs(backup_dir, pattern=_RECORD) -> list[int]:
    """Epoch counts with a commit record (or with a `pattern` file), newest first."""
    if not os.path.isdir(backup_dir):
        return []
    found = (pattern.match(name) for name in os.listdir(backup_dir))
    return sorted((int(match.group(1)) for match in found if match), reverse=True)


def has_legacy_backup(backup_dir) -> bool:
    return not _epochs(backup_dir) and any(
        os.path.exists(os.path.join(backup_dir, name)) for name in LEGACY_FILES)


def latest(backup_dir) -> Backup | None:
    """The newest backup that verifies, or None (a fresh start). Bad ones are logged."""
    for epoch in _epochs(backup_dir):
        problem, backup = _verify(backup_dir, epoch)
        if backup is not None:
            return backup
        logging.warning("backup of epoch %d in %s is unusable (%s); trying the one before",
                        epoch, backup_dir, problem)
    return None


def _verify(backup_dir, epoch: int) -> tuple[str | None, Backup | None]:
    try:
        with open(_record_path(backup_dir, epoch)) as handle:
            record = json.load(handle)
        weights = weights_path(backup_dir, epoch)
        if record.get("format_version") != FORMAT_VERSION or record["epoch"] != epoch:
            return "unknown format", None
        if not os.path.isfile(weights):
            return f"{os.path.basename(weights)} is missing", None
        if file_sha256(weights) != record["weights_sha256"]:
            return f"{os.path.basename(weights)} does not match its sha256", None
        history = [dict(row) for row in record["history"]]
        if [row["epoch"] for row in history] != list(range(epoch)):
            return "its history does not list every epoch", None
        seed_states = record.get("seed_states")
        if seed_states is not None and not _are_seed_states(seed_states):
            return "its seed states are malformed", None
        return None, Backup(epoch, weights, history, bool(record["stopped"]), seed_states)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{type(error).__name__}: {error}", None


def _are_seed_states(seed_states) -> bool:
    return isinstance(seed_states, list) and all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
        and isinstance(item[1], list) and all(type(value) is int for value in item[1])
        for item in seed_states)


def commit(backup_dir, epoch: int, save_weights, history: list, stopped: bool,
           seed_states: list | None = None) -> None:
    """Write the backup of `epoch` completed epochs and keep only the last KEEP, after
    removing the backups above `epoch` (superseded: the run went on from an earlier one).

    `save_weights(path)` writes the weights file (Keras: model.save_weights);
    `seed_states` ([path, list of ints] pairs) go into the commit record with the rest."""
    os.makedirs(backup_dir, exist_ok=True)
    weights = weights_path(backup_dir, epoch)
    with atomic_files.replacing(weights) as temporary:
        save_weights(temporary)
    record = {"format_version": FORMAT_VERSION, "epoch": epoch,
              "weights_sha256": file_sha256(weights), "stopped": bool(stopped),
              "history": history}
    if seed_states is not None:
        record["seed_states"] = [[path, [int(v) for v in values]]
                                 for path, values in seed_states]
    atomic_files.write_text(_record_path(backup_dir, epoch),
                            json.dumps(record, indent=1) + "\n")
    # Only once the new commit is in place: a kill before leaves the run's resume point
    # as it was. A weights file above `epoch` without its record (a commit cut short
    # before the run fell back further) goes too.
    superseded = {old for old in _epochs(backup_dir) + _epochs(backup_dir, _WEIGHTS)
                  if old > epoch}
    if superseded:
        logging.info("backups of epochs %s in %s (unusable when the run resumed) are "
                     "superseded by the commit of epoch %d: removed", sorted(superseded),
                     backup_dir, epoch)
    older = [old for old in _epochs(backup_dir) if old <= epoch][KEEP:]
    for old in sorted(superseded, reverse=True) + older:
        _remove(_record_path(backup_dir, old))  # the record first: never a half backup
        _remove(weights_path(backup_dir, old))


def _remove(path) -> None:
    if os.path.exists(path):
        os.remove(path)
