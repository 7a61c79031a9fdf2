"""The HDF5 cache of a training file: encoded sequences, raw expression, singleton flags.

Format (FORMAT_VERSION 1), documented in the README:
  dataset `sequences`  uint8   [N, seq_len]  codes A=0 C=1 G=2 T=3 N=4, already trimmed to
                                             the last seq_len bases / left-padded with N
  dataset `expression` float32 [N]           the raw measured value
  dataset `singleton`  bool    [N]           True where the value is a whole number
  attributes: format_version, reader_version, seq_len, num_rows, skipped_rows,
              rows_longer_than_seq_len, longest_row, source_name, source_size,
              source_sha256, package_version
Rows are ALL valid rows of the source in file order; filtering and splitting happen at
training time, so one cache serves every recipe.

Preparation streams the source in chunks of `chunk_rows` rows, so peak memory is bounded by
the chunk size (about 1 KB per row of working memory: 200k rows ~ 200 MB), not the file.
It writes a temporary file beside the cache and renames it at the end (atomic_files), so a
cache that exists is complete; a killed preparation's temporary file is removed by the
next one.
`inspect_cache` tells a current cache from a missing, stale, damaged, unreadable or
foreign one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import threading
import time

import h5py
import numpy as np
from absl import logging

from dream_keras import atomic_files
from dream_keras.data.readers import DEFAULT_CHUNK_ROWS, DataFormatError, iter_chunks
from dream_keras.data.sequences import DEFAULT_SEQ_LEN
from dream_keras.errors import OutputExistsError
from dream_keras.version import __version__

FORMAT_VERSION = 1
# The rules that decide which rows a cache holds and how they are encoded (the readers'
# checks, sequences.encode): raise it whenever they change, so that a cache prepared under
# older rules is rebuilt instead of reused. 2: missing-value markers (NA, nan) refused as
# sequences and expression values beyond float32 refused; caches without it are 1.
READER_VERSION = 2
_H5_CHUNK_ROWS = 8192
_DATASETS = ("sequences", "expression", "singleton")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# What inspect_cache finds at a cache path.
CURRENT, MISSING, STALE, DAMAGED, FOREIGN = "current", "missing", "stale", "damaged", "foreign"
UNREADABLE = "unreadable"
# A file is taken for a dream_keras cache only when it holds every one of these attributes
# (a lone `format_version` is a common name in other HDF5 files).
_CACHE_ATTRS = ("format_version", "seq_len", "num_rows", "skipped_rows", "source_size",
                "source_sha256", "package_version")


@dataclasses.dataclass
class ExpressionCache:
    """A cache loaded into memory: 110 bytes per row for the codes, never one-hot."""

    codes: np.ndarray        # uint8 [N, seq_len]
    expression: np.ndarray   # float32 [N]
    singleton: np.ndarray    # bool [N]
    attrs: dict

    @property
    def seq_len(self) -> int:
        return int(self.codes.shape[1])

    def __len__(self) -> int:
        return len(self.expression)


def file_sha256(path, block_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


class _ProgressLine:
    """One self-overwriting progress line on a terminal (silent when not a terminal)."""

    def __init__(self, label: str, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.start, self.rows = label, time.monotonic(), 0

    def update(self, rows: int, bytes_read: int, total_bytes: int):
        self.rows = rows
        if self.enabled:
            rate = rows / max(time.monotonic() - self.start, 1e-9)
            percent = 100.0 * bytes_read / max(total_bytes, 1)
            self.stream.write(f"\r{self.label}: {rows:,} rows ({percent:5.1f}%), "
                              f"{rate:,.0f} rows/s")
            self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def prepare_cache(input_path, output_path, *, seq_len: int = DEFAULT_SEQ_LEN,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS, skip_bad_rows: bool = False,
                  overwrite: bool = False, show_progress: bool | None = None) -> dict:
    """Convert a `sequence<TAB>expression` text file into the HDF5 cache; returns its attrs.

    Writes a temporary file beside `output_path` and renames it at the end, so an
    interrupted run never leaves a cache that looks complete. Refuses to replace an
    existing file unless `overwrite`.
    """
    output_path = atomic_files.destination(output_path)  # through a symlink, link kept
    if os.path.exists(output_path) and not overwrite:
        raise OutputExistsError(f"{output_path} exists; pass overwrite=True (--overwrite) "
                              "to replace it")
    if not os.path.isfile(input_path):
        raise DataFormatError(input_path, None, "no such file")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    # Hash the source on a second thread while the main thread parses it (hashlib drops
    # the GIL on large blocks), so the checksum costs almost no wall time.
    checksum = {}
    hasher = threading.Thread(target=lambda: checksum.update(sha=file_sha256(input_path)))
    hasher.start()
    skipped = []
    progress = _ProgressLine(f"prepare {os.path.basename(input_path)}", show_progress)
    _remove_legacy_partials(output_path)
    # Per-process temporary name (atomic_files): concurrent workers preparing the same
    # cache never collide, and each removes only dead writers' leftovers of its own host.
    try:
        with atomic_files.replacing(output_path) as partial_path, \
                h5py.File(partial_path, "w") as h5:
            datasets = _create_datasets(h5, seq_len)
            num_rows, longer, longest = 0, 0, 0
            for chunk in iter_chunks(input_path, chunk_rows=chunk_rows,
                                     skip_bad_rows=skip_bad_rows, skipped=skipped,
                                     encode_to=seq_len,
                                     on_progress=lambda done, total: progress.update(
                                         num_rows, done, total)):
                num_rows = _append(datasets, chunk, num_rows)
                lengths = np.fromiter(map(len, chunk.sequences), np.int64,
                                      len(chunk.sequences))
                longer += int((lengths > seq_len).sum())
                longest = max(longest, int(lengths.max(initial=0)))
            if num_rows == 0:  # every row skipped: an empty cache would only fail later
                raise DataFormatError(input_path, None, f"no usable row: all {len(skipped)} "
                                      f"rows are bad (first: {skipped[0] if skipped else '-'})")
            progress.update(num_rows, 1, 1)
            hasher.join()
            attrs = {
                "format_version": FORMAT_VERSION, "reader_version": READER_VERSION,
                "seq_len": seq_len, "num_rows": num_rows,
                "skipped_rows": len(skipped), "rows_longer_than_seq_len": longer,
                "longest_row": longest,
                "source_name": os.path.basename(input_path),
                "source_size": os.path.getsize(input_path),
                "source_sha256": checksum["sha"], "package_version": __version__,
            }
            h5.attrs.update(attrs)
    finally:
        progress.close()
        hasher.join()
    if skipped:
        logging.warning("skipped %d bad rows of %s; first: %s", len(skipped), input_path,
                        skipped[0])
    if longer:  # the window rule keeps their last seq_len bases: say so, once per file
        logging.warning("%s: %d of %d rows (the longest %d bases) are longer than seq_len=%d: "
                        "the model sees only their last %d bases", input_path, longer,
                        num_rows, longest, seq_len, seq_len)
    return attrs


def _remove_legacy_partials(output_path) -> None:
    """Release 0.1.0 named a preparation's temporary file `<cache>.partial-<host>-<pid>`
    (as large as the cache): remove those a killed preparation of this host left."""
    directory, name = os.path.split(os.path.abspath(output_path))
    prefix = f"{name}.partial-{atomic_files.HOST}-"
    for entry in os.listdir(directory):
        pid = entry[len(prefix):] if entry.startswith(prefix) else ""
        if pid.isdigit() and not atomic_files.process_alive(int(pid)):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:
                pass


def _create_datasets(h5, seq_len):
    def resizable(name, dtype, shape):
        return h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                                 dtype=dtype, chunks=(_H5_CHUNK_ROWS, *shape))

    return {"sequences": resizable("sequences", np.uint8, (seq_len,)),
            "expression": resizable("expression", np.float32, ()),
            "singleton": resizable("singleton", bool, ())}


def _append(datasets, chunk, num_rows) -> int:
    new_rows = num_rows + len(chunk.sequences)
    columns = {"sequences": chunk.codes,
               "expression": chunk.expression.astype(np.float32),
               # Whole numbers mark rows seen in one sort bin (the original's 'singletons').
               "singleton": chunk.expression == np.floor(chunk.expression)}
    for name, values in columns.items():
        datasets[name].resize(new_rows, axis=0)
        datasets[name][num_rows:new_rows] = values
    return new_rows


def load_cache(path) -> ExpressionCache:
    """Read a whole cache into memory (codes stay uint8: ~110 bytes per row)."""
    if not os.path.isfile(path):
        raise DataFormatError(path, None, "no such file")
    try:
        with h5py.File(path, "r") as h5:
            for name in _DATASETS:
                if name not in h5:
                    raise DataFormatError(path, None, f"not a dream_keras cache: dataset "
                                                      f"{name!r} is missing")
            return ExpressionCache(h5["sequences"][...], h5["expression"][...],
                                   h5["singleton"][...], _plain(h5.attrs))
    except OSError as error:
        raise DataFormatError(path, None, _unreadable(path, error)) from None


def cache_source_sha256(path) -> str | None:
    """The checksum of the text file a cache was prepared from (its attrs only: the rows
    are not read); None when the cache records none."""
    try:
        with h5py.File(path, "r") as h5:
            value = h5.attrs.get("source_sha256")
    except OSError as error:
        raise DataFormatError(path, None, _unreadable(path, error)) from None
    return None if value is None else str(value)


def _unreadable(path, error) -> str:
    if _has_hdf5_signature(path):
        return f"damaged HDF5 file, truncated or corrupt ({error})"
    return f"not an HDF5 file ({error})"


def _has_hdf5_signature(path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def inspect_cache(cache_path, source_path, seq_len: int, *,
                  skip_bad_rows: bool = True) -> tuple[str, str]:
    """(state, why) of the file at `cache_path` as the cache of `source_path`, for a reader
    that skips bad rows (`skip_bad_rows`) or must stop at the first one:

    CURRENT     a complete cache prepared from exactly this source (size, sha256) and
                seq_len
    MISSING     no file
    STALE       a readable dream_keras cache of another source, seq_len or format, or one
                whose preparation skipped bad rows, for a reader that must not
    DAMAGED     empty, or a dream_keras cache whose datasets do not match its row count
    UNREADABLE  HDF5 that cannot be read (truncated, corrupt): whose file it was cannot
                be told (a cache of ours is never left truncated: it is renamed complete)
    FOREIGN     a readable HDF5 file that is not a dream_keras cache (it lacks one of the
                cache's attributes), or not HDF5 at all
    """
    if not os.path.exists(cache_path):
        return MISSING, "no file"
    if not os.path.isfile(cache_path):
        return FOREIGN, "not a regular file"
    if os.path.getsize(cache_path) == 0:
        return DAMAGED, "empty file"
    try:
        with h5py.File(cache_path, "r") as h5:
            attrs = _plain(h5.attrs)
            if not all(name in attrs for name in _CACHE_ATTRS):
                return FOREIGN, "an HDF5 file that is not a dream_keras cache"
            lengths = {name: h5[name].shape[0] if name in h5 else None
                       for name in _DATASETS}
    except OSError as error:
        if not _has_hdf5_signature(cache_path):
            return FOREIGN, "not an HDF5 file"
        return UNREADABLE, f"truncated or corrupt HDF5 ({error})"
    if attrs.get("format_version") != FORMAT_VERSION:
        return STALE, f"cache format {attrs.get('format_version')}, not {FORMAT_VERSION}"
    if reader_version(attrs) != READER_VERSION:
        return STALE, (f"prepared under other rules for valid rows (reader version "
                       f"{attrs.get('reader_version', 1)}, this release's {READER_VERSION})")
    if set(lengths.values()) != {attrs.get("num_rows")}:
        return DAMAGED, (f"datasets {lengths} do not match its {attrs.get('num_rows')} "
                         "rows")
    if attrs.get("seq_len") != seq_len:
        return STALE, f"sequences of length {attrs.get('seq_len')}, not {seq_len}"
    if (attrs.get("source_size") != os.path.getsize(source_path)
            or attrs.get("source_sha256") != file_sha256(source_path)):
        return STALE, f"prepared from another version of {os.path.basename(source_path)}"
    if attrs.get("skipped_rows") and not skip_bad_rows:
        # A strict run must stop at the first bad row, which preparing again does (the
        # cache is only replaced if that succeeds).
        return STALE, "prepared with --skip_bad_rows, which dropped rows"
    return CURRENT, "prepared from this source"


def reader_version(attrs: dict) -> int | None:
    """The READER_VERSION a cache was prepared under (1: before the attribute existed;
    None: not a version number)."""
    value = attrs.get("reader_version", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plain(attrs) -> dict:
    return {key: (value.item() if isinstance(value, np.generic) else value)
            for key, value in attrs.items()}


def cache_is_current(cache_path, source_path, seq_len: int) -> bool:
    """True when `cache_path` is a complete cache prepared from exactly this source."""
    return inspect_cache(cache_path, source_path, seq_len)[0] == CURRENT
