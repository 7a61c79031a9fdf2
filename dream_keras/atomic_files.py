"""Files that are either wholly old or wholly new: write a temporary file beside the
destination, flush it to disk, then rename it into place.

The one place the package replaces files: run files (run.json, history.csv, model.keras,
backups, target_scaler.json) and every command output (predictions, evaluation files, the
SavedModel export, through safe_output's rules). A process killed at any moment leaves
the destination untouched (or complete) and, at worst, a temporary file or directory named
`.partial-<host>-<pid>.<name>`, which the next write of that destination removes (or
`remove_stale_partials`, in a run directory). The temporary name keeps the
destination's ending, so writers that insist on one (Keras: `.keras`, `.weights.h5`)
accept it. A destination that is a symlink is written through (the target is replaced,
the link kept), and a replaced file keeps its permissions. Standard library only, so
data/ may use it.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
import socket
import stat

PARTIAL_PREFIX = ".partial-"


# A pid means something only on its own host: writers on several hosts (the workers of a
# multi-worker run preparing one cache on a shared file system) never take each other's
# temporary files for a dead process's.
# (Letters, digits and dots only: the name splits unambiguously at the dash before the pid.)
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def partial_path(path) -> str:
    """The temporary name this process writes `path` under (same directory):
    `.partial-<host>-<pid>.<name>`."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f"{PARTIAL_PREFIX}{HOST}-{os.getpid()}.{name}")


def is_partial(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX)


_PARTIAL_NAME = re.compile(re.escape(PARTIAL_PREFIX) + r"(?:([^-]+)-)?(\d+)\.(.+)$")


def dead_writers_destination(name: str) -> str | None:
    """For a temporary `name` whose writer, a process of this host, is dead (killed): the
    name it was written for; otherwise (a live writer's, another host's, not a temporary)
    None. Names without a host, written by earlier releases, count as this host's."""
    match = _PARTIAL_NAME.match(name)
    if match and match.group(1) in (None, HOST) and not process_alive(int(match.group(2))):
        return match.group(3)
    return None


def destination(path) -> str:
    """Where the bytes go: through a symlink to its target, so the link survives."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path to write; on success it replaces `path` (fsynced first),
    on any error it is removed and `path` is left as it was. Missing parent directories
    are created."""
    destination_path = destination(path)
    os.makedirs(os.path.dirname(os.path.abspath(destination_path)), exist_ok=True)
    directory, name = os.path.split(os.path.abspath(destination_path))
    remove_stale_partials(directory, (name,))  # a killed earlier writer's
    temporary = partial_path(destination_path)
    try:
        yield temporary
        _fsync_file(temporary)
        _keep_mode(destination_path, temporary)
        os.replace(temporary, destination_path)
        _fsync_directory(os.path.dirname(os.path.abspath(destination_path)))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def replacing_open(path, mode: str = "w", *, compresslevel: int = 6, **open_options):
    """`replacing`, opened: yield the temporary file's handle (open() arguments).

    A name ending in `.gz` is written gzipped (at `compresslevel`), as every reader of the
    package reads it, and without the clock or a file name in the gzip header, so equal
    content gives equal bytes."""
    with replacing(path) as temporary:
        if not os.fspath(path).endswith(".gz"):
            with open(temporary, mode, **open_options) as handle:
                yield handle
            return
        with open(temporary, "wb") as raw, gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=compresslevel,
                mtime=0) as compressed:
            if "b" in mode:
                yield compressed
            else:
                with io.TextIOWrapper(compressed, **open_options) as handle:
                    yield handle


def write_text(path, text: str) -> None:
    with replacing_open(path, "w", newline="") as handle:
        handle.write(text)


@contextlib.contextmanager
def replacing_directory(path):
    """Yield a temporary directory beside `path`; on success it replaces `path`.

    An existing `path` is renamed aside first and deleted only after the new one is in
    place, so a failure leaves the previous directory as it was.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _clear_dead_directories_of(path)
    temporary = partial_path(path)
    shutil.rmtree(temporary, ignore_errors=True)  # a killed earlier attempt of this pid
    os.mkdir(temporary)
    try:
        yield temporary
        old = None
        if os.path.lexists(path):
            old = partial_path(path) + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(temporary, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_directory(os.path.dirname(path))
    finally:
        if os.path.exists(temporary):
            shutil.rmtree(temporary, ignore_errors=True)


def _clear_dead_directories_of(path) -> None:
    """`replacing_directory`'s leftovers of dead writers: a writer killed between its two
    renames left the previous directory aside as `<temporary>.old` and none at `path`, so
    that one is put back; the rest (half-written new directories) are removed."""
    directory, name = os.path.split(path)
    leftovers = sorted(os.path.join(directory, entry) for entry in os.listdir(directory)
                       if dead_writers_destination(entry) in (name, name + ".old"))
    for leftover in leftovers:
        if leftover.endswith(".old") and not os.path.lexists(path):
            os.replace(leftover, path)
    for leftover in leftovers:
        _remove_tree_or_file(leftover)


def _remove_tree_or_file(path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.remove(path)


def process_alive(pid: int) -> bool:
    """Whether a process of this pid runs on this host (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_partials(directory, destinations=None) -> list[str]:
    """Remove the temporary files and directories that dead writers left in `directory`
    (dead_writers_destination), of `destinations` (names) only when given; their names.
    A live process's, such as another worker's cache being prepared in a run directory on
    a shared file system, are left alone."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        destination_name = dead_writers_destination(name)
        if destination_name is not None and (destinations is None
                                             or destination_name in destinations):
            _remove_tree_or_file(os.path.join(directory, name))
            removed.append(name)
    return removed


def _keep_mode(destination, temporary) -> None:
    """Give the new file the old one's permissions (a new file keeps the umask's)."""
    try:
        os.chmod(temporary, stat.S_IMODE(os.stat(destination).st_mode))
    except FileNotFoundError:
        pass


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
