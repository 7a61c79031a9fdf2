"""Predict expression with a trained run: load it, predict strings in chunks, variant effects.

A run directory holds `model.keras` and `target_scaler.json`; the model outputs
standardised expression [batch, 1] and `scaler.inverse_transform` brings it back to the
training file's scale (sort-bin 0..17 for the DREAM data), which is what users get here.

Reverse-complement averaging reverse-complements the raw STRING and encodes it with the
same rule as the forward strand (last seq_len bases, left-padded with N). Both strands
therefore look like the data the model was trained on (padding on the left, 3' end
aligned); for sequences longer than seq_len the reverse strand sees the complement of the
FIRST seq_len bases.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import queue
import threading
import weakref
from typing import Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras.artefacts import check_model, check_model_archive, model_file_problem
from dream_keras.data.readers import (DEFAULT_CHUNK_ROWS, DataFormatError, iter_pair_chunks,
                                      iter_sequence_chunks)
from dream_keras.data.sequences import InvalidSequenceError, encode
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError, MissingDataError
from dream_keras.model import load_model
from dream_keras.file_errors import check_input_file, writing
from dream_keras.run_directory import MODEL_FILE, SCALER_FILE
from dream_keras.safe_output import atomic_directory, atomic_write, check_output_path

# On 2 CPU cores throughput per CPU-second is flat (within 7 %) from batch 64 to 1,024
# (docs/scoring.md); 256 keeps a padded last batch and a tiny input's compile cheap.
DEFAULT_BATCH_SIZE = 256
MIN_BATCH_SHAPE = 8
# Rows handed from the reader to the model and on to the writer at a time, in batches.
PIECE_BATCHES = 16
# model -> {(batch, both strands, jit): tf.function}; entries go when the model does.
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
OUTPUT_FORMATS = ("tsv", "dream_json")
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def model_path_of(path) -> str:
    """`path` itself if it is a file, else `path/model.keras` (a run directory)."""
    path = os.fspath(path)
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def load_run(path) -> tuple[keras.Model, TargetScaler]:
    """(model, scaler) from `RUN/model.keras` (or the run directory `RUN`).

    The scaler is `target_scaler.json` next to the model; both must exist.
    """
    model_path = model_path_of(path)
    problem = model_file_problem(model_path)
    if problem == "model not found":
        raise MissingDataError(f"{model_path}: {problem}")
    if problem is not None:
        raise DataFormatError(model_path, None, problem)
    scaler_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), SCALER_FILE)
    if not os.path.lexists(scaler_path):
        raise MissingDataError(f"{scaler_path}: target scaler not found next to the model "
                                "(a training run writes it; predictions need it to undo the "
                                "standardisation)")
    scaler = TargetScaler.load(scaler_path)
    logging.info("loading %s", model_path)
    check_model_archive(model_path)
    try:
        model = load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; name the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataFormatError(model_path, None, f"cannot load the model "
                              f"({type(error).__name__}: {reason})") from error
    check_model(model, model_path)
    return model, scaler


def model_seq_len(model: keras.Model) -> int:
    """The sequence length the model takes: its input shape [None, seq_len, 4] (the
    training run's flags.seq_len, read from the model itself so they cannot disagree)."""
    seq_len = model.inputs[0].shape[1]
    if seq_len is None:
        raise ValueError("the model's input length is not fixed; pass seq_len explicitly")
    return int(seq_len)


def reverse_complement_strings(sequences: Iterable[str]) -> list:
    """Reverse complement of each raw string (any case kept; other letters unchanged)."""
    return [sequence.translate(_COMPLEMENT)[::-1] for sequence in sequences]


def padded_batch_size(num_rows: int, batch_size: int) -> int:
    """The fixed batch shape used for `num_rows` rows: batch_size, or for fewer rows the
    next power of two >= num_rows (at least 8), so a few short calls compile few shapes."""
    if num_rows >= batch_size:
        return batch_size
    return min(batch_size, max(MIN_BATCH_SHAPE, 1 << (max(num_rows, 1) - 1).bit_length()))


def compiled_forward(model: keras.Model, batch_size: int, *, both_strands: bool = False,
                     jit_compile: bool = True):
    """The model as a tf.function of fixed shape, traced (and XLA-compiled) once and cached.

    codes uint8 [batch_size, seq_len] -> standardised predictions float32 [batch_size]; with
    `both_strands`, (forward codes, reverse codes) -> their average, run as ONE batch of
    2 x batch_size rows. The one-hot encoding (N -> zeros) happens inside, so only bytes
    cross into TensorFlow. The fixed input signature is what keeps a padded last batch from
    retracing; the cache lives as long as the model.
    """
    key = (int(batch_size), bool(both_strands), bool(jit_compile))
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        spec = tf.TensorSpec([batch_size, model_seq_len(model)], tf.uint8)
        # A weak reference: the cached function must not keep its cache key (the model)
        # alive, or the cache would hold every model a process ever scored.
        model_ref = weakref.ref(model)

        def outputs(codes):  # [rows, L] uint8 -> [rows] float32
            one_hot = tf.one_hot(tf.cast(codes, tf.int32), depth=4, dtype=tf.float32)
            return tf.cast(tf.reshape(model_ref()(one_hot, training=False), [-1]), tf.float32)

        if both_strands:
            def forward(codes, reverse_codes):
                both = tf.reshape(outputs(tf.concat([codes, reverse_codes], 0)), [2, -1])
                return (both[0] + both[1]) / 2.0
            signature = [spec, spec]
        else:
            forward, signature = outputs, [spec]
        functions[key] = tf.function(forward, input_signature=signature,
                                     jit_compile=jit_compile)
    return functions[key]


def predict_codes(model: keras.Model, codes: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                  *, reverse_codes: np.ndarray | None = None, jit_compile: bool = True,
                  batch_shape: int | None = None) -> np.ndarray:
    """Standardised predictions float32 [n] for codes uint8 [n, seq_len], in row order.

    With `reverse_codes` (the reverse strands, same shape), the average of both strands,
    each batch of the two computed in one call. Every batch runs at one fixed shape,
    `batch_shape` (default: `padded_batch_size`), the last padded with N rows whose outputs
    are dropped.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    num_rows = len(codes)
    predictions = np.zeros(num_rows, dtype=np.float32)
    if num_rows == 0:
        return predictions
    batch = batch_shape or padded_batch_size(num_rows, batch_size)
    forward = compiled_forward(model, batch, both_strands=reverse_codes is not None,
                               jit_compile=jit_compile)
    strands = [codes] if reverse_codes is None else [codes, np.asarray(reverse_codes, np.uint8)]
    for start in range(0, num_rows, batch):
        rows = min(batch, num_rows - start)
        inputs = [_padded(strand[start:start + rows], batch) for strand in strands]
        predictions[start:start + rows] = forward(*inputs).numpy()[:rows]
    return predictions


def _padded(codes: np.ndarray, batch: int) -> np.ndarray:
    """codes [rows <= batch, L] -> [batch, L], extra rows all N (code 4)."""
    if len(codes) == batch:
        return codes
    return np.concatenate([codes, np.full((batch - len(codes), codes.shape[1]), 4, np.uint8)])


def encode_strands(sequences: Sequence[str], seq_len: int, reverse_complement_average: bool):
    """(forward codes, reverse-strand codes or None): uint8 [n, seq_len] each.

    Raises InvalidSequenceError (with `.row`) for a letter outside ACGTN.
    """
    forward = encode(sequences, seq_len)
    if not reverse_complement_average:
        return forward, None
    return forward, encode(reverse_complement_strings(sequences), seq_len)


def predict_standardised(model: keras.Model, sequences: Sequence[str], *, seq_len=None,
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         reverse_complement_average: bool = False,
                         jit_compile: bool = True) -> np.ndarray:
    """Model outputs float32 [n] (standardised scale) for strings; optional strand average.

    Raises InvalidSequenceError (with `.row`) for a letter outside ACGTN.
    """
    codes, reverse_codes = encode_strands(sequences, seq_len or model_seq_len(model),
                                          reverse_complement_average)
    return predict_codes(model, codes, batch_size, reverse_codes=reverse_codes,
                         jit_compile=jit_compile)


def predict_sequences(model: keras.Model, scaler: TargetScaler, sequences: Sequence[str], *,
                      seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                      reverse_complement_average: bool = False,
                      jit_compile: bool = True) -> np.ndarray:
    """Expression float64 [n] on the training data's scale, one per sequence, in order."""
    standardised = predict_standardised(
        model, list(sequences), seq_len=seq_len, batch_size=batch_size,
        reverse_complement_average=reverse_complement_average, jit_compile=jit_compile)
    return scaler.inverse_transform(standardised)


def variant_effects(model: keras.Model, scaler: TargetScaler, ref_sequences: Sequence[str],
                    alt_sequences: Sequence[str], **predict_options) -> dict:
    """{'ref_prediction', 'alt_prediction', 'effect' = alt - ref}: float64 [n] each."""
    if len(ref_sequences) != len(alt_sequences):
        raise ValueError(f"{len(ref_sequences)} ref but {len(alt_sequences)} alt sequences")
    both = predict_sequences(model, scaler, list(ref_sequences) + list(alt_sequences),
                             **predict_options)
    ref, alt = both[:len(ref_sequences)], both[len(ref_sequences):]
    return {"ref_prediction": ref, "alt_prediction": alt, "effect": alt - ref}


# ---- files ------------------------------------------------------------------------------

def check_output_writable(path, overwrite: bool, inputs=()) -> None:
    """Refuse early (before loading a model) an output that would destroy something:
    see safe_output.check_output_path."""
    check_output_path(path, inputs=inputs, overwrite=overwrite)


@contextlib.contextmanager
def _atomic_output(path):
    """Write to a temporary file beside `path`, moved into place only on success."""
    with writing(path), atomic_write(path, "w", newline="\n") as handle:
        yield handle


def _located(path, line_numbers, error: InvalidSequenceError) -> DataFormatError:
    return DataFormatError(path, int(line_numbers[error.row]), str(error))


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


def predict_file(model, scaler, input_path, output_path, *, output_format: str = "tsv",
                 seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                 overwrite: bool = False, jit_compile: bool = True) -> int:
    """Predict every sequence of `input_path` (any supported format), chunk by chunk.

    Writes TSV `sequence<TAB>prediction` or, for 'dream_json', {"<row index>": value}
    (0-based rows, the challenge's submission format). Returns the number of rows.
    Reading and encoding run ahead in one thread and writing behind in another, so the
    model computes without waiting for either.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    check_output_writable(output_path, overwrite, inputs=[input_path])
    seq_len = seq_len or model_seq_len(model)

    def encoded(item):
        chunk, rows = item
        try:
            return (chunk.sequences[rows], *encode_strands(
                chunk.sequences[rows], seq_len, reverse_complement_average))
        except InvalidSequenceError as error:
            raise _located(input_path, chunk.line_numbers[rows], error) from None

    pieces = map(encoded, _pieces(iter_sequence_chunks(input_path, chunk_rows),
                                  PIECE_BATCHES * batch_size))
    rows = 0
    with _atomic_output(output_path) as out, _BackgroundWriter() as writer:
        writer.submit(out.write, "sequence\tprediction\n" if output_format == "tsv" else "{")
        batch_shape = None
        for sequences, codes, reverse_codes in _read_ahead(pieces):
            batch_shape = batch_shape or padded_batch_size(len(codes), batch_size)
            values = scaler.inverse_transform(predict_codes(
                model, codes, batch_size, reverse_codes=reverse_codes,
                jit_compile=jit_compile, batch_shape=batch_shape))
            writer.submit(_write_predictions, out, output_format, sequences, values, rows)
            rows += len(values)
            logging.log_every_n_seconds(logging.INFO, "predicted %d sequences", 10, rows)
        if output_format == "dream_json":
            writer.submit(out.write, "}\n")
    logging.info("predicted %d sequences", rows)
    return rows


def _write_predictions(out, output_format: str, sequences, values, first_row: int) -> None:
    if output_format == "tsv":
        out.writelines(f"{s}\t{v:.9g}\n" for s, v in zip(sequences, values))
    elif len(values):
        entries = ", ".join(f'"{first_row + i}": {v:.9g}' for i, v in enumerate(values))
        out.write(entries if first_row == 0 else ", " + entries)


def predict_pairs_file(model, scaler, pairs_path, output_path, *, seq_len=None,
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                       overwrite: bool = False, jit_compile: bool = True) -> int:
    """Variant effects for a CSV/TSV with `ref_sequence`, `alt_sequence` columns.

    Writes TSV ref_sequence, alt_sequence, ref_prediction, alt_prediction, effect
    (alt minus ref, training scale), rows in input order. Returns the number of pairs.
    """
    check_output_writable(output_path, overwrite, inputs=[pairs_path])
    seq_len = seq_len or model_seq_len(model)

    def encoded(item):
        chunk, rows = item
        refs, alts = chunk.ref_sequences[rows], chunk.alt_sequences[rows]
        try:
            return (refs, alts, *encode_strands(refs + alts, seq_len,
                                                reverse_complement_average))
        except InvalidSequenceError as error:
            line_numbers = chunk.line_numbers[rows]
            raise _located(pairs_path, np.concatenate([line_numbers, line_numbers]),
                           error) from None

    pieces = map(encoded, _pieces(iter_pair_chunks(pairs_path, chunk_rows),
                                  PIECE_BATCHES * batch_size // 2))
    rows = 0
    with _atomic_output(output_path) as out, _BackgroundWriter() as writer:
        writer.submit(out.write,
                      "ref_sequence\talt_sequence\tref_prediction\talt_prediction\teffect\n")
        batch_shape = None
        for refs, alts, codes, reverse_codes in _read_ahead(pieces):
            batch_shape = batch_shape or padded_batch_size(len(codes), batch_size)
            both = scaler.inverse_transform(predict_codes(
                model, codes, batch_size, reverse_codes=reverse_codes,
                jit_compile=jit_compile, batch_shape=batch_shape))
            writer.submit(_write_effects, out, refs, alts, both[:len(refs)], both[len(refs):])
            rows += len(refs)
            logging.log_every_n_seconds(logging.INFO, "predicted %d pairs", 10, rows)
    logging.info("predicted %d pairs", rows)
    return rows


def _write_effects(out, refs, alts, ref_values, alt_values) -> None:
    out.writelines(f"{ref}\t{alt}\t{r:.9g}\t{a:.9g}\t{a - r:.9g}\n"
                   for ref, alt, r, a in zip(refs, alts, ref_values, alt_values))


# ---- export for serving -----------------------------------------------------------------

def _byte_to_code_table() -> np.ndarray:
    """int32 [256]: byte of A/C/G/T (after upper-casing) -> 0..3; every other byte -> 4 (N)."""
    table = np.full(256, 4, dtype=np.int32)
    for code, letter in enumerate("ACGT"):
        table[ord(letter)] = code
    return table


def serving_function(model: keras.Model, scaler: TargetScaler, *, seq_len=None,
                     reverse_complement_average: bool = False):
    """A TF function: sequences tf.string [batch] -> {'expression': float32 [batch]}.

    The encoding is done in TF ops (upper-case, keep the last seq_len bases, left-pad with
    N, A/C/G/T -> one-hot, N and any other byte -> zeros), so a SavedModel user needs no
    Python of ours. Unlike the Python API, letters outside ACGTN are not an error here:
    a server should answer, and they read as N.
    """
    seq_len = seq_len or model_seq_len(model)
    table = tf.constant(_byte_to_code_table())
    complement = tf.constant([3, 2, 1, 0, 4], dtype=tf.int32)
    padding = "N" * seq_len
    mean, std = tf.constant(scaler.mean, tf.float64), tf.constant(scaler.std, tf.float64)

    def codes_of(windows):  # tf.string [batch] of exactly seq_len bytes -> int32 [batch, L]
        raw = tf.io.decode_raw(windows, tf.uint8, fixed_length=seq_len)
        return tf.gather(table, tf.cast(raw, tf.int32))

    def forward_codes(sequences):
        padded = tf.strings.join([padding, sequences])
        start = tf.strings.length(padded) - seq_len
        return codes_of(tf.strings.substr(padded, start, tf.fill(tf.shape(start), seq_len)))

    def reverse_strand_codes(sequences):
        # Last L bases of the reverse complement = reverse complement of the first L.
        first = tf.strings.substr(tf.strings.join([sequences, padding]), 0, seq_len)
        return tf.reverse(tf.gather(complement, codes_of(first)), axis=[1])

    def predict(codes):
        output = model(tf.one_hot(codes, depth=4, dtype=tf.float32), training=False)
        return tf.cast(tf.reshape(output, [-1]), tf.float64)

    def serve(sequences):
        sequences = tf.strings.upper(sequences)
        standardised = predict(forward_codes(sequences))
        if reverse_complement_average:
            standardised = (standardised + predict(reverse_strand_codes(sequences))) / 2.0
        return {"expression": tf.cast(standardised * std + mean, tf.float32)}

    return serve


def export_serving(model: keras.Model, scaler: TargetScaler, export_dir, *, seq_len=None,
                   reverse_complement_average: bool = False, overwrite: bool = False) -> None:
    """Write a TF SavedModel whose `serve` endpoint (also 'serving_default') maps a batch of
    sequence strings tf.string [None] to training-scale expression float32 [None]."""
    check_output_path(export_dir, overwrite=overwrite, flag="--export", directory=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=serving_function(model, scaler, seq_len=seq_len,
                            reverse_complement_average=reverse_complement_average),
        input_signature=[tf.TensorSpec([None], tf.string, name="sequences")])
    with writing(export_dir), atomic_directory(export_dir) as temporary:
        archive.write_out(temporary, verbose=False)
    logging.info("exported a SavedModel to %s", export_dir)


def run_prediction(model_path, *, input_path=None, pairs_path=None, output_path=None,
                   export_dir=None, output_format: str = "tsv",
                   batch_size: int = DEFAULT_BATCH_SIZE, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   reverse_complement_average: bool = False, overwrite: bool = False,
                   jit_compile: bool = True) -> str:
    """What `predict.py` does: predict a file, a pair file, and/or export. Returns a summary.

    Output paths are checked before the model loads, so a refusal is immediate.
    """
    if input_path and pairs_path:
        raise ConfigurationError("give --input or --pairs, not both")
    if (input_path or pairs_path) and not output_path:
        raise ConfigurationError("--output is required with --input or --pairs")
    if not (input_path or pairs_path or export_dir):
        raise ConfigurationError("nothing to do: give --input, --pairs or --export")
    if pairs_path and output_format != "tsv":
        raise ConfigurationError("--pairs writes TSV only (--format=tsv)")
    inputs = [input_path, pairs_path, model_path_of(model_path)]
    if output_path:
        check_output_writable(output_path, overwrite, inputs=inputs)
    if export_dir:
        check_output_path(export_dir, inputs=inputs, overwrite=overwrite, flag="--export",
                          directory=True)
    for source in (input_path, pairs_path):
        if source:
            check_input_file(source)
    model, scaler = load_run(model_path)
    options = dict(batch_size=batch_size, chunk_rows=chunk_rows, overwrite=overwrite,
                   reverse_complement_average=reverse_complement_average,
                   jit_compile=jit_compile)
    summary = []
    if input_path:
        rows = predict_file(model, scaler, input_path, output_path,
                            output_format=output_format, **options)
        summary.append(f"wrote {rows} predictions to {output_path}")
    if pairs_path:
        rows = predict_pairs_file(model, scaler, pairs_path, output_path, **options)
        summary.append(f"wrote {rows} variant effects to {output_path}")
    if export_dir:
        export_serving(model, scaler, export_dir, overwrite=overwrite,
                       reverse_complement_average=reverse_complement_average)
        summary.append(f"exported a SavedModel (signature 'serving_default': sequences "
                       f"tf.string [None] -> expression float32 [None]) to {export_dir}")
    return "\n".join(summary)
