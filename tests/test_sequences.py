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
