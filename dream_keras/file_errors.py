"""OS, gzip and HDF5 failures on a user's file, turned into the package's one-line errors.

`reading(path)` and `writing(path)` wrap the code that touches one file; a permission
problem, a directory or FIFO where a file belongs, a full disk, a truncated or garbage gzip
stream or an HDF5 file h5py cannot open then ends the command with one line naming the
file (and the line reached, when the reader knows it) instead of a traceback. Errors of any
other kind pass through untouched, so a bug keeps its traceback. Standard library only.
"""
from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import zlib

from dream_keras.errors import DataFormatError, DreamKerasError

_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error",
}
if hasattr(errno, "EDQUOT"):
    _REASONS[errno.EDQUOT] = "disk quota exceeded"


class FileAccessError(DataFormatError):
    """A file could not be read or written (permission, kind of file, disk, corruption)."""


def os_error_reason(error: BaseException) -> str:
    """Short words for an OS, gzip or HDF5 failure."""
    if isinstance(error, EOFError):
        return "truncated gzip file (the compressed data ends early)"
    if isinstance(error, gzip.BadGzipFile):
        return f"not valid gzip data ({error})"
    if isinstance(error, zlib.error):
        return f"corrupt gzip data ({error})"
    if isinstance(error, OSError) and error.errno in _REASONS:
        return _REASONS[error.errno]
    text = (getattr(error, "strerror", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def input_kind_problem(path) -> str | None:
    """Why `path` cannot be read as a data file (None when it is a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return os_error_reason(error)
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if not stat.S_ISREG(mode):
        return "is a device or socket, not a regular file"
    return None


def check_input_file(path, what: str = "") -> None:
    """Refuse a missing, non-regular or unreadable input with one line."""
    problem = input_kind_problem(path)
    if problem is None and not os.access(path, os.R_OK):
        problem = "permission denied"
    if problem is not None:
        raise FileAccessError(path, None, f"{what + ': ' if what else ''}{problem}")


_FILE_ERRORS = (OSError, EOFError, zlib.error)


@contextlib.contextmanager
def reading(path, line_reached=None):
    """Map a failure reading `path` to one line; `line_reached()` gives the line, if known."""
    try:
        yield
    except DreamKerasError:
        raise
    except _FILE_ERRORS as error:
        line = line_reached() if line_reached is not None else None
        where = f" after line {line}" if line else ""
        raise FileAccessError(path, None, f"cannot read{where}: "
                                          f"{os_error_reason(error)}") from error


@contextlib.contextmanager
def writing(path):
    """Map a failure writing `path` (permission, disk full, ...) to one line."""
    try:
        yield
    except DreamKerasError:
        raise
    except OSError as error:
        raise FileAccessError(path, None, f"cannot write: {os_error_reason(error)}") from error
