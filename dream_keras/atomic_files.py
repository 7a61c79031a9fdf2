"""Files that are either wholly old or wholly new: write a temporary file beside the
destination, flush it to disk, then rename it into place.

A process killed at any moment leaves the destination untouched (or complete) and, at
worst, a temporary file named `.partial-<pid>.<name>` that `remove_stale_partials` clears.
The temporary name keeps the destination's ending, so writers that insist on one (Keras:
`.keras`, `.weights.h5`) accept it. Standard library only, so data/ may use it.
"""
from __future__ import annotations

import contextlib
import os

PARTIAL_PREFIX = ".partial-"


def partial_path(path) -> str:
    """The temporary name this process writes `path` under (same directory)."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{PARTIAL_PREFIX}{os.getpid()}.{name}")


def is_partial(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX)


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path to write; on success it replaces `path` (fsynced first),
    on any error it is removed and `path` is left as it was."""
    temporary = partial_path(path)
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, path)
        _fsync_directory(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text: str) -> None:
    with replacing(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            handle.write(text)


def remove_stale_partials(directory) -> list[str]:
    """Remove the temporary files killed writers left in `directory`; their names.

    Call it only while owning the directory (run-directory lock): any partial file then
    belongs to a process that died."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        if is_partial(name) and os.path.isfile(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
            removed.append(name)
    return removed


def _fsync_file(path) -> None:
    # A kill alone never loses written data (the kernel keeps it); the fsync makes the
    # rename safe against a power cut as well.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
