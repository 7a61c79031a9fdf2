import gzip

import numpy as np
import pytest

from tests.conftest import REAL_TRAIN_ROWS
from dream_keras.data.readers import DataFormatError, iter_chunks, read_expression_file, read_sequence_file


def write(tmp_path, text, name="rows.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("text", [
    "ACGT\t1.5\nAC\t2\n",          # trailing newline
    "ACGT\t1.5\nAC\t2",            # none
    "ACGT\t1.5\r\nAC\t2\r\n",      # CRLF
])
def test_line_endings(tmp_path, text):
    sequences, expression = read_expression_file(write(tmp_path, text))
    assert sequences == ["ACGT", "AC"]
    np.testing.assert_array_equal(expression, [1.5, 2.0])


def test_gzip_detected_by_content(tmp_path):
    path = write(tmp_path, gzip.compress(b"ACGT\t3\nNNAC\t4.25\n"), name="rows.data")
    sequences, expression = read_expression_file(path)
    assert sequences == ["ACGT", "NNAC"] and expression.tolist() == [3.0, 4.25]


def test_sequence_n_and_na_are_not_missing_values(tmp_path):
    sequences, _ = read_expression_file(write(tmp_path, "NA\t1\nN\t2\nNAN\t3\n"))
    assert sequences == ["NA", "N", "NAN"]


def test_real_file_reads_every_row(real_train_file):
    sequences, expression = read_expression_file(real_train_file)
    assert len(sequences) == REAL_TRAIN_ROWS
    assert sequences[0].startswith("TGCATTTTTTTCACATC") and abs(expression[0] - 15.1823836007871) < 1e-12


@pytest.mark.parametrize("text, line, reason", [
    ("ACGT\t1\nACXT\t2\n", 2, "letter 'X' outside ACGTN"),
    ("ACGT\t1\nACGT\tabc\n", 2, "'abc' is not a finite number"),
    ("ACGT\t1\nACGT\t2\nACGT\tnan\n", 3, "'nan' is not a finite number"),
    ("ACGT\t1\nACGT\n", 2, "missing expression column"),
    ("ACGT\t1\n\nACGT\t2\n", 2, "empty line"),
    ("\t1\n", 1, "empty sequence"),
    ("ACGT\t1\tx\n", 1, "found 3"),
    ("ACGT\t1\nA\t1\tx\ty\n", 2, "found 4"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as error:
        read_expression_file(path)
    assert error.value.line == line
    assert reason in str(error.value)
    assert str(error.value).startswith(f"{path}:{line}: ")


def test_line_numbers_are_global_across_chunks(tmp_path):
    rows = ["ACGT\t1"] * 25 + ["ACGQ\t1"]
    path = write(tmp_path, "\n".join(rows))
    with pytest.raises(DataFormatError) as error:
        list(iter_chunks(path, chunk_rows=7))
    assert error.value.line == 26


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataFormatError, match="empty"):
        read_expression_file(write(tmp_path, ""))
    with pytest.raises(DataFormatError, match="no such file"):
        read_expression_file(tmp_path / "absent.txt")


def test_skip_bad_rows_counts_them(tmp_path):
    path = write(tmp_path, "ACGT\t1\nAXGT\t2\nACGT\tx\nGG\t4\n")
    skipped = []
    sequences, expression = read_expression_file(path, skip_bad_rows=True, skipped=skipped)
    assert sequences == ["ACGT", "GG"] and expression.tolist() == [1.0, 4.0]
    assert [e.line for e in skipped] == [2, 3]


def test_sequence_only_file_ignores_a_label_column(tmp_path):
    assert read_sequence_file(write(tmp_path, "ACGT\nggn\n")) == ["ACGT", "ggn"]
    assert read_sequence_file(write(tmp_path, "ACGT\t1\n", "b.txt")) == ["ACGT"]
    with pytest.raises(DataFormatError, match=":2: letter '-'"):
        read_sequence_file(write(tmp_path, "ACGT\nA-G\n", "c.txt"))


def test_chunk_line_numbers(tmp_path):
    path = write(tmp_path, "A\t1\nC\t2\nG\t3\n")
    chunks = list(iter_chunks(path, chunk_rows=2))
    assert [c.line_numbers.tolist() for c in chunks] == [[1, 2], [3]]
