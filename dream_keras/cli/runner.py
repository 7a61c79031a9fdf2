"""How every command line runs: absl parses flags, the package's own errors become one line.

Only `DreamKerasError` (bad input, a setting, a file in the way) is caught and printed as
`error: ...` with exit status 1; anything else is a bug and keeps its traceback. Library
errors name the parameter to change in backticks (`overwrite=True`); here each becomes the
flag that sets it (--overwrite), so API users read parameters and CLI users read flags.
"""
from __future__ import annotations

import re
import sys
from typing import Callable

from absl import app, flags

from dream_keras.errors import DreamKerasError


# library parameter -> the flag that sets it (the same name unless listed here or below)
PARAMETER_FLAGS = {
    "input_path": "input", "pairs_path": "pairs", "output_path": "output",
    "export_dir": "export", "output_format": "format", "data_path": "data",
    "labels_path": "dream_labels", "dream_dir": "dream_dir", "output_dir": "output_dir",
    "overwrite": "overwrite", "batch_size": "batch_size", "chunk_rows": "chunk_rows",
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


def no_problem(problem: str | None) -> bool:
    """For absl multi-flag validators: True, or a ValidationError carrying `problem`."""
    if problem:
        raise flags.ValidationError(problem)
    return True


def run(command: Callable[[], object]) -> None:
    """Parse the flags already defined, then call `command()`; print what it returns."""
    app.run(lambda argv: _guarded(command, argv))


def _guarded(command, argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = command()
    except DreamKerasError as error:
        sys.exit(f"error: {flag_spelling(str(error))}")
    if result is not None:
        print(result)
