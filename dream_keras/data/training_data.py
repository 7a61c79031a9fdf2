"""From --train_data to the rows a run trains on: locate or make the file, cache it,
filter singletons, split, standardise.

A cache that is not a current cache of the source is rebuilt from it, with a notice:
stale (another source or seq_len, or prepared with --skip_bad_rows for a run without it),
damaged (empty, rows missing) or, at the default cache path, unreadable (truncated,
corrupt). A file that is not a dream_keras cache (foreign) is never replaced, at the
default path or at a --cache_path: it is the user's."""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
from absl import logging

from dream_keras.data import cache as cache_files
from dream_keras.data.cache import load_cache, prepare_cache
from dream_keras.data.duplicates import conflicting_duplicates, rows_also_in
from dream_keras.data.splits import TargetScaler, singleton_keep_mask, split_train_validation
from dream_keras.errors import (ConfigurationError, DataFormatError, MissingDataError,
                                OutputExistsError)
from dream_keras.file_errors import writing
from dream_keras.training_config import TrainingConfig

ZENODO_RECORD = "https://zenodo.org/records/10633252"
# Its name in the record (flags/base.flags' default): a missing file of that name gets the
# download hint; any other missing file is just missing.
DREAM_TRAINING_FILE = "train_sequences.txt"


@dataclasses.dataclass
class TrainingRows:
    train_codes: np.ndarray        # uint8 [n_train, seq_len]
    train_targets: np.ndarray      # float32 [n_train], standardised
    validation_codes: np.ndarray
    validation_targets: np.ndarray
    scaler: TargetScaler
    summary: dict                  # paths, checksum and row counts for run.json


def ensure_train_file(config: TrainingConfig) -> None:
    """Write synthetic data when asked and absent; otherwise insist the file exists."""
    if os.path.exists(config.train_data):
        return
    if config.synthetic_rows > 0:
        from dream_keras.data import synthetic

        if is_cache_file(config):  # the text would be read as a cache and fail, every rerun
            raise ConfigurationError(
                f"{config.train_data}: --synthetic_rows writes a text file, not an HDF5 "
                "cache: give --train_data a text file name (e.g. synthetic.txt; its cache "
                "is prepared beside it)")

        logging.info("writing %d synthetic rows to %s", config.synthetic_rows,
                     config.train_data)
        os.makedirs(os.path.dirname(os.path.abspath(config.train_data)), exist_ok=True)
        synthetic.write_dream_file(config.train_data, config.synthetic_rows,
                                   config.synthetic_seed)
        return
    if os.path.basename(config.train_data) != DREAM_TRAINING_FILE:
        raise MissingDataError(f"training data {config.train_data} not found")
    raise MissingDataError(
        f"training data {config.train_data} not found. The DREAM 2022 training set is "
        f"{DREAM_TRAINING_FILE} from Zenodo record 10633252 ({ZENODO_RECORD}); download "
        f"it and put it at {config.train_data} (or pass --train_data=PATH). To try the "
        "package without it: make quickstart.")


def is_cache_file(config: TrainingConfig) -> bool:
    """Whether --train_data names a prepared cache rather than a text file."""
    return config.train_data.endswith((".h5", ".hdf5"))


def resolve_cache(config: TrainingConfig, seq_len: int) -> str:
    """Path of an up-to-date HDF5 cache for --train_data, preparing it when needed."""
    if is_cache_file(config):
        return config.train_data
    cache_path = config.cache_path or f"{config.train_data}.seq{seq_len}.h5"
    if os.path.exists(cache_path) and os.path.samefile(cache_path, config.train_data):
        raise ConfigurationError(f"--cache_path {cache_path} is the training file itself; "
                                 "choose another path for the cache")
    state, why = cache_files.inspect_cache(cache_path, config.train_data, seq_len,
                                           skip_bad_rows=config.skip_bad_rows)
    if state == cache_files.CURRENT:
        logging.info("reusing cache %s (source unchanged)", cache_path)
        return cache_path
    if state == cache_files.FOREIGN:
        # Every cache this package ever wrote has all of the cache attributes: a file
        # without them, even at the default path, is someone's own, never replaced.
        raise OutputExistsError(f"{cache_path} exists and is not a dream_keras cache "
                                f"({why}); it is left as it is: move it, or pass another "
                                "--cache_path")
    if state == cache_files.UNREADABLE and config.cache_path:
        raise OutputExistsError(f"{cache_path} exists and cannot be read ({why}), so it "
                                "cannot be told from a file of yours; it is left as it is: "
                                "remove it or pass another --cache_path")
    if state == cache_files.MISSING:
        logging.info("preparing cache %s from %s", cache_path, config.train_data)
    else:
        _rebuild_notice(cache_path, config.train_data, state, why)
    _prepare(config, cache_path, seq_len)
    return cache_path


def _prepare(config: TrainingConfig, cache_path: str, seq_len: int) -> None:
    with writing(cache_path):  # e.g. a read-only data directory: one line naming the cache
        prepare_cache(config.train_data, cache_path, seq_len=seq_len,
                      skip_bad_rows=config.skip_bad_rows, overwrite=True)


def _rebuild_notice(cache_path, source, state, why) -> None:
    log = logging.info if state == cache_files.STALE else logging.warning
    log("cache %s is %s (%s); rebuilding it from %s", cache_path, state, why, source)


def _check_given_cache(config: TrainingConfig, cache_path, cache) -> None:
    """A cache given as --train_data has no source to rebuild it from: one prepared under
    older rules for valid rows gets a warning, and a non-finite value (which they let
    through) is refused naming its row, not reported later as constant targets."""
    if not is_cache_file(config):
        return
    if cache_files.reader_version(cache.attrs) != cache_files.READER_VERSION:
        logging.warning("%s was prepared under other rules for valid rows (reader version "
                        "%s, this release's %d): prepare it again from its text file "
                        "(dream-prepare) to apply this release's checks", cache_path,
                        cache.attrs.get("reader_version", 1), cache_files.READER_VERSION)
    bad = np.flatnonzero(~np.isfinite(cache.expression))
    if bad.size:
        raise DataFormatError(cache_path, None, f"row {int(bad[0]) + 1} of the cache holds "
                              f"the expression {cache.expression[bad[0]]}, not a finite "
                              f"number ({bad.size} such rows): prepare it again from its "
                              "text file (dream-prepare), which names the line")


def _load_cache(config: TrainingConfig, seq_len: int):
    """The cache's rows; a cache of ours that fails to read (its data damaged past what
    inspect_cache reads) is rebuilt once from the source."""
    cache_path = resolve_cache(config, seq_len)
    try:
        return cache_path, load_cache(cache_path)
    except DataFormatError as error:
        if is_cache_file(config):
            raise
        _rebuild_notice(cache_path, config.train_data, cache_files.DAMAGED, error.reason)
    _prepare(config, cache_path, seq_len)
    return cache_path, load_cache(cache_path)


def _warn_conflicting_duplicates(path, cache) -> None:
    found = conflicting_duplicates(cache.codes, cache.expression)
    if found:
        logging.warning(
            "%s: %d sequences occur more than once with different expression values "
            "(%d rows; compared as encoded to %d bases); training keeps every row",
            path, found.sequences, found.rows, cache.seq_len)


def _warn_validation_rows_that_train(path, seq_len, train_codes, validation_codes) -> None:
    """The split is by row: a sequence listed twice can validate and train at once."""
    shared = rows_also_in(validation_codes, train_codes)
    if shared:
        logging.warning(
            "%s: %d of the %d validation rows have an exact copy among the training rows "
            "(compared as encoded to %d bases): val_pearson, which picks the best epoch, "
            "is optimistic on them; remove duplicate sequences from the file to avoid it",
            path, shared, len(validation_codes), seq_len)


def _split_sha256(train: np.ndarray, validation: np.ndarray) -> str:
    """Which rows train and which validate: resuming needs the same split."""
    digest = hashlib.sha256(np.asarray(train, dtype="<i8").tobytes())
    digest.update(b"|")
    digest.update(np.asarray(validation, dtype="<i8").tobytes())
    return digest.hexdigest()


def load_training_rows(config: TrainingConfig, seq_len: int) -> TrainingRows:
    """Filter, split and standardise the cached rows, all seeded by config.seed."""
    if seq_len < 1:
        raise ConfigurationError(f"seq_len must be >= 1, got {seq_len}")
    if config.validation_fraction <= 0:
        raise ConfigurationError("validation_fraction must be > 0: the best model is "
                                 "chosen by val_pearson")
    ensure_train_file(config)
    cache_path, cache = _load_cache(config, seq_len)
    _check_given_cache(config, cache_path, cache)
    if cache.seq_len != seq_len:
        raise ConfigurationError(f"{cache_path} holds sequences of length {cache.seq_len} "
                                 f"but the model expects seq_len={seq_len}")
    kept = np.flatnonzero(singleton_keep_mask(cache.singleton, config.singleton_keep_prob,
                                              config.seed))
    train, validation = split_train_validation(kept, config.validation_fraction, config.seed)
    if len(train) < 2 or len(validation) < 2:
        raise ConfigurationError(f"{cache_path}: too few rows to train ({len(train)} "
                                 f"train, {len(validation)} validation after filtering and "
                                 "splitting)")
    _warn_conflicting_duplicates(config.train_data, cache)
    train_codes, validation_codes = cache.codes[train], cache.codes[validation]
    _warn_validation_rows_that_train(config.train_data, cache.seq_len, train_codes,
                                     validation_codes)
    scaler = TargetScaler.fit(cache.expression[train])  # training rows only
    summary = {
        "train_data": os.path.abspath(config.train_data),
        "cache": os.path.abspath(cache_path),
        "source_sha256": cache.attrs.get("source_sha256"),
        "rows_in_cache": len(cache), "skipped_rows": cache.attrs.get("skipped_rows", 0),
        # None for a cache prepared before it was counted
        "rows_longer_than_seq_len": cache.attrs.get("rows_longer_than_seq_len"),
        "rows_after_singleton_filter": int(len(kept)),
        "train_rows": int(len(train)), "validation_rows": int(len(validation)),
        "split_sha256": _split_sha256(train, validation),
        "target_mean": scaler.mean, "target_std": scaler.std,
    }
    logging.info("rows: %d in cache, %d after singleton filter, %d train, %d validation",
                 len(cache), len(kept), len(train), len(validation))
    if len(kept) < len(cache):  # data that is not DREAM's can have whole-number values too
        logging.warning("%s: the singleton filter dropped %d of %d rows (singleton_keep_prob="
                        "%g keeps that share of the rows whose expression is a whole number, "
                        "DREAM's mark of a single-read measurement); with other data, keep "
                        "every row with singleton_keep_prob=1", config.train_data,
                        len(cache) - len(kept), len(cache), config.singleton_keep_prob)
    return TrainingRows(train_codes, scaler.transform(cache.expression[train]),
                        validation_codes, scaler.transform(cache.expression[validation]),
                        scaler, summary)
