"""Read sequences to predict from the file formats users have, in bounded-memory chunks.

Format rule (first non-empty line, after gunzip when the file starts with the gzip magic):
  1. it starts with '>'                        -> FASTA (multi-line records allowed);
  2. split on tab if it holds a tab, else on comma: a field named `sequence` (any case)
                                               -> a CSV/TSV table with a header row;
  3. anything else                             -> the challenge format: one sequence per
     line, an optional second tab-separated column (a label) is ignored.
Pair files (variant effects) must be CSV/TSV with header columns `ref_sequence` and
`alt_sequence`. Every problem is a DataFormatError naming the file and the 1-based line
(for tables, line numbers assume one row per line: no quoted newlines).
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
from typing import Iterator

import numpy as np
import pandas as pd

from dream_keras.readers import DEFAULT_CHUNK_ROWS, DataFormatError, iter_chunks
from dream_keras.sequences import find_invalid_rows

TEXT, FASTA, TABLE = "challenge text", "FASTA", "CSV/TSV table"
_NOT_A_BASE = re.compile(r"[^ACGTNacgtn]")


@dataclasses.dataclass
class SequenceChunk:
    """Consecutive input rows: sequences and their 1-based line numbers (for errors)."""

    sequences: list
    line_numbers: np.ndarray


@dataclasses.dataclass
class PairChunk:
    """Consecutive rows of a pair file: ref and alt sequences, 1-based line numbers."""

    ref_sequences: list
    alt_sequences: list
    line_numbers: np.ndarray


def _open_text(path) -> io.TextIOBase:
    if not os.path.isfile(path):
        raise DataFormatError(path, None, "no such file")
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
    if is_gzip:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)


def _first_line(path) -> str:
    try:
        with _open_text(path) as handle:
            for line in handle:
                if line.strip():
                    return line.rstrip("\r\n")
    except (UnicodeDecodeError, OSError, EOFError) as error:
        raise DataFormatError(path, None, f"cannot read the file ({error})") from None
    raise DataFormatError(path, None, "the file is empty")


def _header_fields(line: str) -> tuple[str, list]:
    delimiter = "\t" if "\t" in line else ","
    return delimiter, [field.strip().strip('"').lower() for field in line.split(delimiter)]


def detect_input_format(path) -> str:
    """TEXT, FASTA or TABLE, by the rule in this module's docstring."""
    line = _first_line(path)
    if line.startswith(">"):
        return FASTA
    return TABLE if "sequence" in _header_fields(line)[1] else TEXT


def iter_sequence_chunks(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[SequenceChunk]:
    """Validated chunks of sequences from any supported format, in file order."""
    input_format = detect_input_format(path)
    if input_format == FASTA:
        yield from _fasta_chunks(path, chunk_rows)
    elif input_format == TABLE:
        for lines, frame in _table_frames(path, ["sequence"], chunk_rows):
            yield SequenceChunk(frame["sequence"], lines)
    else:
        for chunk in iter_chunks(path, with_expression=False, chunk_rows=chunk_rows):
            yield SequenceChunk(chunk.sequences, chunk.line_numbers)


def iter_pair_chunks(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[PairChunk]:
    """Validated chunks of (ref, alt) sequence pairs from a CSV/TSV with a header."""
    for lines, frame in _table_frames(path, ["ref_sequence", "alt_sequence"], chunk_rows):
        yield PairChunk(frame["ref_sequence"], frame["alt_sequence"], lines)


def _table_frames(path, wanted: list, chunk_rows: int):
    """(line numbers, {column: list of validated sequences}) per chunk of a table."""
    delimiter, fields = _header_fields(_first_line(path))
    missing = [name for name in wanted if name not in fields]
    if missing:
        raise DataFormatError(path, 1, f"expected a header with column(s) {', '.join(wanted)}; "
                                       f"missing {', '.join(missing)}")
    positions = [fields.index(name) for name in wanted]
    first_line = 2
    try:
        with _open_text(path) as handle:
            reader = pd.read_csv(handle, sep=delimiter, usecols=positions, dtype=str,
                                 keep_default_na=False, skip_blank_lines=False,
                                 chunksize=chunk_rows)
            for frame in reader:
                lines = np.arange(first_line, first_line + len(frame))
                first_line += len(frame)
                columns = {name: [text.strip() for text in
                                  frame.iloc[:, sorted(positions).index(pos)].tolist()]
                           for name, pos in zip(wanted, positions)}
                for name in wanted:
                    _validate(path, columns[name], lines, name)
                yield lines, columns
    except pd.errors.ParserError as error:
        raise DataFormatError(path, None, f"not a valid table ({error})") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(path, None, f"not a text file ({error.reason})") from None


def _validate(path, sequences: list, lines: np.ndarray, column: str) -> None:
    bad_rows = find_invalid_rows(sequences)
    if bad_rows.size:
        row = int(bad_rows[0])
        raise DataFormatError(path, int(lines[row]), _problem(sequences[row], column))


def _problem(sequence: str, column: str = "sequence") -> str:
    if not sequence:
        return f"empty {column}"
    letter = _NOT_A_BASE.search(sequence).group(0)
    shown = sequence if len(sequence) <= 40 else sequence[:37] + "..."
    return f"letter {letter!r} outside ACGTN in {column} {shown!r}"


def _fasta_chunks(path, chunk_rows: int) -> Iterator[SequenceChunk]:
    sequences, lines = [], []
    for header_line, sequence in _fasta_records(path):
        sequences.append(sequence)
        lines.append(header_line)
        if len(sequences) == chunk_rows:
            yield SequenceChunk(sequences, np.array(lines))
            sequences, lines = [], []
    if sequences:
        yield SequenceChunk(sequences, np.array(lines))


def _fasta_records(path) -> Iterator[tuple[int, str]]:
    """(line of the '>' header, sequence) per record; letters checked line by line."""
    header_line, parts = None, []
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if line.startswith(">"):
                    if header_line is not None:
                        yield header_line, _joined(path, header_line, parts)
                    header_line, parts = number, []
                elif line:
                    if header_line is None:
                        raise DataFormatError(path, number, "sequence before the first "
                                                            "'>' header")
                    if _NOT_A_BASE.search(line):
                        raise DataFormatError(path, number, _problem(line))
                    parts.append(line)
    except UnicodeDecodeError as error:
        raise DataFormatError(path, None, f"not a text file ({error.reason})") from None
    if header_line is not None:
        yield header_line, _joined(path, header_line, parts)


def _joined(path, header_line: int, parts: list) -> str:
    if not parts:
        raise DataFormatError(path, header_line, "FASTA record without a sequence")
    return "".join(parts)
