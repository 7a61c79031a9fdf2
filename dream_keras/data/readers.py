"""Every input file format, one reader: training rows, sequences to score, variant pairs.

Files may be gzipped (detected by content, not name: `_open_binary`), end with or without a
newline, and use LF or CRLF. Every problem is a DataFormatError naming file, 1-based line
and reason (one wording per problem, `_sequence_problem` / `_expression_problem`).

Training files (`sequence<TAB>expression`, no header) go through pandas' C parser in
chunks (`iter_chunks`), so memory stays bounded and speed stays at C level; with
`skip_bad_rows=True` bad rows are dropped and counted instead of stopping the read.

Sequences to score (`iter_sequence_chunks`) are recognised by their first non-empty line:
  1. it starts with '>'                        -> FASTA (multi-line records allowed);
  2. split on tab if it holds a tab, else on comma: a field named `sequence` (any case)
                                               -> a CSV/TSV table with a header row;
  3. anything else                             -> the challenge format: one sequence per
     line, an optional second tab-separated column (a label) is ignored.
A FASTA record's id and a table's other columns come with each chunk (`carried`), for
outputs that write them beside the predictions.
Pair files (variant effects, `iter_pair_chunks`) must be CSV/TSV with header columns
`ref_sequence` and `alt_sequence` (table line numbers assume no quoted newlines).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import os
import re
import threading
import warnings
from typing import Iterator

import numpy as np
import pandas as pd

from dream_keras.data.sequences import (MISSING_MARKER_PROBLEM, MISSING_MARKERS,
                                        encode_and_find_invalid, find_invalid_rows)
from dream_keras.errors import DataFormatError
from dream_keras.file_errors import check_input_file, reading

DEFAULT_CHUNK_ROWS = 200_000
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\udc([89a-f][0-9a-f])")
_NOT_A_BASE = re.compile(r"[^ACGTNacgtn]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]*")
TEXT, FASTA, TABLE = "challenge text", "FASTA", "CSV/TSV table"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class Chunk:
    """Valid rows of one chunk: sequences, expression (float64, None for sequence-only
    files), their 1-based line numbers in the file, and their codes [n, seq_len] when the
    reader was asked to encode (None otherwise)."""

    sequences: list
    expression: np.ndarray | None
    line_numbers: np.ndarray
    codes: np.ndarray | None = None


def _open_binary(path):
    """(raw file, decompressed stream): gzip is recognised by its magic bytes."""
    check_input_file(path)
    with reading(path):
        raw = open(path, "rb")
        head = raw.read(3)
    is_gzip = head[:2] == _GZIP_MAGIC
    raw.seek(len(_BOM) if head == _BOM else 0)  # a UTF-8 byte-order mark is not data
    if not is_gzip:
        return raw, raw
    try:
        stream = _BomSkipping(gzip.GzipFile(fileobj=raw))
    except BaseException:
        raw.close()
        raise
    return raw, stream


class _BomSkipping(io.BufferedReader):
    """A decompressed gzip stream without a leading UTF-8 byte-order mark; closing it
    closes the compressed file too."""

    def __init__(self, gzip_stream):
        super().__init__(gzip_stream)
        with reading(gzip_stream.fileobj.name):
            if self.peek(3)[:3] == _BOM:
                self.read(3)

    def close(self):
        raw = self.raw.fileobj
        super().close()
        raw.close()


class _ProgressFile:
    """Binary reader that remembers how many compressed bytes have been consumed."""

    def __init__(self, path):
        self.raw, self.stream = _open_binary(path)

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
    source = _ProgressFile(path)
    total_bytes = os.path.getsize(path)
    try:
        try:
            with reading(path):
                # With skip_bad_rows, bytes that are not UTF-8 decode to surrogates, which
                # row validation refuses: the row is skipped, with its line.
                reader = pd.read_csv(
                    source.stream, sep="\t", header=None, names=list(_COLUMNS), dtype=str,
                    na_filter=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                    index_col=False, chunksize=chunk_rows, engine="c",
                    encoding_errors="surrogateescape" if skip_bad_rows else "strict")
        except pd.errors.EmptyDataError:
            raise DataFormatError(path, None, "the file is empty") from None
        first_line = 1
        any_rows = False
        for frame in _frames(reader, path, skip_bad_rows, chunk_rows):
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


# The C parser's columns: a row with more fields than these is a parser error, except on
# line 1, whose surplus fields it drops silently (so line 1 is counted here first).
_COLUMNS = ("sequence", "expression", "extra")


def _frames(reader, path, skip_bad_rows, chunk_rows):
    """The C parser's frames; with `skip_bad_rows`, a row of too many fields (which the C
    parser cannot skip) hands the rest of the file to the line-by-line splitter."""
    lines_read = 0
    fields = _fields_on_line_1(path)
    if fields > len(_COLUMNS):
        if not skip_bad_rows:
            raise DataFormatError(path, 1, f"expected at most 2 tab-separated columns, "
                                           f"found {fields}")
        yield from _split_lines(path, 0, chunk_rows)
        return
    try:
        with reading(path, lambda: lines_read):
            for frame in reader:
                yield frame
                lines_read += len(frame)
        return
    except pd.errors.EmptyDataError:
        return
    except pd.errors.ParserError as error:
        if not skip_bad_rows:
            # Raised for a line with more than three tab-separated fields.
            match = re.search(r"line (\d+), saw (\d+)", str(error))
            line = int(match.group(1)) if match else None
            found = match.group(2) if match else "too many"
            raise DataFormatError(path, line, f"expected at most 2 tab-separated columns, "
                                              f"found {found}") from None
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    yield from _split_lines(path, lines_read, chunk_rows)


def _fields_on_line_1(path) -> int:
    # Only tabs are counted here: a bad byte is reported, at its line, by the parser.
    with reading(path), _open_text(path, errors="surrogateescape") as handle:
        return handle.readline().rstrip("\r\n").count("\t") + 1


def _split_lines(path, lines_done: int, chunk_rows: int):
    """Frames of the C parser's three columns from line `lines_done + 1` on, split in
    Python (the slow path, only for files with rows of too many fields, so that
    `skip_bad_rows` can drop them): `extra` keeps every surplus field."""
    rows, number = [], 0
    # Only with skip_bad_rows: a byte that is not UTF-8 decodes to a surrogate, and row
    # validation skips its row.
    with reading(path, lambda: number), _open_text(path, errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= lines_done:
                continue
            fields = line.rstrip("\r\n").split("\t", 2)
            rows.append(fields + [""] * (len(_COLUMNS) - len(fields)))
            if len(rows) == chunk_rows:
                yield pd.DataFrame(rows, columns=_COLUMNS)
                rows = []
    if rows:
        yield pd.DataFrame(rows, columns=_COLUMNS)


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
        problems[row] = _sequence_problem(sequences[row], rest_of_line=rest_of_line[row])
        header = int(line_numbers[row]) == 1 and _looks_like_a_column_name(sequences[row])
        if not with_expression and "," in sequences[row]:
            # Sequences to predict may also come as a table, named by its header.
            problems[row] += ("; a comma-separated table? its header line must name the "
                              "column of sequences 'sequence'" if header else
                              "; comma-separated? give one sequence per line, or a table "
                              "whose header line names a 'sequence' column")
            continue
        if "," in sequences[row]:
            problems[row] += ("; comma-separated? this format is tab-separated "
                              "(sequence<TAB>expression)")
        if header:
            problems[row] += ("; a header line? this format has none: every line is a "
                              "sequence (or sequence<TAB>expression)")
    expression = None
    if with_expression:
        text = frame["expression"].to_numpy()
        expression = pd.to_numeric(frame["expression"], errors="coerce").to_numpy(np.float64)
        # The cache stores float32: a value beyond its range would become inf there.
        storable = np.isfinite(expression) & (np.abs(expression) <= _FLOAT32_MAX)
        for row in np.flatnonzero(~storable):
            problems.setdefault(row, _expression_problem(text[row], expression[row]))
        extra = frame["extra"].to_numpy()
        for row in np.flatnonzero(extra != ""):
            problems.setdefault(row, f"expected at most 2 tab-separated columns, found "
                                     f"{3 + extra[row].count(chr(9))}")
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


def _looks_like_a_column_name(text: str) -> bool:
    """A first field that reads as a column name (`sequence`, `seq_id`): a table's header
    in a format without one. Mostly not bases, so a mistyped sequence (ACGX) is not one."""
    text = text.split(",")[0]  # a comma-separated header: its first name
    return bool(_WORD.fullmatch(text)) and len(_NOT_A_BASE.findall(text)) * 2 > len(text)


def _sequence_problem(sequence: str, column: str = "sequence",
                      rest_of_line: str | None = "", unit: str = "base") -> str:
    """The one wording of a bad sequence, for every format (`rest_of_line` None: a table's
    field, where an empty one is not an empty line)."""
    if sequence == "":
        return "empty line" if rest_of_line == "" and column == "sequence" else f"empty {column}"
    if sequence.upper() in MISSING_MARKERS:
        return f"{column} {sequence!r} is {MISSING_MARKER_PROBLEM}"
    found = _NOT_A_BASE.search(sequence)
    bad, at = found.group(0), found.start()
    if len(sequence) <= 40:
        shown = _shown(sequence)
    else:  # a window around the bad letter, so that it is in what is shown
        first, last = max(0, at - 18), min(len(sequence), at + 19)
        shown = (("..." if first else "") + _shown(sequence[first:last])
                 + ("..." if last < len(sequence) else "") + f" at {unit} {at + 1}")
    if _undecoded(bad):
        return f"byte {_undecoded(bad)} (not UTF-8 text) in {column} {shown}"
    return f"letter {bad!r} outside ACGTN in {column} {shown}"


def _expression_problem(text: str, value: float = float("nan")) -> str:
    if text == "":
        return "missing expression column (expected sequence<TAB>expression)"
    if np.isfinite(value):
        return f"expression {_shown(text)} is beyond float32's range (+-{_FLOAT32_MAX:.2e})"
    return f"expression {_shown(text)} is not a finite number"


def _undecoded(char: str) -> str | None:
    """'0xe9' for a byte that was not UTF-8 (read with errors='surrogateescape', as
    skip_bad_rows reads), else None."""
    return f"0x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff" else None


def _shown(text: str) -> str:
    """repr(text), with bytes that were not UTF-8 shown as \\xNN rather than as the
    surrogates they were read as (repr's \\udcNN)."""
    return _SURROGATE_ESCAPE.sub(r"\\x\1", repr(text))


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


# ------------------------------------------------------- sequences to score, variant pairs
@dataclasses.dataclass
class SequenceChunk:
    """Consecutive input rows: sequences, their 1-based line numbers (for errors) and the
    row's other fields (`carried`: a FASTA record's `id`, a table's other columns, by
    their header names in file order), which outputs carry beside the predictions."""

    sequences: list
    line_numbers: np.ndarray
    carried: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PairChunk:
    """Consecutive rows of a pair file: ref and alt sequences, 1-based line numbers."""

    ref_sequences: list
    alt_sequences: list
    line_numbers: np.ndarray
    carried: dict = dataclasses.field(default_factory=dict)


def _not_text(path, error: UnicodeDecodeError) -> DataFormatError:
    """The error for bytes that are not UTF-8, at the line that holds them: the decoder
    does not count lines, so a second pass finds it: Latin-1 maps every byte to one
    character, so the lines (universal newlines, as the readers count them) come back as
    their bytes, and a line break never falls inside a UTF-8 character."""
    try:
        raw, stream = _open_binary(path)
        try:
            lines = io.TextIOWrapper(stream, encoding="latin-1", newline=None)
            for number, text in enumerate(lines, start=1):
                line = text.encode("latin-1")
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return DataFormatError(path, number, f"not a text file: byte "
                                           f"0x{line[bad.start]:02x} (byte {bad.start + 1} of "
                                           "the line) is not UTF-8")
        finally:
            stream.close()
            raw.close()
    except (OSError, EOFError, DataFormatError):
        pass
    return DataFormatError(path, None, f"not a text file ({error.reason})")


def _open_text(path, errors: str = "strict") -> io.TextIOBase:
    _, stream = _open_binary(path)  # without a byte-order mark
    return io.TextIOWrapper(stream, encoding="utf-8", errors=errors, newline=None)


def _first_line(path) -> tuple[int, str]:
    """(1-based number, text) of the first non-blank line."""
    try:
        with reading(path), _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    return number, line.rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    raise DataFormatError(path, None, "the file is empty")


_CSV_LIMIT_LOCK = threading.Lock()
_csv_limit_users = [0, None]  # blocks inside _long_csv_fields, the limit they replaced


@contextlib.contextmanager
def _long_csv_fields():
    """The csv module refuses fields over 131,072 characters by default, but a sequence
    may be longer (valid input: the model keeps its last bases): lifted for the block,
    and restored when the last of overlapping blocks (threads) ends."""
    with _CSV_LIMIT_LOCK:
        if _csv_limit_users[0] == 0:
            _csv_limit_users[1] = csv.field_size_limit(2 ** 31 - 1)
        _csv_limit_users[0] += 1
    try:
        yield
    finally:
        with _CSV_LIMIT_LOCK:
            _csv_limit_users[0] -= 1
            if _csv_limit_users[0] == 0:
                csv.field_size_limit(_csv_limit_users[1])


def _header_fields(line: str) -> tuple[str, list]:
    """(delimiter, lower-cased field names) of a header, split as the rows are parsed:
    with CSV quoting, so a quoted name holding the delimiter stays one field."""
    delimiter = "\t" if "\t" in line else ","
    with _long_csv_fields():
        fields = next(csv.reader([line], delimiter=delimiter), [])
    return delimiter, [field.strip().lower() for field in fields]


def detect_input_format(path) -> str:
    """TEXT, FASTA or TABLE, by the rule in this module's docstring."""
    _, line = _first_line(path)
    if line.startswith(">"):
        return FASTA
    return TABLE if "sequence" in _header_fields(line)[1] else TEXT


def iter_sequence_chunks(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[SequenceChunk]:
    """Validated chunks of sequences from any supported format, in file order."""
    input_format = detect_input_format(path)
    if input_format == FASTA:
        yield from _fasta_chunks(path, chunk_rows)
    elif input_format == TABLE:
        for lines, frame, carried in _table_frames(path, ["sequence"], chunk_rows):
            yield SequenceChunk(frame["sequence"], lines, carried)
    else:
        for chunk in iter_chunks(path, with_expression=False, chunk_rows=chunk_rows):
            yield SequenceChunk(chunk.sequences, chunk.line_numbers)


def iter_pair_chunks(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[PairChunk]:
    """Validated chunks of (ref, alt) sequence pairs from a CSV/TSV with a header."""
    for lines, frame, carried in _table_frames(path, ["ref_sequence", "alt_sequence"],
                                               chunk_rows):
        yield PairChunk(frame["ref_sequence"], frame["alt_sequence"], lines, carried)


def _table_frames(path, wanted: list, chunk_rows: int):
    """(line numbers, {column: list of validated sequences}, {other column: its texts})
    per chunk of a table; the other columns keep their header names and file order."""
    header_line, header = _first_line(path)
    delimiter, fields = _header_fields(header)
    missing = [name for name in wanted if name not in fields]
    if missing:
        raise DataFormatError(path, header_line, f"expected a header with column(s) "
                                                 f"{', '.join(wanted)}; missing "
                                                 f"{', '.join(missing)}")
    positions = [fields.index(name) for name in wanted]
    first_line = header_line + 1
    try:
        with reading(path, lambda: first_line - 1), _open_text(path) as handle:
            # The blank lines before the header are skipped here, as _first_line did.
            # Every column is parsed (not `usecols`), without index inference, so that a
            # row with more fields than the header (broken quoting?) is an error, not
            # ignored or taken for an index; pandas only warns about it on the first row.
            reader = _strict(lambda: pd.read_csv(
                handle, sep=delimiter, dtype=str, keep_default_na=False, index_col=False,
                skip_blank_lines=False, skiprows=header_line - 1, chunksize=chunk_rows))
            while (frame := _strict(lambda: next(reader, None))) is not None:
                lines = np.arange(first_line, first_line + len(frame))
                first_line += len(frame)
                columns = {name: [text.strip() for text in frame.iloc[:, pos].tolist()]
                           for name, pos in zip(wanted, positions)}
                for name in wanted:
                    _validate(path, columns[name], lines, name)
                carried = {}
                for pos in range(frame.shape[1]):
                    if pos not in positions:
                        # pandas' names are unique ("a", "a.1"); stripped, two may meet.
                        name = str(frame.columns[pos])
                        carried[name.strip() if name.strip() not in carried else name] = \
                            frame.iloc[:, pos].tolist()
                yield lines, columns, carried
    except DataFormatError:
        raise
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as error:
        line, found = _overlong_row(path, header_line, delimiter, len(fields))
        if line is not None:
            raise DataFormatError(path, line, f"{found} fields, but the header has "
                                              f"{len(fields)}") from None
        line = _unclosed_quote(path, header_line, delimiter)
        if line is not None:
            raise DataFormatError(path, line, "a quote (\") opened on this line is never "
                                              "closed") from None
        raise DataFormatError(path, None, f"not a valid table ({error})") from None


def _strict(call):
    """call(), with pandas' ParserWarning (data it would drop) raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return call()


def _overlong_row(path, header_line: int, delimiter: str, header_fields: int):
    """(line, fields) of the first row with more fields than the header, or (None, None):
    pandas reports such a row without its line (or, with `usecols`, as an internal error)."""
    with reading(path), _open_text(path) as handle, _long_csv_fields():
        for number, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if number > header_line and len(row) > header_fields:
                return number, len(row)
    return None, None


def _unclosed_quote(path, header_line: int, delimiter: str) -> int | None:
    """The line whose quote is never closed, or None: pandas reports it by a row count
    ("EOF inside string starting at row 2"), not by the file's line."""
    with reading(path), _open_text(path) as handle, _long_csv_fields():
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        last = 0
        try:
            for row in reader:
                if last >= header_line and any("\n" in field or "\r" in field
                                               for field in row):
                    return last + 1  # the field ran on past its line's end
                last = reader.line_num
        except csv.Error:
            return last + 1
    return None


def _validate(path, sequences: list, lines: np.ndarray, column: str) -> None:
    bad_rows = find_invalid_rows(sequences)
    if bad_rows.size:
        row = int(bad_rows[0])
        raise DataFormatError(path, int(lines[row]),
                              _sequence_problem(sequences[row], column, rest_of_line=None))




def _fasta_chunks(path, chunk_rows: int) -> Iterator[SequenceChunk]:
    """Records in chunks; `carried` holds each record's `id`: the header's first word
    (the text after '>' up to the first space or tab, as Biopython's record.id)."""
    sequences, lines, ids = [], [], []
    for header_line, name, sequence in _fasta_records(path):
        sequences.append(sequence)
        lines.append(header_line)
        ids.append(name)
        if len(sequences) == chunk_rows:
            yield SequenceChunk(sequences, np.array(lines), {"id": ids})
            sequences, lines, ids = [], [], []
    if sequences:
        yield SequenceChunk(sequences, np.array(lines), {"id": ids})


def _fasta_records(path) -> Iterator[tuple[int, str, str]]:
    """(line of the '>' header, record id, sequence) per record; letters checked line by
    line."""
    header_line, name, parts, number = None, "", [], 0
    try:
        with reading(path, lambda: number), _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if line.startswith(">"):
                    if header_line is not None:
                        yield header_line, name, _joined(path, header_line, parts)
                    header_line, parts = number, []
                    name = (line[1:].split(None, 1) or [""])[0]
                elif line:
                    if header_line is None:
                        raise DataFormatError(path, number, "sequence before the first "
                                                            "'>' header")
                    if _NOT_A_BASE.search(line):  # a record spans lines: count in the line
                        raise DataFormatError(path, number, _sequence_problem(
                            line, unit="character of the line"))
                    parts.append(line)
    except UnicodeDecodeError as error:
        raise _not_text(path, error) from None
    if header_line is not None:
        yield header_line, name, _joined(path, header_line, parts)


def _joined(path, header_line: int, parts: list) -> str:
    if not parts:
        raise DataFormatError(path, header_line, "FASTA record without a sequence")
    return "".join(parts)
