import numpy as np
import pytest

from dream_keras.data import sequences as seq


def test_codes_and_lowercase():
    codes = seq.encode(["ACGTN", "acgtn"], seq_len=5)
    np.testing.assert_array_equal(codes, [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    assert codes.dtype == np.uint8


def test_short_sequences_are_left_padded_with_n():
    codes = seq.encode(["AC", "", "G"], seq_len=4)
    np.testing.assert_array_equal(codes, [[4, 4, 0, 1], [4, 4, 4, 4], [4, 4, 4, 2]])


def test_long_sequences_keep_their_last_bases():
    codes = seq.encode(["AAAACGT", "TTTTTTTTG"], seq_len=3)
    np.testing.assert_array_equal(codes, [[1, 2, 3], [3, 3, 2]])


def test_exact_length_and_mixed_lengths_agree_with_a_per_row_reference():
    rng = np.random.default_rng(0)
    strings = ["".join(rng.choice(list("ACGTNacgt"), size=n)) for n in rng.integers(0, 140, 300)]

    def reference(s, length):  # the original's rule, one row at a time
        s = s.upper()[-length:] if len(s) >= length else "N" * (length - len(s)) + s.upper()
        return ["ACGTN".index(ch) for ch in s]

    np.testing.assert_array_equal(seq.encode(strings, 110), [reference(s, 110) for s in strings])


def test_invalid_letter_names_row_and_letter():
    with pytest.raises(seq.InvalidSequenceError) as error:
        seq.encode(["ACGT", "ACXT"], seq_len=4)
    assert error.value.row == 1 and error.value.letter == "X"
    assert "'X'" in str(error.value)


@pytest.mark.parametrize("sequence,letter", [("ACGTé", "é"), ("AC€T", "€"),
                                             ("é€X", "é")])
def test_a_non_ascii_letter_is_named_as_written(sequence, letter):
    """The codes count UTF-8 bytes; the error names the character, not its first byte."""
    with pytest.raises(seq.InvalidSequenceError) as error:
        seq.encode(["ACGTACGT", sequence], seq_len=4)
    assert error.value.row == 1 and error.value.letter == letter
    assert f"invalid letter {letter!r}" in str(error.value)


def test_a_missing_value_marker_is_not_encoded():
    with pytest.raises(seq.InvalidSequenceError) as error:
        seq.encode(["ACGT", "NA", "nan"], seq_len=4)
    assert error.value.row == 1 and error.value.letter is None
    assert str(error.value) == "'NA' is a missing-value marker (NA, nan), not a sequence"
    assert seq.encode(["NNA", "N"], seq_len=3).tolist() == [[4, 4, 0], [4, 4, 4]]


def test_invalid_letter_in_trimmed_part_is_still_an_error():
    with pytest.raises(seq.InvalidSequenceError):
        seq.encode(["Z" + "A" * 10], seq_len=4)


def test_find_invalid_rows():
    np.testing.assert_array_equal(seq.find_invalid_rows(["ACGT", "AC-T", "", "nn", "é"]), [1, 2, 4])


def test_one_hot_channels_and_n_is_zero():
    onehot = seq.one_hot(seq.encode(["ACGTN"], seq_len=5))
    np.testing.assert_array_equal(onehot[0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                              [0, 0, 0, 1], [0, 0, 0, 0]])
    assert onehot.dtype == np.float32


def test_reverse_strand_is_the_reverse_complement_of_the_window_aligned_right():
    codes = seq.encode(["AACGTC", "GATTACA", "ACNGT"], seq_len=7)
    reverse = seq.reverse_complement_right_aligned(codes)
    # Padding stays on the left; an inner N stays where the reverse complement puts it.
    np.testing.assert_array_equal(reverse, seq.encode(["GACGTT", "TGTAATC", "ACNGT"], 7))
    np.testing.assert_array_equal(seq.reverse_complement_right_aligned(reverse), codes)


def test_encode_strands_uses_the_one_window_rule():
    long = "ACGGTCA" * 20  # 140 bp: the window is the last 110
    forward, reverse = seq.encode_strands([long, "ACG"], 110, both_strands=True)
    np.testing.assert_array_equal(forward, seq.encode([long, "ACG"], 110))
    complement = str.maketrans("ACGT", "TGCA")
    np.testing.assert_array_equal(
        reverse, seq.encode([long[-110:].translate(complement)[::-1], "CGT"], 110))
    assert seq.encode_strands(["ACG"], 110)[1] is None


def test_single_string_is_refused():
    with pytest.raises(TypeError):
        seq.encode("ACGT")


def reverse_window_codes(codes: np.ndarray) -> np.ndarray:
    """The window rule's reverse strand one row at a time, on strings: the leading Ns
    (padding) stay in front, the rest is complemented and reversed."""
    complement = str.maketrans("ACGTN", "TGCAN")
    rows = []
    for row in seq.decode(codes):
        bases = row.lstrip("N")
        rows.append("N" * (len(row) - len(bases)) + bases.translate(complement)[::-1])
    return seq.encode(rows, codes.shape[1])


def test_the_reverse_strand_in_chunks_equals_it_row_by_row():
    """Chunk boundaries anywhere (1 row, 7 rows, the whole input at once) change nothing,
    on rows of every padding: full windows, all-N rows, inner Ns."""
    rng = np.random.default_rng(5)
    strings = ["".join(rng.choice(list("ACGTN"), p=[.24, .24, .24, .24, .04], size=n))
               for n in rng.integers(0, 16, 300)]
    codes = seq.encode(strings, 12)
    expected = reverse_window_codes(codes)
    assert len(np.unique(seq.leading_padding(codes))) == 13  # paddings 0..12 all occur
    for chunk_rows in (1, 7, 64, 300, 10_000):
        reverse = seq.reverse_complement_right_aligned(codes, chunk_rows=chunk_rows)
        assert reverse.dtype == np.uint8
        np.testing.assert_array_equal(reverse, expected)
    np.testing.assert_array_equal(seq.reverse_complement_right_aligned(codes), expected)
    assert seq.reverse_complement_right_aligned(codes[:0]).shape == (0, 12)


def test_the_reverse_strand_of_many_rows_needs_little_memory_beside_its_output():
    """A whole data set's reverse strand (encode_strands on millions of rows) used to take
    17 bytes of temporaries per code (int64 index arrays); in chunks it takes a few
    bytes per code of one chunk. Measured with tracemalloc (NumPy reports its arrays)."""
    import tracemalloc

    rng = np.random.default_rng(6)
    codes = rng.integers(0, 4, (20_000, 110), dtype=np.uint8)
    codes[np.arange(110)[None, :] < rng.integers(0, 40, len(codes))[:, None]] = seq.N_CODE
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        reverse = seq.reverse_complement_right_aligned(codes, chunk_rows=1_000)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert peak < 2 * reverse.nbytes  # the output, and temporaries of 1,000 rows
