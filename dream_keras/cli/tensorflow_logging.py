"""Quiet TensorFlow's C++ start-up logging, unless the user asks for it.

Importing TensorFlow 2.21 prints oneDNN, "Could not find cuda drivers" and CPU-feature
lines, twice: the core library and the profiler plugin library
(tensorflow/python/profiler/internal/_pywrap_profiler_plugin.so), loaded during the same
import, each carry their own copy of absl's logging, and both log before absl's logging is
initialised, which is also why TF_CPP_MIN_LOG_LEVEL does not silence them. It is one
import of TensorFlow, not two initialisations.

`import_tensorflow_quietly()` therefore imports TensorFlow with file descriptor 2 sent to
a pipe, and what was written is replayed, less the C++ log lines below the threshold:
TF_CPP_MIN_LOG_LEVEL when the user set it (0 shows everything), else 2 (errors only; it is
also exported, so TensorFlow's later C++ logging follows it). `--verbosity=1`
(absl's own flag, `-v 1`) shows everything too. Python warnings and errors raised by the
import are always replayed. The first device query runs inside too: it probes CUDA and,
without a driver, logs "failed call to cuInit" at ERROR level, the same news as "Could not
find cuda drivers", so it is dropped with them unless the threshold is 0 (and kept when
no such notice came: a driver was found, and failed). Logical devices
(--cpu_devices) can still be configured afterwards.
"""
from __future__ import annotations

import os
import re
import select
import sys

_LEVEL_LETTERS = {"I": 0, "W": 1, "E": 2, "F": 3}
_CPP_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_PRE_INIT_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
_CONTINUATION = "To enable the following instructions:"
# Logged at ERROR level by the first device query on a machine without a GPU driver: the
# same news as "Could not find cuda drivers", so it is start-up noise, not an error; but
# only then: with a driver found (no such notice), a failed cuInit is a broken or
# mismatched driver, and the run would fall back to the CPU without a word.
_NO_CUDA = re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit")
_NO_DRIVER = "Could not find cuda drivers"


def _verbosity_from_argv(argv) -> int:
    for index, argument in enumerate(argv):
        for name in ("--verbosity", "-v"):
            if argument.startswith(name + "="):
                value = argument.split("=", 1)[1]
            elif argument == name and index + 1 < len(argv):
                value = argv[index + 1]
            else:
                continue
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def start_up_log_threshold(argv=None, environ=None) -> int:
    """The lowest C++ log level shown (0 = all); sets TF_CPP_MIN_LOG_LEVEL=2 if unset."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    if _verbosity_from_argv(argv) >= 1:
        environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return 0
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        return 2


def filter_start_up_lines(text: str, threshold: int) -> str:
    """`text` without the C++ log lines (and their notices) below `threshold`."""
    kept, dropping = [], False
    no_driver = _NO_DRIVER in text
    for line in text.splitlines(keepends=True):
        match = _CPP_LOG_LINE.match(line)
        if match:
            dropping = (_LEVEL_LETTERS[match.group(1)] < threshold
                        or (threshold > 0 and no_driver and bool(_NO_CUDA.search(line))))
        elif line.startswith(_PRE_INIT_NOTICE):
            dropping = threshold > 1
        elif not line.startswith(_CONTINUATION):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (once) with its start-up logging filtered as described above.

    The import's file descriptor 2 is a pipe read by a forked process of this one, which
    writes the filtered text to the real stderr once the import is over: this process
    closes a second pipe to say so, or dies. An import that dies inside C++ (a LOG(FATAL)
    abort: a CPU without the instructions TensorFlow was built for, a broken CUDA
    library) so still shows its fatal line; a temporary file read back by this process
    would be lost with it. A process started during the import that keeps running (and
    holds fd 2) does not hold the import up."""
    if "tensorflow" in sys.modules:
        return
    threshold = start_up_log_threshold()
    if threshold <= 0 or not _stderr_is_open():
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    # fd 2 is open, so none of these can take its number.
    read_end, write_end = os.pipe()
    done_read, done_write = os.pipe()  # closed by this process when the import is over
    try:
        drainer = os.fork()
    except OSError:  # no process to spare: import unfiltered rather than not at all
        for descriptor in (read_end, write_end, done_read, done_write):
            os.close(descriptor)
        import tensorflow  # noqa: F401
        return
    if drainer == 0:  # the drain process: nothing here returns into the caller's code
        try:
            os.close(write_end)
            os.close(done_write)
            _drain(read_end, done_read, threshold)
        finally:
            os._exit(0)
    os.close(read_end)
    os.close(done_read)
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # its CUDA probe logs too
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # this process's last write end of the pipe
        os.close(saved)
        os.close(done_write)  # the drain process takes what the pipe holds and finishes
        try:
            os.waitpid(drainer, 0)  # its lines come before anything this process writes
        except ChildProcessError:
            pass  # SIGCHLD ignored: the kernel reaped it, after it had finished


def _stderr_is_open() -> bool:
    """Whether there is a stderr to filter into (`python 2>&-` has none)."""
    if sys.stderr is None:
        return False
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def _drain(read_end: int, done_read: int, threshold: int) -> None:
    """Read the pipe until the import is over (EOF on `done_read`; not the pipe's own
    EOF, which a process started during the import and still running, holding fd 2,
    would put off), then write the filtered text to stderr (fd 2)."""
    chunks = []
    while True:
        ready, _, _ = select.select([read_end, done_read], [], [])
        if read_end in ready:
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            continue  # what the pipe holds comes first
        os.set_blocking(read_end, False)  # the import is over: take what the pipe holds
        while True:
            try:
                chunk = os.read(read_end, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        break
    text = filter_start_up_lines(b"".join(chunks).decode("utf-8", "replace"), threshold)
    data = text.encode("utf-8")
    while data:
        data = data[os.write(2, data):]
