"""A cache that is not a current cache of its source is rebuilt from it with a notice
(damaged, stale, or unreadable at the default path; a file that is not a cache is never
replaced), never silently used; a
killed preparation leaves nothing that a later one trips on; training warns about
sequences repeated with conflicting values."""
import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from dream_keras import atomic_files
from dream_keras.data import cache as cache_files
from dream_keras.data.cache import inspect_cache, load_cache, prepare_cache
from dream_keras.data.duplicates import conflicting_duplicates
from dream_keras.data.training_data import load_training_rows, resolve_cache
from dream_keras.errors import DataFormatError, OutputExistsError
from dream_keras.training_config import TrainingConfig
from tests.conftest import REAL_TRAIN_ROWS


@pytest.fixture
def source(tmp_path, real_train_file):
    path = tmp_path / "train.txt"
    shutil.copy(real_train_file, path)
    return path


def _config(source, cache_path=None):
    return TrainingConfig(train_data=str(source), output_dir="unused", cache_path=cache_path)


def _resolve(config, caplog, rows=REAL_TRAIN_ROWS):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
        path = resolve_cache(config, 110)
    assert len(load_cache(path)) == rows
    assert inspect_cache(path, config.train_data, 110)[0] == cache_files.CURRENT
    return path, caplog.text


def test_truncated_cache_is_rebuilt_with_a_notice(source, caplog):
    path, _ = _resolve(_config(source), caplog)
    whole = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(whole[:len(whole) // 2])
    state, why = inspect_cache(path, source, 110)
    assert state == cache_files.UNREADABLE and "truncated" in why
    with pytest.raises(DataFormatError, match="damaged HDF5 file, truncated or corrupt"):
        load_cache(path)  # not "not a dream_keras cache"
    _, log = _resolve(_config(source), caplog)
    assert f"cache {path} is unreadable (truncated or corrupt HDF5" in log
    assert f"rebuilding it from {source}" in log


def test_cache_with_fewer_rows_than_it_records_is_rebuilt(source, caplog):
    path, _ = _resolve(_config(source), caplog)
    with h5py.File(path, "r+") as h5:
        h5["expression"].resize(10, axis=0)
    assert inspect_cache(path, source, 110)[0] == cache_files.DAMAGED
    _, log = _resolve(_config(source), caplog)
    assert "is damaged (datasets" in log


def test_stale_cache_is_rebuilt(source, caplog):
    path, _ = _resolve(_config(source), caplog)
    with open(source, "a") as handle:
        handle.write("\nACGTACGT\t3.5")
    _, log = _resolve(_config(source), caplog, rows=REAL_TRAIN_ROWS + 1)
    assert "is stale (prepared from another version of train.txt)" in log


def test_a_cache_prepared_under_older_rules_for_valid_rows_is_rebuilt(source, tmp_path,
                                                                      caplog):
    """A cache from before a reader fix (no reader_version: NA rows and overflowing values
    were let in) is rebuilt, not reused; given directly as --train_data (nothing to
    rebuild it from) it gets a warning, and a non-finite value in it is refused."""
    path, _ = _resolve(_config(source), caplog)
    with h5py.File(path, "r+") as h5:
        del h5.attrs["reader_version"]
    assert inspect_cache(path, source, 110) == (
        cache_files.STALE, "prepared under other rules for valid rows (reader version 1, "
                           f"this release's {cache_files.READER_VERSION})")
    _, log = _resolve(_config(source), caplog)
    assert "is stale (prepared under other rules for valid rows" in log
    for version in (cache_files.READER_VERSION + 1, "2"):  # a newer release's; garbage
        with h5py.File(path, "r+") as h5:
            h5.attrs["reader_version"] = version
        assert inspect_cache(path, source, 110)[0] == cache_files.STALE

    given = tmp_path / "given.h5"
    shutil.copy(path, given)
    with h5py.File(given, "r+") as h5:
        del h5.attrs["reader_version"]
        h5["expression"][5] = np.inf
    config = TrainingConfig(train_data=str(given), output_dir="unused")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="absl"), \
            pytest.raises(DataFormatError, match=r"given\.h5: row 6 of the cache holds the "
                                                 r"expression inf, not a finite number"):
        load_training_rows(config, 110)
    assert "was prepared under other rules for valid rows (reader version 1" in caplog.text


def test_an_empty_file_at_the_default_path_is_filled_with_the_cache(source, caplog):
    path = f"{source}.seq110.h5"
    open(path, "wb").close()
    assert _resolve(_config(source), caplog)[0] == path


@pytest.mark.parametrize("content", [b"not a cache at all", "h5"])
def test_a_file_of_yours_at_the_default_path_is_never_replaced(source, content):
    """Every cache the package ever wrote has the cache's attributes: anything else at
    FILE.txt.seq110.h5 (text, someone's HDF5) is the user's, refused and left as it was."""
    path = f"{source}.seq110.h5"
    if content == "h5":
        with h5py.File(path, "w") as h5:
            h5["x"] = [1]
    else:
        open(path, "wb").write(content)
    before = open(path, "rb").read()
    with pytest.raises(OutputExistsError, match=r"seq110\.h5 exists and is not a dream_keras "
                                                r"cache .*it is left as it is: move it"):
        resolve_cache(_config(source), 110)
    assert open(path, "rb").read() == before


def test_a_foreign_file_at_a_chosen_cache_path_is_left_alone(source, tmp_path, caplog):
    def with_format_version(path):  # a common attribute name: not enough to be ours
        with h5py.File(path, "w") as h5:
            h5["important"] = np.arange(10)
            h5.attrs["format_version"] = cache_files.FORMAT_VERSION

    for name, write in (("theirs.h5", lambda p: h5py.File(p, "w").close()),
                        ("versioned.h5", with_format_version),
                        ("notes.h5", lambda p: open(p, "w").write("my notes"))):
        write(tmp_path / name)
        before = (tmp_path / name).read_bytes()
        with pytest.raises(OutputExistsError, match=f"{tmp_path / name} exists and is not "
                                                    "a dream_keras cache"):
            resolve_cache(_config(source, str(tmp_path / name)), 110)
        assert (tmp_path / name).read_bytes() == before
    # An unreadable HDF5 file there (truncated, corrupt) cannot be told from the user's:
    # left alone too. A cache of ours is never left truncated (it is renamed complete).
    path, _ = _resolve(_config(source, str(tmp_path / "mine.h5")), caplog)
    whole = open(path, "rb").read()
    open(path, "wb").write(whole[:4000])
    with pytest.raises(OutputExistsError, match="exists and cannot be read .*truncated or "
                                                "corrupt HDF5.*it is left as it is"):
        resolve_cache(_config(source, path), 110)
    assert open(path, "rb").read() == whole[:4000]
    # ... while an empty file, or a cache of ours whose rows are missing, is rebuilt.
    open(path, "wb").close()
    assert "is damaged (empty file)" in _resolve(_config(source, path), caplog)[1]
    with h5py.File(path, "r+") as h5:
        h5["singleton"].resize(10, axis=0)
    assert "is damaged (datasets" in _resolve(_config(source, path), caplog)[1]


def test_a_cache_prepared_skipping_bad_rows_is_not_used_by_a_strict_run(tmp_path, caplog):
    """A strict run stops at the bad row as it would without a cache, and the cache that
    skipped it stays for the runs that skip too."""
    source = tmp_path / "bad.txt"
    source.write_text("ACGT\t1\nACXT\t2\nGGCC\t3\nTTAA\t4\n")
    skipping = TrainingConfig(train_data=str(source), output_dir="unused", skip_bad_rows=True)
    path = resolve_cache(skipping, 110)
    assert load_cache(path).attrs["skipped_rows"] == 1
    before = open(path, "rb").read()
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: letter 'X'"):
        resolve_cache(_config(source), 110)
    assert open(path, "rb").read() == before
    assert resolve_cache(skipping, 110) == path  # reused


def test_a_cache_that_cannot_be_written_is_one_line_naming_it(source, tmp_path):
    from dream_keras.file_errors import FileAccessError

    inside_a_file = f"{source}/cache.h5"  # root ignores permissions: a file as its folder
    with pytest.raises(FileAccessError, match=f"^{inside_a_file}: cannot write: "):
        resolve_cache(_config(source, inside_a_file), 110)
    taken = f"{source}.seq110.h5"
    os.mkdir(taken)  # a directory at the default cache path: not ours, left alone
    with pytest.raises(OutputExistsError, match=f"^{taken} exists and is not a dream_keras "
                                                r"cache \(not a regular file\)"):
        resolve_cache(_config(source), 110)
    assert sorted(os.listdir(tmp_path)) == sorted([source.name, os.path.basename(taken)])


def test_cache_path_equal_to_the_training_file_is_refused(source):
    with pytest.raises(ValueError, match="is the training file itself"):
        resolve_cache(_config(source, str(source)), 110)


def test_a_killed_preparation_leaves_nothing_in_the_way(source, tmp_path):
    output = tmp_path / "killed.h5"
    # Killed (SIGKILL) after its first chunk: the partial file stays, no cache appears.
    script = textwrap.dedent(f"""
        import os, signal
        from dream_keras.data import cache
        real_append = cache._append
        def append_then_die(*args):
            real_append(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        cache._append = append_then_die
        cache.prepare_cache({str(source)!r}, {str(output)!r}, chunk_rows=500)
        """)
    killed = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert killed.returncode == -9
    partials = [name for name in os.listdir(tmp_path)
                if atomic_files.is_partial(name) and name.endswith(".killed.h5")]
    assert len(partials) == 1 and not output.exists()
    prepare_cache(source, output)
    assert not (tmp_path / partials[0]).exists()
    assert len(load_cache(output)) == REAL_TRAIN_ROWS


def test_a_live_preparations_partial_file_is_left_alone(source, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until reused)
    live = tmp_path / f".partial-{atomic_files.HOST}-{os.getppid()}.out.h5"
    other_host = tmp_path / f".partial-elsewhere-{dead.pid}.out.h5"  # its pid is not ours
    killed = tmp_path / f".partial-{atomic_files.HOST}-{dead.pid}.out.h5"
    killed_by_0_1 = tmp_path / f"out.h5.partial-{atomic_files.HOST}-{dead.pid}"  # old name
    for path in (live, other_host, killed, killed_by_0_1):
        path.write_bytes(b"being written")
    prepare_cache(source, tmp_path / "out.h5")
    assert live.read_bytes() == b"being written" and other_host.exists()
    assert not killed.exists() and not killed_by_0_1.exists()


def _brute_force(codes, values):
    seen = {}
    for row, value in zip(map(bytes, codes), values):
        seen.setdefault(row, []).append(value)
    groups = [v for v in seen.values() if len(set(v)) > 1]
    return len(groups), sum(map(len, groups))


def test_conflicting_duplicates_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2, size=(3000, 9)).astype(np.uint8)  # many repeats
    values = rng.integers(0, 3, size=3000).astype(np.float32)
    found = conflicting_duplicates(codes, values)
    assert (found.sequences, found.rows) == _brute_force(codes, values)
    assert found.sequences > 10
    same = conflicting_duplicates(codes, np.zeros(3000, np.float32))
    assert not same and (same.sequences, same.rows) == (0, 0)  # repeats, equal values


def test_training_warns_about_conflicting_duplicates(tmp_path, real_train_file, caplog):
    lines = real_train_file.read_text().splitlines()
    sequence = lines[0].split("\t")[0]
    extra = [f"{sequence}\t99.5", f"{lines[1].split(chr(9))[0]}\t{lines[1].split(chr(9))[1]}"]
    source = tmp_path / "dups.txt"
    source.write_text("\n".join(lines + extra) + "\n")
    config = TrainingConfig(train_data=str(source), output_dir="unused",
                            validation_fraction=0.1)
    with caplog.at_level(logging.WARNING, logger="absl"):
        load_training_rows(config, 110)
    # Row 1 repeated with another value (2 rows); row 2 repeated with its own value: fine.
    assert (f"{source}: 1 sequences occur more than once with different expression "
            "values (2 rows; compared as encoded to 110 bases); training keeps every row"
            ) in caplog.text


def test_validation_rows_with_a_copy_among_training_rows_are_counted_and_named(
        tmp_path, real_train_file, caplog):
    """The split is by row: a sequence listed twice (same value or not) can validate and
    train at once, which makes val_pearson optimistic; training says how many."""
    from dream_keras.data.duplicates import rows_also_in

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 2, size=(500, 9)).astype(np.uint8)  # many repeats
    reference = rng.integers(0, 2, size=(300, 9)).astype(np.uint8)
    known = {row.tobytes() for row in reference}
    assert rows_also_in(codes, reference) == sum(row.tobytes() in known for row in codes) > 10
    assert rows_also_in(codes[:0], reference) == 0
    lines = real_train_file.read_text().splitlines()[:400]
    source = tmp_path / "twice.txt"
    source.write_text("\n".join(lines + lines) + "\n")  # every row listed twice
    config = TrainingConfig(train_data=str(source), output_dir="unused",
                            validation_fraction=0.1, singleton_keep_prob=1.0)
    with caplog.at_level(logging.WARNING, logger="absl"):
        rows = load_training_rows(config, 110)
    train = {row.tobytes() for row in rows.train_codes}
    shared = sum(row.tobytes() in train for row in rows.validation_codes)
    assert shared > 0
    assert (f"{source}: {shared} of the {len(rows.validation_codes)} validation rows have an "
            "exact copy among the training rows") in caplog.text


def test_rows_the_singleton_filter_drops_are_counted_in_a_warning(tmp_path, caplog):
    """Whole-number values are DREAM's single-read mark; other data has them too, and the
    default filter used to drop half of them with only an info line."""
    source = tmp_path / "rounded.txt"
    rng = np.random.default_rng(0)
    source.write_text("".join(f"{''.join(rng.choice(list('ACGT'), 20))}\t{v}\n"
                              for v in [1.0, 2.0, 3.0, 4.0] * 10 + [0.5] * 40))
    config = TrainingConfig(train_data=str(source), output_dir="unused",
                            validation_fraction=0.2, singleton_keep_prob=0.5)
    with caplog.at_level(logging.WARNING, logger="absl"):
        rows = load_training_rows(config, 110)
    dropped = 80 - rows.summary["rows_after_singleton_filter"]
    assert 0 < dropped < 40
    assert (f"{source}: the singleton filter dropped {dropped} of 80 rows "
            "(singleton_keep_prob=0.5 keeps") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="absl"):
        load_training_rows(dataclasses.replace(config, singleton_keep_prob=1.0), 110)
    assert "singleton filter" not in caplog.text
