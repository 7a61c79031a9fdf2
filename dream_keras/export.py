"""Export a trained run for serving: a TF SavedModel from sequence strings to expression.

The encoding runs in TensorFlow ops (dream_keras.sequence_ops, tested equal to the NumPy
rules of data/sequences.py), so a SavedModel user needs no Python of ours; the optional
strand average uses the package's one window rule, like the Python API. The directory is
written beside its destination and renamed into place when complete (atomic_files).
"""
from __future__ import annotations

import contextlib
import logging as stdlib_logging
import os

import keras
import tensorflow as tf
from absl import logging

from dream_keras import sequence_ops
from dream_keras.atomic_files import replacing_directory
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import OutputExistsError
from dream_keras.file_errors import writing
from dream_keras.inference import checked_seq_len, scoring_model
from dream_keras.plausibility import plausible_range
from dream_keras.safe_output import check_output_path
from dream_keras.strand_layers import refuse_second_strand_average


SIGNATURE = "serve"  # also 'serving_default'
PLAUSIBILITY_SIGNATURE = "serve_with_plausibility"


def serving_function(model: keras.Model, scaler: TargetScaler, *, seq_len=None,
                     reverse_complement_average: bool = False,
                     with_plausibility: bool = False):
    """A TF function: sequences tf.string [batch] -> {'expression': float32 [batch]}, and
    with `with_plausibility` also 'plausible': bool [batch].

    Encoding: `encode`'s window rule (last seq_len bases, left-padded with N), any case.
    Unlike the Python API, letters outside ACGTN are not an error here: a server should
    answer, and they read as N. For the same reason an implausible prediction (far
    outside the training targets, dream_keras.plausibility) is answered; 'plausible'
    (false for NaN too) says not to trust it. It is a second output only on request, so
    the default signature's responses keep their one-output form (TF Serving's REST API
    answers a one-output signature with bare values). A mixed-precision model serves in
    float32, as the Python API scores it (inference.scoring_model).
    """
    if reverse_complement_average:
        refuse_second_strand_average(model)  # as predict.py and the API refuse it
    seq_len = checked_seq_len(model, seq_len)
    scored = scoring_model(model)
    mean, std = tf.constant(scaler.mean, tf.float64), tf.constant(scaler.std, tf.float64)
    low, high = (tf.constant(bound, tf.float64) for bound in plausible_range(scaler))

    def predict(codes):
        # An empty batch is answered empty: the layers cannot take 0 rows.
        output = tf.cond(tf.shape(codes)[0] > 0,
                         lambda: tf.cast(scored(sequence_ops.one_hot(codes), training=False),
                                         tf.float32),
                         lambda: tf.zeros([0, 1], tf.float32))
        return tf.cast(tf.reshape(output, [-1]), tf.float64)

    def serve(sequences):
        codes = sequence_ops.encode_strings(sequences, seq_len)
        standardised = predict(codes)
        if reverse_complement_average:
            reverse = sequence_ops.reverse_complement_right_aligned(codes)
            standardised = (standardised + predict(reverse)) / 2.0
        expression = standardised * std + mean
        if not with_plausibility:
            return {"expression": tf.cast(expression, tf.float32)}
        return {"expression": tf.cast(expression, tf.float32),
                "plausible": tf.logical_and(expression >= low, expression <= high)}

    return serve


def check_export_dir(export_dir, overwrite: bool, inputs=()) -> None:
    """Refuse early (before loading a model) an export that would destroy something: an
    existing directory without `overwrite`, one holding an input (the run itself), or a
    path that is not a directory (safe_output.check_output_path)."""
    try:
        check_output_path(export_dir, inputs=inputs, overwrite=overwrite,
                          parameter="export_dir", directory=True)
    except OutputExistsError:
        _refuse_other_than_an_export(export_dir)  # first: `overwrite` would not help
        raise
    _refuse_other_than_an_export(export_dir)


def _refuse_other_than_an_export(export_dir) -> None:
    """Replaced whole: only an earlier export (or an empty directory), never a folder of
    the user's that happens to be named so."""
    if (os.path.isdir(export_dir) and os.listdir(export_dir)
            and not os.path.exists(os.path.join(export_dir, "saved_model.pb"))):
        raise OutputExistsError(f"{export_dir}: `export_dir` is a directory that holds no "
                                "SavedModel (no saved_model.pb); the export replaces its "
                                "directory whole, so choose another `export_dir` (even "
                                "with `overwrite=True`)")


def export_serving(model: keras.Model, scaler: TargetScaler, export_dir, *, seq_len=None,
                   reverse_complement_average: bool = False, overwrite: bool = False) -> None:
    """Write a TF SavedModel whose `serve` endpoint (also 'serving_default') maps a batch of
    sequence strings tf.string [None] to training-scale expression float32 [None], and
    whose `serve_with_plausibility` endpoint also returns plausible bool [None]
    (serving_function)."""
    check_export_dir(export_dir, overwrite)
    archive = keras.export.ExportArchive()
    archive.track(scoring_model(model))  # the model the endpoint calls
    for name, with_plausibility in ((SIGNATURE, False), (PLAUSIBILITY_SIGNATURE, True)):
        archive.add_endpoint(
            name=name,
            fn=serving_function(model, scaler, seq_len=seq_len,
                                reverse_complement_average=reverse_complement_average,
                                with_plausibility=with_plausibility),
            input_signature=[tf.TensorSpec([None], tf.string, name="sequences")])
    with writing(export_dir), replacing_directory(export_dir) as temporary, \
            _tensorflow_info_quiet():
        archive.write_out(temporary, verbose=False)
    logging.info("exported a SavedModel to %s", export_dir)


@contextlib.contextmanager
def _tensorflow_info_quiet():
    """While TensorFlow writes the SavedModel it logs, at INFO (through absl and its own
    logger), which signature inputs it found, sharding timings and "Writing fingerprint
    to <the temporary directory>": noise, and a name the user never chose. Warnings and
    errors still show."""
    logger, verbosity = tf.get_logger(), logging.get_verbosity()
    level = logger.level
    logger.setLevel(max(level, stdlib_logging.WARNING))
    logging.set_verbosity(min(verbosity, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
        logging.set_verbosity(verbosity)
