"""Outputs never destroy inputs: the rules an output path must pass, and strict JSON.

Every command checks its outputs with `check_output_path` before it reads or computes
anything, and writes them through dream_keras.atomic_files (`replacing_open` for files,
`replacing_directory` for the SavedModel export): the bytes go to a temporary name in the
destination's own directory and are renamed into place only after the write succeeded,
so a failure or a kill leaves the old file (or nothing) behind, never half of one.
Refused even with `overwrite=True`:

* an output that is one of the command's inputs (after resolving symlinks), because the
  rename would replace the data being read with its own predictions;
* an existing path that is not a regular file (a directory, a device such as /dev/full, a
  FIFO or socket), because renaming a file over it would replace the node itself.

An output that is a symlink to a regular file is written through the link (the target is
replaced, the link kept). Messages name the parameter in backticks (`output_path`), which
cli/runner.py shows as its flag (--output). Standard library and the package's own
atomic_files and errors only.
"""
from __future__ import annotations

import json
import math
import os
import stat

from dream_keras.atomic_files import replacing_open
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


def check_output_path(path, *, inputs=(), overwrite: bool = False,
                      parameter: str = "output_path", directory: bool = False,
                      in_directory: bool = False) -> None:
    """Refuse (one-line package error) an output that would destroy something.

    `inputs`: the paths this command reads (None entries ignored). `parameter`: the name
    the caller's user gave `path` under (named in the message); `in_directory`: `path` is
    a file inside that directory. `directory`: the output is a directory (the export), so
    an existing directory is acceptable with `overwrite`.
    """
    path = os.fspath(path)
    subject = f"`{parameter}`" + (" file" if in_directory else "")
    for source in inputs:
        if source is None:
            continue
        if _same_file(path, source) or (directory and _inside(source, path)):
            raise ConfigurationError(f"{path}: {subject} is or holds the input {source}; "
                                     "writing it would replace the input (choose another "
                                     f"`{parameter}`; `overwrite=True` does not allow this)")
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError:  # a dangling symlink: nothing to destroy (writing creates the target)
            mode = stat.S_IFREG
        wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
        if not wanted:
            raise OutputExistsError(
                f"{path}: {subject} exists and is {_kind(mode)}, not a "
                f"{'directory' if directory else 'regular file'}; refusing to replace it "
                "(even with `overwrite=True`)")
        if not overwrite:
            raise OutputExistsError(f"{path}: output exists; pass `overwrite=True` to "
                                    "replace it")
    check_parent_writable(path, parameter)


def check_outside(path, directory, *, parameter: str = "output_path",
                  directory_parameter: str = "export_dir") -> None:
    """Refuse an output file that is, or lies inside, an output directory the same command
    writes whole (the directory's replacement would delete the file just written)."""
    if path is None or directory is None:
        return
    if _same_file(path, directory) or _inside(path, directory):
        raise ConfigurationError(f"{path}: `{parameter}` is inside `{directory_parameter}` "
                                 f"{directory}, which is replaced whole after it is written; "
                                 f"choose an `{parameter}` outside it")


def check_parent_writable(path, parameter: str = "output_path") -> None:
    """Refuse early when the output's directory cannot be created or written."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):  # the nearest existing ancestor gets the new dirs
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigurationError(f"{path}: cannot write `{parameter}`: {parent} is not a "
                                 "directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{path}: cannot write `{parameter}`: permission denied in "
                                 f"{parent}")


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
    with replacing_open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, allow_nan=False)
        handle.write("\n")
