"""The run directory: what a training run writes, and when a directory may be reused.

A directory is resumed only by the same configuration (run.json's identity), refused when
it holds anything else unless --overwrite, and --overwrite removes only files this package
writes, never anything else a user put there.
"""
from __future__ import annotations

import json
import os
import shutil

from dream_keras.errors import RunDirectoryError  # noqa: F401  (raised here)

MODEL_FILE = "model.keras"
SCALER_FILE = "target_scaler.json"
HISTORY_FILE = "history.csv"
RUN_FILE = "run.json"
TENSORBOARD_DIR = "tensorboard"
BACKUP_DIR = "backup"
RUN_OUTPUTS = (MODEL_FILE, SCALER_FILE, HISTORY_FILE, RUN_FILE, TENSORBOARD_DIR, BACKUP_DIR)


def read_run_record(output_dir) -> dict | None:
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        try:
            return json.load(handle)
        except ValueError:
            return None


def write_run_record(output_dir, record: dict) -> None:
    """Write run.json atomically, so a kill never leaves it half-written."""
    path = os.path.join(output_dir, RUN_FILE)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(f"{path}.tmp", path)


def claim_output_dir(output_dir, identity: dict, overwrite: bool) -> bool:
    """Make `output_dir` ready for a run with this identity; True when resuming one.

    Raises RunDirectoryError for a non-empty directory that is not an unfinished run of
    the same configuration (unless overwrite), or for a run that already finished.
    """
    os.makedirs(output_dir, exist_ok=True)
    if not os.listdir(output_dir):
        return False
    record = read_run_record(output_dir)
    same_run = record is not None and record.get("identity") == identity
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
    for name in RUN_OUTPUTS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    return False


def _differences(record, identity) -> str:
    if record is None or "identity" not in record:
        return " (it has no run.json of this package)"
    old = record["identity"]
    changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
    if "model" in changed:
        changed.remove("model")
        changed += sorted(f"model.{k}" for k in set(old["model"]) | set(identity["model"])
                          if old["model"].get(k) != identity["model"].get(k))
    return f" (differs in: {', '.join(changed)})"
