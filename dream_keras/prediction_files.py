"""Predict files: read sequences or variant pairs in chunks, predict, write TSV or JSON.

One path (`_predict_table`) serves both inputs: a layout says how a chunk's rows become
sequences to score and how their predictions become output text. Reading and encoding
run ahead in one thread and writing behind in another, so the model computes without
waiting for either; the output appears (atomically) only when every row is written.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np
from absl import logging

from dream_keras.atomic_files import replacing_open
from dream_keras.data.readers import (DEFAULT_CHUNK_ROWS, DataFormatError, iter_pair_chunks,
                                      iter_sequence_chunks)
from dream_keras.data.sequences import InvalidSequenceError, encode_strands, hidden_differences
from dream_keras.errors import ConfigurationError
from dream_keras.file_errors import writing
from dream_keras.inference import (DEFAULT_BATCH_SIZE, checked_seq_len, padded_batch_size,
                                   predict_codes, refuse_non_finite)
from dream_keras.plausibility import PlausibilityCheck
from dream_keras.safe_output import check_output_path

# Rows handed from the reader to the model and on to the writer at a time, in batches.
PIECE_BATCHES = 16
OUTPUT_FORMATS = ("tsv", "dream_json")
PAIR_COLUMNS = ("ref_sequence", "alt_sequence", "ref_prediction", "alt_prediction", "effect")


def check_output_writable(path, overwrite: bool, inputs=()) -> None:
    """Refuse early (before loading a model) an output that would destroy something: an
    existing file without `overwrite`, one of `inputs`, or not a regular file
    (safe_output.check_output_path)."""
    check_output_path(path, inputs=inputs, overwrite=overwrite)


@contextlib.contextmanager
def _atomic_output(path):
    """Write to a temporary file beside `path`, moved into place only on success (gzipped
    when its name ends in .gz); an OS failure (disk full, permission) is one line naming
    the file."""
    with writing(path), replacing_open(path, "w", encoding="utf-8", newline="\n") as handle:
        yield handle


def _put_unless(stop: threading.Event, items: queue.Queue, item) -> bool:
    """Put `item`, waiting for room; give up (False) once `stop` is set."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` in a background thread, up to `depth` items ahead of the caller.

    Reading and encoding (Python and NumPy) then overlap the model's compute (TensorFlow
    releases the GIL); an exception in the thread is re-raised here, where it happened in
    the sequence.
    """
    handoff, stop, done = queue.Queue(maxsize=depth), threading.Event(), object()

    def produce():
        try:
            for item in items:
                if not _put_unless(stop, handoff, (item, None)):
                    return
            _put_unless(stop, handoff, (done, None))
        except BaseException as error:  # noqa: BLE001  (handed to the consumer)
            _put_unless(stop, handoff, (done, error))

    thread = threading.Thread(target=produce, name="dream-keras-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class _BackgroundWriter:
    """Runs write jobs one after another, in order, in a background thread; at most `depth`
    wait, so memory stays bounded when the disk is slower than the model."""

    def __init__(self, depth: int = 2):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "dream-keras-writer")
        self._pending = collections.deque()
        self._depth = depth

    def submit(self, job, *args) -> None:
        self._pending.append(self._executor.submit(job, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        try:
            while self._pending and error_type is None:
                self._pending.popleft().result()
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _pieces(chunks, piece_rows: int):
    """Each chunk of the reader cut into pieces of at most piece_rows rows."""
    for chunk in chunks:
        for start in range(0, len(chunk.line_numbers), piece_rows):
            yield chunk, slice(start, start + piece_rows)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one kind of input file is predicted and written."""
    read_chunks: Callable          # (path, chunk_rows) -> chunks with .line_numbers, .carried
    sequences_per_row: int         # 1, or 2 for a pair (ref then alt)
    piece_sequences: Callable      # (chunk, rows slice) -> sequences to score, in order
    columns: tuple                 # the output's own columns (TSV), after the carried ones
    format_rows: Callable          # (sequences, values, first row, carried) -> output text
    footer: str
    noun: str
    carries: bool = True           # whether the input's other fields are written too


def _tsv_field(text) -> str:
    """One carried field of TSV output, quoted (CSV rules) only when it holds a tab, a line
    break or a quote, so that pandas.read_csv(sep='\\t') reads it back as it was."""
    text = str(text)
    if any(char in text for char in '\t\n\r"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _carried_prefixes(carried: dict, rows: int) -> list:
    """Each row's carried fields as the start of its TSV line ('' when there are none)."""
    if not carried:
        return [""] * rows
    return ["\t".join(map(_tsv_field, fields)) + "\t" for fields in zip(*carried.values())]


def _tsv_rows(sequences, values, first_row: int, carried: dict) -> str:
    prefixes = _carried_prefixes(carried, len(values))
    return "".join(f"{p}{s}\t{v:.9g}\n" for p, s, v in zip(prefixes, sequences, values))


def _dream_json_rows(sequences, values, first_row: int, carried: dict) -> str:
    """The entries of {"<row index>": value} for one piece (0-based rows), comma-led after
    the first piece; json.dumps writes them (allow_nan=False: JSON has no NaN)."""
    if not len(values):
        return ""
    try:
        entries = json.dumps({str(first_row + i): float(v) for i, v in enumerate(values)},
                             allow_nan=False)[1:-1]
    except ValueError:
        bad = first_row + int(np.flatnonzero(~np.isfinite(values))[0])
        raise ConfigurationError(f"the prediction for row {bad} is not finite; JSON cannot "
                                 "hold it (write `output_format='tsv'`)") from None
    return entries if first_row == 0 else ", " + entries


def _effect_rows(sequences, values, first_row: int, carried: dict) -> str:
    half = len(values) // 2
    prefixes = _carried_prefixes(carried, half)
    return "".join(f"{p}{ref}\t{alt}\t{r:.9g}\t{a:.9g}\t{a - r:.9g}\n"
                   for p, ref, alt, r, a in zip(prefixes, sequences[:half], sequences[half:],
                                                values[:half], values[half:]))


def _write_rows(out, layout: _Layout, sequences, values, first_row: int, carried) -> None:
    """Format and write one piece (in the writer thread, off the model's path)."""
    out.write(layout.format_rows(sequences, values, first_row, carried))


def _header(layout: _Layout, carried_names: list, input_path) -> str:
    """The output's first text: the carried columns' names, then the layout's own; a
    carried name that is also an output column is refused (the TSV would hold it twice)."""
    if not layout.carries:
        return "{"
    clashes = [name for name in carried_names
               if name.lower() in {column.lower() for column in layout.columns}]
    if clashes:
        raise DataFormatError(input_path, None, f"its column {clashes[0]!r} has the name of "
                              "an output column, which the output writes itself (carried "
                              "columns come first): rename or drop that column")
    return "\t".join([*map(_tsv_field, carried_names), *layout.columns]) + "\n"


def _sequence_layout(output_format: str) -> _Layout:
    json_output = output_format == "dream_json"
    return _Layout(iter_sequence_chunks, 1, lambda chunk, rows: chunk.sequences[rows],
                   ("sequence", "prediction"),
                   _dream_json_rows if json_output else _tsv_rows,
                   "}\n" if json_output else "", "sequences", carries=not json_output)


_PAIR_LAYOUT = _Layout(
    iter_pair_chunks, 2,
    lambda chunk, rows: list(chunk.ref_sequences[rows]) + list(chunk.alt_sequences[rows]),
    PAIR_COLUMNS, _effect_rows, "", "pairs")


def predict_file(model, scaler, input_path, output_path, *, output_format: str = "tsv",
                 seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                 overwrite: bool = False, jit_compile: bool = True,
                 allow_implausible: bool = False) -> int:
    """Predict every sequence of `input_path` (any supported format), chunk by chunk.

    Writes TSV `sequence<TAB>prediction`, after the input's other fields (a FASTA
    record's `id`, a table's other columns), or, for 'dream_json', {"<row index>": value}
    (0-based rows, the challenge's submission format). Returns the number of rows.
    A prediction outside the plausible range (dream_keras.plausibility) is refused before
    anything is written, unless `allow_implausible` (written, with a warning).
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(f"`output_format` must be one of {OUTPUT_FORMATS}, "
                                 f"got {output_format!r}")
    return _predict_table(_sequence_layout(output_format), model, scaler, input_path,
                          output_path, seq_len=seq_len, batch_size=batch_size,
                          chunk_rows=chunk_rows, both_strands=reverse_complement_average,
                          overwrite=overwrite, jit_compile=jit_compile,
                          allow_implausible=allow_implausible)


def predict_pairs_file(model, scaler, pairs_path, output_path, *, seq_len=None,
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                       overwrite: bool = False, jit_compile: bool = True,
                       allow_implausible: bool = False) -> int:
    """Variant effects for a CSV/TSV with `ref_sequence`, `alt_sequence` columns.

    Writes TSV ref_sequence, alt_sequence, ref_prediction, alt_prediction, effect
    (alt minus ref, training scale) after the file's other columns, rows in input order. Returns the number of pairs.
    Pairs that differ only before the model's window (sequences longer than it) are
    counted in a warning: their effect is 0 because the model never sees the difference.
    """
    return _predict_table(_PAIR_LAYOUT, model, scaler, pairs_path, output_path,
                          seq_len=seq_len, batch_size=batch_size, chunk_rows=chunk_rows,
                          both_strands=reverse_complement_average, overwrite=overwrite,
                          jit_compile=jit_compile, allow_implausible=allow_implausible)


def _predict_table(layout: _Layout, model, scaler, input_path, output_path, *, seq_len,
                   batch_size, chunk_rows, both_strands, overwrite, jit_compile,
                   allow_implausible) -> int:
    """The one file-prediction path: read -> encode (thread) -> predict -> write (thread)."""
    check_output_writable(output_path, overwrite, inputs=[input_path])
    seq_len = checked_seq_len(model, seq_len)

    def encoded(item):
        chunk, rows = item
        sequences = layout.piece_sequences(chunk, rows)
        lines = np.tile(np.asarray(chunk.line_numbers[rows]), layout.sequences_per_row)
        try:
            codes, reverse_codes = encode_strands(sequences, seq_len, both_strands)
        except InvalidSequenceError as error:
            raise DataFormatError(input_path, int(lines[error.row]), str(error)) from None
        # Rows longer than the window: the model sees their last seq_len bases only.
        lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
        longer = np.flatnonzero(lengths > seq_len)
        cut = (len(longer), int(lines[longer].min()) if len(longer) else 0,
               int(lengths.max(initial=0)))
        hidden_lines = np.zeros(0, np.int64)
        if layout.sequences_per_row == 2:  # ref then alt: a difference the window hides
            pairs = len(sequences) // 2
            hidden = hidden_differences(sequences[:pairs], sequences[pairs:], codes[:pairs],
                                        codes[pairs:])
            hidden_lines = lines[:pairs][hidden]
        carried = {name: values[rows] for name, values in chunk.carried.items()}
        return sequences, codes, reverse_codes, hidden_lines, cut, carried

    chunks = layout.read_chunks(input_path, chunk_rows)
    first = next(chunks, None)  # its carried columns name the output's first columns
    header = _header(layout, list(first.carried) if first else [], input_path)
    chunks = itertools.chain([first] if first else [], chunks)
    pieces = map(encoded, _pieces(chunks, PIECE_BATCHES * batch_size
                                  // layout.sequences_per_row))
    rows, last_report, hidden_lines, cut_rows = 0, time.monotonic(), [], []
    plausible = PlausibilityCheck(scaler, input_path, allow=allow_implausible)
    with _atomic_output(output_path) as out, _BackgroundWriter() as writer:
        writer.submit(out.write, header)
        batch_shape = None
        for sequences, codes, reverse_codes, hidden, cut, carried in _read_ahead(pieces):
            hidden_lines.extend(hidden.tolist())
            cut_rows += [cut] if cut[0] else []
            batch_shape = batch_shape or padded_batch_size(len(codes), batch_size)
            values = scaler.inverse_transform(predict_codes(
                model, codes, batch_size, reverse_codes=reverse_codes,
                jit_compile=jit_compile, batch_shape=batch_shape))
            # A diverged model: the output (written whole or not at all) is not written.
            per_row = len(values) // layout.sequences_per_row
            def row_of(index, first_row=rows):
                which = (f"; its {('ref', 'alt')[index // per_row]}_sequence"
                         if layout.sequences_per_row == 2 else "")
                return f"{layout.noun[:-1]} {first_row + index % per_row} (0-based{which})"
            refuse_non_finite(values, input_path, row_of)
            plausible.check(values, row_of)
            writer.submit(_write_rows, out, layout, sequences, values, rows, carried)
            rows += len(values) // layout.sequences_per_row
            if time.monotonic() - last_report >= 10:  # progress on long files only
                logging.info("predicted %d %s", rows, layout.noun)
                last_report = time.monotonic()
        writer.submit(out.write, layout.footer)
    logging.info("predicted %d %s", rows, layout.noun)
    plausible.report()
    if cut_rows:
        logging.warning("%s: %d sequence(s) (first: line %d; the longest %d bases) are longer "
                        "than the model's %d-bp window: it sees only their last %d bases",
                        input_path, sum(c[0] for c in cut_rows), cut_rows[0][1],
                        max(c[2] for c in cut_rows), seq_len, seq_len)
    if hidden_lines:
        logging.warning("%s: %d pair(s) (first: line %d) differ only outside the model's "
                        "%d-bp window (the last %d bases, identical): their effect is 0 by "
                        "construction, not a measured neutral variant", input_path,
                        len(hidden_lines), hidden_lines[0], seq_len, seq_len)
    return rows
