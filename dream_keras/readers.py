"""Read the challenge's text files: `sequence<TAB>expression` rows, or sequences alone.

Files may be gzipped (detected by content, not name), end with or without a newline, and
use LF or CRLF. Every problem is reported as a DataFormatError naming file, line and reason;
with `skip_bad_rows=True` bad rows are dropped and counted instead. Reading goes through
pandas' C parser in chunks so that memory stays bounded and speed stays at C level.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import re
from typing import Iterator

import numpy as np
import pandas as pd

from dream_keras.sequences import encode_and_find_invalid, find_invalid_rows

DEFAULT_CHUNK_ROWS = 200_000
_GZIP_MAGIC = b"\x1f\x8b"


class DataFormatError(ValueError):
    """Bad input, located: `path`, 1-based `line` (None when the file as a whole is bad)."""

    def __init__(self, path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclasses.dataclass
class Chunk:
    """Valid rows of one chunk: sequences, expression (float64, None for sequence-only
    files), their 1-based line numbers in the file, and their codes [n, seq_len] when the
    reader was asked to encode (None otherwise)."""

    sequences: list
    expression: np.ndarray | None
    line_numbers: np.ndarray
    codes: np.ndarray | None = None


class _ProgressFile:
    """Binary reader that remembers how many compressed bytes have been consumed."""

    def __init__(self, path):
        self.raw = open(path, "rb")
        is_gzip = self.raw.read(2) == _GZIP_MAGIC
        self.raw.seek(0)
        self.stream = gzip.GzipFile(fileobj=self.raw) if is_gzip else self.raw

    def bytes_read(self) -> int:
        return self.raw.tell()

    def close(self):
        self.stream.close()
        self.raw.close()


def iter_chunks(path, *, with_expression: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                skip_bad_rows: bool = False, skipped: list | None = None,
                on_progress=None, encode_to: int | None = None) -> Iterator[Chunk]:
    """Yield validated chunks of a text file.

    with_expression: True for `sequence<TAB>expression` files, False for one sequence per
    line (a second column, e.g. labels, is then ignored). `skipped`, if given, receives one
    DataFormatError per dropped row. `on_progress(bytes_read, total_bytes)` is called per
    chunk. `encode_to=seq_len` also encodes each chunk (Chunk.codes), reusing the pass over
    the letters that validation makes anyway.
    """
    if not os.path.isfile(path):
        raise DataFormatError(path, None, "no such file")
    total_bytes = os.path.getsize(path)
    source = _ProgressFile(path)
    try:
        try:
            reader = pd.read_csv(
                source.stream, sep="\t", header=None,
                names=["sequence", "expression", "extra"], dtype=str, na_filter=False,
                quoting=csv.QUOTE_NONE, skip_blank_lines=False, index_col=False,
                chunksize=chunk_rows, engine="c")
        except pd.errors.EmptyDataError:
            raise DataFormatError(path, None, "the file is empty") from None
        first_line = 1
        any_rows = False
        for frame in _frames(reader, path, skip_bad_rows, skipped):
            any_rows = any_rows or len(frame) > 0
            line_numbers = np.arange(first_line, first_line + len(frame))
            first_line += len(frame)
            chunk = _validated(frame, line_numbers, path, with_expression, skip_bad_rows,
                               skipped, encode_to)
            if on_progress is not None:
                on_progress(source.bytes_read(), total_bytes)
            yield chunk
        if not any_rows:
            raise DataFormatError(path, None, "the file is empty")
    finally:
        source.close()


def _frames(reader, path, skip_bad_rows, skipped):
    try:
        yield from reader
    except pd.errors.EmptyDataError:
        return
    except pd.errors.ParserError as error:
        # Raised for a line with more than three tab-separated fields.
        match = re.search(r"line (\d+), saw (\d+)", str(error))
        line = int(match.group(1)) if match else None
        fields = match.group(2) if match else "too many"
        raise DataFormatError(path, line, f"expected at most 2 tab-separated columns, "
                                          f"found {fields}") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(path, None, f"not a text file ({error.reason})") from None


def _validated(frame: pd.DataFrame, line_numbers, path, with_expression, skip_bad_rows,
               skipped, encode_to) -> Chunk:
    sequences = frame["sequence"].to_numpy()
    codes = None
    if encode_to is None:
        invalid_rows = find_invalid_rows(sequences)
    else:
        codes, invalid_rows = encode_and_find_invalid(sequences, encode_to)
    problems = {}  # row index in chunk -> reason; the first reason found wins
    rest_of_line = frame["expression"].to_numpy()
    for row in invalid_rows:
        problems[row] = _sequence_problem(sequences[row], rest_of_line[row])
    expression = None
    if with_expression:
        text = frame["expression"].to_numpy()
        expression = pd.to_numeric(frame["expression"], errors="coerce").to_numpy(np.float64)
        for row in np.flatnonzero(~np.isfinite(expression)):
            problems.setdefault(row, _expression_problem(text[row]))
        for row in np.flatnonzero(frame["extra"].to_numpy() != ""):
            problems.setdefault(row, "expected 2 tab-separated columns, found 3")
    if problems:
        bad_rows = np.array(sorted(problems))
        errors = [DataFormatError(path, int(line_numbers[r]), problems[r]) for r in bad_rows]
        if not skip_bad_rows:
            raise errors[0]
        if skipped is not None:
            skipped.extend(errors)
        keep = np.ones(len(frame), dtype=bool)
        keep[bad_rows] = False
        sequences, line_numbers = sequences[keep], line_numbers[keep]
        expression = expression[keep] if expression is not None else None
        codes = codes[keep] if codes is not None else None
    return Chunk(list(sequences), expression, line_numbers, codes)


def _sequence_problem(sequence: str, rest_of_line: str) -> str:
    if sequence == "":
        return "empty sequence" if rest_of_line else "empty line"
    bad = next(letter for letter in sequence if letter.upper() not in "ACGTN")
    shown = sequence if len(sequence) <= 40 else sequence[:37] + "..."
    return f"letter {bad!r} outside ACGTN in sequence {shown!r}"


def _expression_problem(text: str) -> str:
    if text == "":
        return "missing expression column (expected sequence<TAB>expression)"
    return f"expression {text!r} is not a finite number"


def read_expression_file(path, *, skip_bad_rows: bool = False, skipped: list | None = None):
    """All rows of a `sequence<TAB>expression` file: (list of str, float64 array)."""
    sequences, expression = [], []
    for chunk in iter_chunks(path, skip_bad_rows=skip_bad_rows, skipped=skipped):
        sequences.extend(chunk.sequences)
        expression.append(chunk.expression)
    return sequences, np.concatenate(expression)


def read_sequence_file(path, *, skip_bad_rows: bool = False, skipped: list | None = None):
    """All sequences of a one-sequence-per-line file (a second column is ignored)."""
    sequences = []
    for chunk in iter_chunks(path, with_expression=False, skip_bad_rows=skip_bad_rows,
                             skipped=skipped):
        sequences.extend(chunk.sequences)
    return sequences
