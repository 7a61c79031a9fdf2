"""How every command line runs: absl parses flags, the package's own errors become one line.

`DreamKerasError` (bad input, a setting, a file in the way) is printed as `error: ...` with
exit status 1, and so is an OS error that names its file (permission denied, not a
directory, disk full: the user can fix those); anything else is a bug and keeps its
traceback. Library errors name the parameter to change in backticks (`overwrite=True`);
here each becomes the flag that sets it (--overwrite), so API users read parameters and
CLI users read flags. `--help` (also -h, -?, --helpshort) prints the command's own flags
with their defaults and exits 0; `--helpfull` keeps absl's listing of every flag,
TensorFlow's too. Ctrl-C and SIGTERM end a command with one line, after every `finally`
has run (no temporary file is left behind), and then by that signal (a shell reports
130 / 143).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from typing import Callable

from absl import app, flags

from dream_keras.errors import DreamKerasError
from dream_keras.file_errors import os_error_reason

HELP_ARGUMENTS = ("--help", "-h", "-?", "--helpshort")


# library parameter -> the flag that sets it (the same name unless listed here or below)
PARAMETER_FLAGS = {
    "input_path": "input", "pairs_path": "pairs", "output_path": "output",
    "export_dir": "export", "output_format": "format", "data_path": "data",
    "labels_path": "dream_labels", "dream_dir": "dream_dir", "output_dir": "output_dir",
    "overwrite": "overwrite", "batch_size": "batch_size", "chunk_rows": "chunk_rows",
    "partial": "dream_partial", "min_subset_rows": "dream_min_subset_rows",
    "reverse_complement_average": "reverse_complement_average",
    "allow_implausible": "allow_implausible", "logo_rows": "logos",
    "baseline": "ig_baseline",
}
_PARAMETER = re.compile(r"`(\w+)(=[^`]*)?`")


def flag_spelling(message: str) -> str:
    """`message` with each backticked parameter it names (`name` or `name=value`) written
    as its flag (--name, --name=value, --noname for False); other backticks are kept."""
    def as_flag(match):
        name, value = match.group(1), match.group(2) or ""
        if name not in PARAMETER_FLAGS:
            return match.group(0)
        flag = PARAMETER_FLAGS[name]
        if value in ("=True", "=False"):
            return f"--{'' if value == '=True' else 'no'}{flag}"
        return f"--{flag}{value.replace(chr(39), '')}"
    return _PARAMETER.sub(as_flag, message)


def mark_required(names) -> None:
    """absl's required flags, which also refuse an empty value (`--output_dir=` reached the
    command as '' and failed as ': cannot create the run directory') and say 'Required.'
    in --help. Every required flag of the package is a path."""
    for name in names:
        flags.FLAGS[name].help = f"{flags.FLAGS[name].help} Required."
        flags.register_validator(name, lambda value: value is None or value.strip() != "",
                                 message=f"--{name} is empty: give a path")
    flags.mark_flags_as_required(list(names))


def no_problem(problem: str | None) -> bool:
    """For absl multi-flag validators: True, or a ValidationError carrying `problem`."""
    if problem:
        raise flags.ValidationError(problem)
    return True


def run(command: Callable[[], object]) -> None:
    """Parse the flags already defined, then call `command()`; print what it returns."""
    if any(argument in HELP_ARGUMENTS for argument in sys.argv[1:]):
        _print_help(command_help(command))
    if "--helpfull" in sys.argv[1:]:  # absl's listing, which absl ends with status 1
        _print_help(flags.FLAGS.get_help())
    try:
        with _sigterm_as_interrupt():
            app.run(lambda argv: _guarded(command, argv), flags_parser=_parse_flags)
    except KeyboardInterrupt as interruption:
        signal_number = signal.SIGTERM if isinstance(interruption, Terminated) \
            else signal.SIGINT
        # On a new line: a progress line (\r) may be open.
        print(f"\ninterrupted ({'SIGTERM' if signal_number == signal.SIGTERM else 'Ctrl-C'})"
              f": outputs are whole or absent; {_how_to_continue()}", file=sys.stderr)
        _die_of(signal_number)


def _die_of(signal_number) -> None:
    """End by the signal itself, now that cleanup has run: a shell loop or a scheduler
    then sees a command killed by it (status 128 + the signal) and stops too, as it
    would not for an ordinary exit."""
    sys.stderr.flush()
    sys.stdout.flush()
    signal.signal(signal_number, signal.SIG_DFL)
    os.kill(os.getpid(), signal_number)
    sys.exit(128 + signal_number)  # only if the signal is blocked


def _training_command() -> bool:
    return flags.FLAGS.is_parsed() and "epochs" in flags.FLAGS and "train_data" in flags.FLAGS


def _how_to_continue() -> str:
    """What rerunning does: a training run resumes, unless the command line starts it
    afresh; other commands write their outputs again."""
    overwrite = flags.FLAGS.is_parsed() and "overwrite" in flags.FLAGS and \
        flags.FLAGS["overwrite"].value
    if not _training_command():
        return "rerun the command to write them"
    if overwrite:
        return ("rerun the command WITHOUT --overwrite to resume the run (with it, the "
                "run starts afresh)")
    return "rerun the same command to resume the run where it stopped"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`), raised like Ctrl-C so that every `finally`
    runs: temporary files are removed and the run directory's lock released."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises Terminated while the command runs (the main thread only can set a
    handler; elsewhere SIGTERM keeps its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def interrupt(signal_number, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse_flags(argv):
    """absl's parser; a flagfile that is not UTF-8 text is one line naming it, not a
    traceback."""
    try:
        return app.parse_flags_with_usage(argv)
    except UnicodeDecodeError as error:
        sys.exit(f"error: {_undecodable_flagfile(argv)}: a --flagfile must be UTF-8 "
                 f"text ({error.reason} at byte {error.start})")


def _undecodable_flagfile(argv) -> str:
    """The first --flagfile given on the command line that is not UTF-8 (one named inside
    another flagfile is reported as the flagfile that names it)."""
    paths = [argument.split("=", 1)[1] for argument in argv
             if argument.startswith(("--flagfile=", "-flagfile="))]
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                handle.read()
        except UnicodeDecodeError:
            return path
        except OSError:
            continue
    return "a flagfile" if not paths else paths[0]


def _print_help(text: str) -> None:
    """Print help and exit 0."""
    _print_result(text)
    sys.exit(0)


def command_help(command) -> str:
    """The command's docstring and the package's flags (grouped by defining module)."""
    module = sys.modules.get(command.__module__)
    lines = [(module.__doc__ or "").strip(), ""] if module is not None else []
    lines.append("Flags (--helpfull lists absl's and TensorFlow's flags too):")
    by_module = flags.FLAGS.flags_by_module_dict()
    for name in sorted(by_module):
        # absl files a script's own flags under its path (sys.argv[0]), not "__main__".
        if name.startswith("dream_keras") or name in ("__main__", sys.argv[0]):
            text = flags.FLAGS.module_help(name)
            lines.append(text.split("\n", 1)[1] if "\n" in text else text)
    return "\n".join(lines)


def _guarded(command, argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = command()
    except DreamKerasError as error:
        sys.exit(f"error: {flag_spelling(str(error))}")
    except OSError as error:
        if not getattr(error, "filename", None):
            raise
        sys.exit(f"error: {error.filename}: {os_error_reason(error)}")
    if result is not None:
        _print_result(str(result))


def _print_result(text: str) -> None:
    """Print a command's summary; a reader that stopped early (`| head`) is no error."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
