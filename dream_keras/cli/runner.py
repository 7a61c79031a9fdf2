"""How every command line runs: absl parses flags, the package's own errors become one line.

Only `DreamKerasError` (bad input, a setting, a file in the way) is caught and printed as
`error: ...` with exit status 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

from absl import app

from dream_keras.errors import DreamKerasError


def run(command: Callable[[], object]) -> None:
    """Parse the flags already defined, then call `command()`; print what it returns."""
    app.run(lambda argv: _guarded(command, argv))


def _guarded(command, argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = command()
    except DreamKerasError as error:
        sys.exit(f"error: {error}")
    if result is not None:
        print(result)
