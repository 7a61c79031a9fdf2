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


def test_missing_value_markers_are_refused_and_n_letters_are_bases(tmp_path):
    """R's NA and pandas' nan, written into an empty cell, are spelled in ACGTN letters:
    they used to be read (and predicted, and trained on) as 2- and 3-base sequences."""
    sequences, _ = read_expression_file(write(tmp_path, "N\t2\nNNA\t3\nNANN\t4\n"))
    assert sequences == ["N", "NNA", "NANN"]
    for marker, line in (("NA", 2), ("nan", 2), ("NaN", 2)):
        path = write(tmp_path, f"ACGT\t1\n{marker}\t2\n")
        with pytest.raises(DataFormatError) as error:
            read_expression_file(path)
        assert str(error.value) == (f"{path}:{line}: sequence {marker!r} is a missing-value "
                                    "marker (NA, nan), not a sequence")
    skipped = []
    sequences, _ = read_expression_file(write(tmp_path, "ACGT\t1\nna\t2\nAC\t3\n"),
                                        skip_bad_rows=True, skipped=skipped)
    assert sequences == ["ACGT", "AC"] and [e.line for e in skipped] == [2]


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
    # Line 1's surplus fields, which pandas' C parser drops silently, are counted too.
    ("ACGT\t1\t\t\t7\nA\t1\n", 1, "found 5"),
    ("ACGT\t1\nACGT\t1e39\n", 2, "'1e39' is beyond float32's range"),  # the cache's type
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


@pytest.mark.parametrize("chunk_rows", [2, 100])
def test_skip_bad_rows_drops_rows_of_any_width_and_keeps_line_numbers(tmp_path, chunk_rows):
    """Rows of 4+ fields stop pandas' C parser, on line 1 it drops them silently: both are
    skipped and counted like any bad row, and the rows after them keep their lines."""
    path = write(tmp_path, "ACGT\t1\t\t9\nCC\t2\nA\t3\tx\nGG\t4\t5\t6\nTT\t5\n\nAC\t6")
    skipped = []
    chunks = list(iter_chunks(path, chunk_rows=chunk_rows, skip_bad_rows=True, skipped=skipped))
    assert sum((c.sequences for c in chunks), []) == ["CC", "TT", "AC"]
    assert np.concatenate([c.expression for c in chunks]).tolist() == [2.0, 5.0, 6.0]
    assert np.concatenate([c.line_numbers for c in chunks]).tolist() == [2, 5, 7]
    assert [(e.line, e.reason) for e in skipped] == [
        (1, "expected at most 2 tab-separated columns, found 4"),
        (3, "expected at most 2 tab-separated columns, found 3"),
        (4, "expected at most 2 tab-separated columns, found 4"), (6, "empty line")]


def test_sequence_only_file_ignores_a_label_column(tmp_path):
    assert read_sequence_file(write(tmp_path, "ACGT\nggn\n")) == ["ACGT", "ggn"]
    assert read_sequence_file(write(tmp_path, "ACGT\t1\n", "b.txt")) == ["ACGT"]
    with pytest.raises(DataFormatError, match=":2: letter '-'"):
        read_sequence_file(write(tmp_path, "ACGT\nA-G\n", "c.txt"))


def test_chunk_line_numbers(tmp_path):
    path = write(tmp_path, "A\t1\nC\t2\nG\t3\n")
    chunks = list(iter_chunks(path, chunk_rows=2))
    assert [c.line_numbers.tolist() for c in chunks] == [[1, 2], [3]]


def test_a_quoted_header_name_holding_the_delimiter_keeps_the_columns_aligned(tmp_path):
    """Spreadsheet exports quote names such as "note, x": the header is split as the rows
    are (CSV quoting), so the `sequence` column is the one read, not its neighbour."""
    from dream_keras.data.readers import iter_pair_chunks, iter_sequence_chunks

    table = write(tmp_path, '"note, x",sequence,barcode\n"hi, there",ACGT,GGGG\n', "q.csv")
    assert [c.sequences for c in iter_sequence_chunks(table)] == [["ACGT"]]
    pairs = write(tmp_path, '"n, x",ref_sequence,alt_sequence,barcode\n"a, b",ACGT,ACGA,GGGG\n',
                  "p.csv")
    (chunk,) = iter_pair_chunks(pairs)
    assert (chunk.ref_sequences, chunk.alt_sequences) == (["ACGT"], ["ACGA"])
    tsv = write(tmp_path, '"a\tb"\tsequence\nx\tACGT\n', "q.tsv")
    assert [c.sequences for c in iter_sequence_chunks(tsv)] == [["ACGT"]]


@pytest.mark.parametrize("text, line, reason", [
    ("\n\nid,sequence\n1,ACGT\n2,AXC\n", 5, "letter 'X' outside ACGTN"),  # blank lines first
    ("id,sequence\n1\n", 2, "empty sequence"),  # a missing field is not an empty line
    ("id,sequence\n1,ACGT\n2,ACGT,5,6\n", 3, "4 fields, but the header has 2"),
    # pandas says "EOF inside string starting at row 1": the line is found again
    ('id,sequence\n1,ACGT\n2,"ACGT\n3,AAAA\n', 3, 'a quote (") opened on this line is '
                                                 'never closed'),
])
def test_table_problems_name_their_line(tmp_path, text, line, reason):
    from dream_keras.data.readers import iter_sequence_chunks

    path = write(tmp_path, text, "t.csv")
    with pytest.raises(DataFormatError) as error:
        list(iter_sequence_chunks(path))
    assert error.value.line == line and error.value.reason.startswith(reason)


def test_sequences_longer_than_the_csv_modules_field_limit_are_read(tmp_path):
    """The model keeps the last bases of any sequence: a 200,000-bp one is valid input in
    every format (the csv module's default field limit is 131,072 characters), and the
    limit is left as it was."""
    import csv

    from dream_keras.data.readers import TEXT, detect_input_format, iter_sequence_chunks

    long = "ACGT" * 50_000
    text = write(tmp_path, f"{long}\nACGT\n", "long.txt")
    assert detect_input_format(text) == TEXT
    assert [len(s) for c in iter_sequence_chunks(text) for s in c.sequences] == [200_000, 4]
    table = write(tmp_path, f"id,sequence\n1,{long}\n2,ACGT,5\n", "long.csv")
    with pytest.raises(DataFormatError) as error:  # the too-wide row, found past the long one
        list(iter_sequence_chunks(table))
    assert error.value.line == 3 and error.value.reason.startswith("3 fields, but the header")
    assert csv.field_size_limit() == 131_072
    # Overlapping reads in threads restore the limit once the last one ends.
    import threading

    from dream_keras.data import readers

    threads = [threading.Thread(target=lambda: [readers._header_fields(long)
                                                for _ in range(20)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert csv.field_size_limit() == 131_072


def test_a_byte_that_is_not_utf8_is_reported_at_its_line_and_can_be_skipped(tmp_path):
    """The decoder does not count lines: the reader finds the one holding the bad byte
    (plain and gzip), and with skip_bad_rows the row is skipped like any other bad row."""
    good = b"ACGTACGT\t1.5\n" * 6
    for name, opener in (("bad.txt", open), ("bad.txt.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wb") as handle:
            handle.write(good + b"AC\xe9GT\t2.0\n" + good)
        with pytest.raises(DataFormatError) as error:
            list(iter_chunks(path, chunk_rows=4))
        assert error.value.line == 7
        assert error.value.reason == "not a text file: byte 0xe9 (byte 3 of the line) is " \
                                     "not UTF-8"
        skipped = []
        chunks = list(iter_chunks(path, chunk_rows=4, skip_bad_rows=True, skipped=skipped))
        assert sum(len(c.sequences) for c in chunks) == 12 and len(skipped) == 1
        assert skipped[0].line == 7
        # The byte as it was, not the surrogate it was read as ('\udce9').
        assert skipped[0].reason == r"byte 0xe9 (not UTF-8 text) in sequence 'AC\xe9GT'"
        assert [int(n) for c in chunks for n in c.line_numbers] == [*range(1, 7),
                                                                    *range(8, 14)]
    cr_only = tmp_path / "cr.txt"  # old Mac line ends: lines counted as the readers do
    cr_only.write_bytes(good.replace(b"\n", b"\r") + b"AC\xe9GT\t2.0\r" + good[:13])
    with pytest.raises(DataFormatError) as error:
        list(iter_chunks(cr_only))
    assert error.value.line == 7 and "byte 3 of the line" in error.value.reason


@pytest.mark.parametrize("text, line, reason", [
    # A comma-separated labelled file: said, with the format it needs.
    ("ACGTAC,1.5\n", 1, r"letter ',' outside ACGTN in sequence 'ACGTAC,1.5'; "
                        r"comma-separated\? this format is tab-separated"),
    # Its header: both hints (the first name, 'sequence', reads as a column name).
    ("sequence,expression\nACGT\t1\n", 1, r".*'sequence,expression'; comma-separated\? .*"
                                          r"; a header line\? this format has none"),
    # A bad letter deep in a long sequence is in the window shown, with its base.
    ("A" * 60 + " " + "C" * 40 + "\t1.0\n", 1,
     r"letter ' ' outside ACGTN in sequence \.\.\.'A{18} C{18}'\.\.\. at base 61$"),
])
def test_bad_labelled_rows_say_what_the_file_looks_like(tmp_path, text, line, reason):
    path = tmp_path / "rows.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=f"rows.txt:{line}: {reason}"):
        read_expression_file(path)


@pytest.mark.parametrize("text, reason", [
    ("id,seq\nx,ACGT\n", r"'id,seq'; a comma-separated table\? its header line must name "
                         r"the column of sequences 'sequence'$"),
    ("ACGT\nAC,GT\n", r"'AC,GT'; comma-separated\? give one sequence per line, or a table "
                      r"whose header line names a 'sequence' column$"),
])
def test_sequences_to_predict_in_a_table_without_a_sequence_column_say_so(tmp_path, text,
                                                                          reason):
    from dream_keras.data.readers import iter_sequence_chunks

    path = tmp_path / "input.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=reason):
        list(iter_sequence_chunks(path))
