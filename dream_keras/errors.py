"""The package's own error types: one base class, so the command lines catch exactly these.

Each is raised for a problem the user can fix (bad input, a setting, a missing file, a
run directory in the way) and is printed by the CLIs as one line without a traceback.
Anything else is a bug and keeps its traceback. Imports nothing but the standard library.
"""
from __future__ import annotations


class DreamKerasError(Exception):
    """Base class of every error this package raises for a user-fixable problem."""


class DataFormatError(DreamKerasError, ValueError):
    """Bad input, located: `path`, 1-based `line` (None when the file as a whole is bad)."""

    def __init__(self, path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ConfigurationError(DreamKerasError, ValueError):
    """A setting (or the environment it needs) makes the run impossible; says which."""


class MissingDataError(DreamKerasError, FileNotFoundError):
    """An input file is absent; the message says where to get it."""


class OutputExistsError(DreamKerasError, FileExistsError):
    """An output would overwrite a file the user did not ask to replace."""


class RunDirectoryError(DreamKerasError, RuntimeError):
    """The output directory holds something this run must not touch or cannot resume."""
