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

import contextlib
import os
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from dream_keras.dataset import evaluation_dataset
from dream_keras.data.readers import (DEFAULT_CHUNK_ROWS, DataFormatError, iter_pair_chunks,
                                      iter_sequence_chunks)
from dream_keras.data.sequences import InvalidSequenceError, encode
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError, MissingDataError, OutputExistsError
from dream_keras.model import load_model
from dream_keras.run_directory import MODEL_FILE, SCALER_FILE

DEFAULT_BATCH_SIZE = 1024
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
    if not os.path.isfile(model_path):
        raise MissingDataError(f"{model_path}: model not found")
    scaler_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), SCALER_FILE)
    if not os.path.isfile(scaler_path):
        raise MissingDataError(f"{scaler_path}: target scaler not found next to the model "
                                "(a training run writes it; predictions need it to undo the "
                                "standardisation)")
    scaler = TargetScaler.load(scaler_path)
    logging.info("loading %s", model_path)
    try:
        model = load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; name the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataFormatError(model_path, None, f"cannot load the model "
                              f"({type(error).__name__}: {reason})") from error
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


def predict_codes(model: keras.Model, codes: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
                  ) -> np.ndarray:
    """Standardised predictions float32 [n] for codes uint8 [n, seq_len], in row order."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.float32)
    dataset = evaluation_dataset(codes, batch_size=batch_size)
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32).reshape(-1)


def predict_standardised(model: keras.Model, sequences: Sequence[str], *, seq_len=None,
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         reverse_complement_average: bool = False) -> np.ndarray:
    """Model outputs float32 [n] (standardised scale) for strings; optional strand average.

    Raises InvalidSequenceError (with `.row`) for a letter outside ACGTN.
    """
    seq_len = seq_len or model_seq_len(model)
    forward = predict_codes(model, encode(sequences, seq_len), batch_size)
    if not reverse_complement_average:
        return forward
    reverse_codes = encode(reverse_complement_strings(sequences), seq_len)
    return (forward + predict_codes(model, reverse_codes, batch_size)) / np.float32(2)


def predict_sequences(model: keras.Model, scaler: TargetScaler, sequences: Sequence[str], *,
                      seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                      reverse_complement_average: bool = False) -> np.ndarray:
    """Expression float64 [n] on the training data's scale, one per sequence, in order."""
    standardised = predict_standardised(
        model, list(sequences), seq_len=seq_len, batch_size=batch_size,
        reverse_complement_average=reverse_complement_average)
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

def check_output_writable(path, overwrite: bool) -> None:
    """Refuse early (before loading a model) to replace an existing output."""
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(f"{path}: output exists; pass --overwrite to replace it")
    if os.path.isdir(path):
        raise OutputExistsError(f"{path}: output is a directory")


@contextlib.contextmanager
def _atomic_output(path):
    """Write to a temporary file beside `path`, moved into place only on success."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.partial-{os.getpid()}")
    try:
        with open(temporary, "w", newline="\n") as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _located(path, line_numbers, error: InvalidSequenceError) -> DataFormatError:
    return DataFormatError(path, int(line_numbers[error.row]), str(error))


def predict_file(model, scaler, input_path, output_path, *, output_format: str = "tsv",
                 seq_len=None, batch_size: int = DEFAULT_BATCH_SIZE,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                 overwrite: bool = False) -> int:
    """Predict every sequence of `input_path` (any supported format), chunk by chunk.

    Writes TSV `sequence<TAB>prediction` or, for 'dream_json', {"<row index>": value}
    (0-based rows, the challenge's submission format). Returns the number of rows.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    check_output_writable(output_path, overwrite)
    rows = 0
    with _atomic_output(output_path) as out:
        out.write("sequence\tprediction\n" if output_format == "tsv" else "{")
        for chunk in iter_sequence_chunks(input_path, chunk_rows):
            try:
                values = predict_sequences(
                    model, scaler, chunk.sequences, seq_len=seq_len, batch_size=batch_size,
                    reverse_complement_average=reverse_complement_average)
            except InvalidSequenceError as error:
                raise _located(input_path, chunk.line_numbers, error) from None
            if output_format == "tsv":
                out.writelines(f"{s}\t{v:.9g}\n" for s, v in zip(chunk.sequences, values))
            elif len(values):
                entries = ", ".join(f'"{rows + i}": {v:.9g}' for i, v in enumerate(values))
                out.write(entries if rows == 0 else ", " + entries)
            rows += len(values)
            logging.info("predicted %d sequences", rows)
        if output_format == "dream_json":
            out.write("}\n")
    return rows


def predict_pairs_file(model, scaler, pairs_path, output_path, *, seq_len=None,
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                       overwrite: bool = False) -> int:
    """Variant effects for a CSV/TSV with `ref_sequence`, `alt_sequence` columns.

    Writes TSV ref_sequence, alt_sequence, ref_prediction, alt_prediction, effect
    (alt minus ref, training scale), rows in input order. Returns the number of pairs.
    """
    check_output_writable(output_path, overwrite)
    rows = 0
    with _atomic_output(output_path) as out:
        out.write("ref_sequence\talt_sequence\tref_prediction\talt_prediction\teffect\n")
        for chunk in iter_pair_chunks(pairs_path, chunk_rows):
            try:
                effects = variant_effects(
                    model, scaler, chunk.ref_sequences, chunk.alt_sequences, seq_len=seq_len,
                    batch_size=batch_size, reverse_complement_average=reverse_complement_average)
            except InvalidSequenceError as error:
                line_numbers = np.concatenate([chunk.line_numbers, chunk.line_numbers])
                raise _located(pairs_path, line_numbers, error) from None
            out.writelines(
                f"{ref}\t{alt}\t{r:.9g}\t{a:.9g}\t{e:.9g}\n" for ref, alt, r, a, e in zip(
                    chunk.ref_sequences, chunk.alt_sequences, effects["ref_prediction"],
                    effects["alt_prediction"], effects["effect"]))
            rows += len(chunk.ref_sequences)
            logging.info("predicted %d pairs", rows)
    return rows


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
    if os.path.lexists(export_dir) and not overwrite:
        raise OutputExistsError(f"{export_dir}: export directory exists; pass --overwrite")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=serving_function(model, scaler, seq_len=seq_len,
                            reverse_complement_average=reverse_complement_average),
        input_signature=[tf.TensorSpec([None], tf.string, name="sequences")])
    archive.write_out(os.fspath(export_dir), verbose=False)
    logging.info("exported a SavedModel to %s", export_dir)


def run_prediction(model_path, *, input_path=None, pairs_path=None, output_path=None,
                   export_dir=None, output_format: str = "tsv",
                   batch_size: int = DEFAULT_BATCH_SIZE, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   reverse_complement_average: bool = False, overwrite: bool = False) -> str:
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
    if output_path:
        check_output_writable(output_path, overwrite)
    if export_dir and os.path.lexists(export_dir) and not overwrite:
        raise OutputExistsError(f"{export_dir}: export directory exists; pass --overwrite")
    model, scaler = load_run(model_path)
    options = dict(batch_size=batch_size, chunk_rows=chunk_rows, overwrite=overwrite,
                   reverse_complement_average=reverse_complement_average)
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
