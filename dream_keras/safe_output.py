"""Outputs never destroy inputs: the rules an output path must pass, and atomic writing.

Every command checks its outputs with `check_output_path` before it reads or computes
anything, and writes them with `atomic_write` (files) or `atomic_directory` (the SavedModel
export): the bytes go to a temporary name in the destination's own directory and are
renamed into place only after the write succeeded, so a failure or a kill leaves the old
file (or nothing) behind, never half of one. Refused even with --overwrite:

* an output that is one of the command's inputs (after resolving symlinks), because the
  rename would replace the data being read with its own predictions;
* an existing path that is not a regular file (a directory, a device such as /dev/full, a
  FIFO or socket), because renaming a file over it would replace the node itself.

An output that is a symlink to a regular file is written through the link (the target is
replaced, the link kept). Imports nothing but the standard library and the package's errors.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import tempfile

from dream_keras.errors import ConfigurationError, OutputExistsError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _same_file(a, b) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _inside(path, directory) -> bool:
    inner, outer = os.path.realpath(path), os.path.realpath(directory)
    return inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_output_path(path, *, inputs=(), overwrite: bool = False, flag: str = "--output",
                      directory: bool = False) -> None:
    """Refuse (one-line package error) an output that would destroy something.

    `inputs`: the paths this command reads (None entries ignored). `directory`: the output
    is a directory (the export), so an existing directory is acceptable with `overwrite`.
    """
    path = os.fspath(path)
    for source in inputs:
        if source is None:
            continue
        if _same_file(path, source) or (directory and _inside(source, path)):
            raise ConfigurationError(f"{path}: {flag} is or holds the input {source}; "
                                     "writing it would replace the input (choose another "
                                     f"{flag}; --overwrite does not allow this)")
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError:  # a dangling symlink: nothing to destroy, the link is replaced
            mode = stat.S_IFREG
        wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
        if not wanted:
            raise OutputExistsError(
                f"{path}: {flag} exists and is {_kind(mode)}, not a "
                f"{'directory' if directory else 'regular file'}; refusing to replace it "
                "(even with --overwrite)")
        if not overwrite:
            raise OutputExistsError(f"{path}: output exists; pass --overwrite to replace it")
    check_parent_writable(path, flag)


def check_parent_writable(path, flag: str = "--output") -> None:
    """Refuse early when the output's directory cannot be created or written."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):  # the nearest existing ancestor gets the new dirs
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigurationError(f"{path}: cannot write {flag}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{path}: cannot write {flag}: permission denied in "
                                 f"{parent}")


def _destination(path) -> str:
    """Where the bytes go: through a symlink to its target, so the link survives."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", **open_options):
    """Open a temporary file beside `path`; on success fsync and rename it to `path`.

    On any exception (or a kill) the temporary file is removed and `path` is untouched.
    """
    destination = _destination(path)
    directory = os.path.dirname(os.path.abspath(destination))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(destination)}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(descriptor, mode, **open_options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _keep_mode(destination, temporary)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _keep_mode(destination, temporary) -> None:
    """Give the new file the old one's permissions (mkstemp makes it 0600)."""
    try:
        os.chmod(temporary, stat.S_IMODE(os.stat(destination).st_mode))
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary directory beside `path`; on success it replaces `path`.

    An existing `path` is moved aside first and deleted only after the new one is in
    place, so a failure leaves the previous directory as it was.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial",
                                 dir=parent)
    try:
        yield temporary
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old",
                                   dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(temporary, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)



def json_ready(payload, reasons: dict | None = None, where: str = ""):
    """`payload` with every non-finite float replaced by None (strict JSON has no NaN);
    each replaced entry's dotted key goes into `reasons`."""
    if isinstance(payload, float) and not math.isfinite(payload):
        if reasons is not None:
            reasons[where] = ("undefined for these rows (needs at least 2 rows and "
                              "values that vary)" if math.isnan(payload)
                              else f"{payload} (not representable in JSON)")
        return None
    if isinstance(payload, dict):
        return {key: json_ready(value, reasons, f"{where}.{key}" if where else str(key))
                for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [json_ready(value, reasons, f"{where}[{i}]") for i, value in enumerate(payload)]
    return payload


def write_json(path, payload) -> None:
    """Strict JSON, atomically. NaN or infinity become null, and a top-level dict gains
    `null_reasons` {key: why} for them."""
    reasons = {}
    payload = json_ready(payload, reasons)
    if reasons and isinstance(payload, dict):
        payload["null_reasons"] = reasons
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, allow_nan=False)
        handle.write("\n")
