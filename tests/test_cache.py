import hashlib
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dream_keras.data import cache as cache_files
from dream_keras.data.cache import cache_is_current, load_cache, prepare_cache
from dream_keras.data.readers import DataFormatError, read_expression_file
from dream_keras.version import __version__
from tests.conftest import REAL_TRAIN_ROWS


@pytest.fixture(scope="module")
def real_cache(real_train_file, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "train.h5"
    prepare_cache(real_train_file, path, chunk_rows=1000)  # several chunks
    return path


def test_real_file_rows_sequences_and_values(real_cache, real_train_file):
    cache = load_cache(real_cache)
    sequences, expression = read_expression_file(real_train_file)
    assert len(cache) == len(sequences) == REAL_TRAIN_ROWS
    assert cache.codes.shape == (REAL_TRAIN_ROWS, 110) and cache.codes.dtype == np.uint8
    np.testing.assert_array_equal(cache.expression, expression.astype(np.float32))
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[cache.codes]
    for row in (0, 17, REAL_TRAIN_ROWS - 1, *np.flatnonzero([len(s) != 110 for s in sequences])[:50]):
        text = letters[row].tobytes().decode()
        original = sequences[row].upper()
        if len(original) >= 110:
            assert text == original[-110:]
        else:
            assert text == "N" * (110 - len(original)) + original


def test_singleton_flags_and_fraction(real_cache):
    cache = load_cache(real_cache)
    np.testing.assert_array_equal(cache.singleton, cache.expression == np.round(cache.expression))
    assert 0.55 < cache.singleton.mean() < 0.61  # 58 % of real rows are whole numbers


def test_attributes(real_cache, real_train_file):
    attrs = load_cache(real_cache).attrs
    assert attrs["seq_len"] == 110 and attrs["num_rows"] == REAL_TRAIN_ROWS and attrs["skipped_rows"] == 0
    assert attrs["source_name"] == "de_boer_demo_train.head3000.txt"
    assert attrs["source_size"] == os.path.getsize(real_train_file)
    assert attrs["source_sha256"] == hashlib.sha256(real_train_file.read_bytes()).hexdigest()
    assert attrs["package_version"] == __version__
    assert attrs["reader_version"] == cache_files.READER_VERSION
    # 18 of the 3,000 real rows are longer than 110 bases (up to 135): cut to their last 110
    assert (attrs["rows_longer_than_seq_len"], attrs["longest_row"]) == (18, 135)
    assert cache_is_current(real_cache, real_train_file, 110)
    assert not cache_is_current(real_cache, real_train_file, 100)


def test_refuses_to_overwrite_and_keeps_the_file(real_cache, real_train_file):
    before = real_cache.read_bytes()
    with pytest.raises(FileExistsError):
        prepare_cache(real_train_file, real_cache)
    assert real_cache.read_bytes() == before


def test_bad_input_leaves_no_output(tmp_path):
    source = tmp_path / "bad.txt"
    source.write_text("ACGT\t1\nACGT\tx\n")
    with pytest.raises(DataFormatError, match="bad.txt:2:"):
        prepare_cache(source, tmp_path / "out.h5")
    assert sorted(os.listdir(tmp_path)) == ["bad.txt"]


def test_skip_bad_rows_recorded(tmp_path):
    source = tmp_path / "rows.txt"
    source.write_text("ACGT\t1\nACGT\tx\nAC\t2.5\n")
    attrs = prepare_cache(source, tmp_path / "out.h5", seq_len=4, skip_bad_rows=True)
    cache = load_cache(tmp_path / "out.h5")
    assert attrs["skipped_rows"] == 1 and len(cache) == 2
    np.testing.assert_array_equal(cache.codes, [[0, 1, 2, 3], [4, 4, 0, 1]])
    np.testing.assert_array_equal(cache.singleton, [True, False])
    # Every row bad (columns swapped): refused, no empty cache left to fail training later.
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("1\tACGT\n2\tACGA\n")
    with pytest.raises(DataFormatError, match=r"swapped.txt: no usable row: all 2 rows are bad"):
        prepare_cache(swapped, tmp_path / "empty.h5", skip_bad_rows=True)
    assert not (tmp_path / "empty.h5").exists()
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]


def test_not_a_cache(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = [1]
    with pytest.raises(DataFormatError, match="'sequences' is missing"):
        load_cache(tmp_path / "other.h5")


def test_cli_writes_cache_without_importing_tensorflow(tmp_path, real_train_file):
    output = tmp_path / "cli.h5"
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "dream_keras.cli.prepare",
                             f"--input={real_train_file}", f"--output={output}"],
                            capture_output=True, text=True, timeout=120, check=True)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "dream_keras.data.cache" in imported
    assert not {"tensorflow", "keras"} & imported
    assert load_cache(output).attrs["num_rows"] == REAL_TRAIN_ROWS
    refused = subprocess.run([sys.executable, "-m", "dream_keras.cli.prepare",
                              f"--input={real_train_file}", f"--output={output}"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "exists" in refused.stderr


def test_cli_reports_bad_input_in_one_line(tmp_path):
    source = tmp_path / "bad.txt"
    source.write_text("ACGT\t1\nACGT\t\n")
    result = subprocess.run([sys.executable, "-m", "dream_keras.cli.prepare", f"--input={source}",
                             f"--output={tmp_path / 'o.h5'}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {source}:2: missing expression column (expected sequence<TAB>expression)"


def test_second_real_file(dream_dir, tmp_path):
    source = dream_dir / "train_sample" / "camformer_demo_test.txt"
    attrs = prepare_cache(source, tmp_path / "camformer.h5")
    cache = load_cache(tmp_path / "camformer.h5")
    sequences, expression = read_expression_file(source)
    assert attrs["num_rows"] == len(cache) == len(sequences) == 1000
    np.testing.assert_array_equal(cache.expression, expression.astype(np.float32))
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[cache.codes]
    expected = [s.upper()[-110:].rjust(110, "N") for s in sequences]
    assert [row.tobytes().decode() for row in letters] == expected


def test_rows_longer_than_the_window_are_counted_in_a_warning(tmp_path, caplog):
    import logging

    source = tmp_path / "long.txt"
    source.write_text("ACGT\t1.5\n" + "A" * 12 + "\t2.5\n" + "C" * 15 + "\t3.5\n")
    with caplog.at_level(logging.WARNING, logger="absl"):
        attrs = prepare_cache(source, tmp_path / "long.h5", seq_len=10)
    assert (attrs["rows_longer_than_seq_len"], attrs["longest_row"]) == (2, 15)
    assert (f"{source}: 2 of 3 rows (the longest 15 bases) are longer than seq_len=10: the "
            "model sees only their last 10 bases") in caplog.text
