"""Generated sequences follow the training file's design; augmentations touch only the
variable part and keep every row (and so its label) in place. NumPy only."""
import numpy as np
import pytest

from dream_keras.data import augment
from dream_keras.data.design import (SequenceGenerator, batch_rng, infer_design,
                                     padding_lengths)
from dream_keras.data.readers import iter_chunks
from dream_keras.data.sequences import N_CODE, encode

PREFIX, SUFFIX = "TGCATTTTTTTCACATC", "GGTTACGGCTGTT"


@pytest.fixture(scope="module")
def real_codes(real_train_file):
    sequences = []
    for chunk in iter_chunks(real_train_file, with_expression=True):
        sequences += chunk.sequences
    return encode(sequences[:1500])


def _strings(codes):
    letters = np.frombuffer(b"ACGTN", dtype=np.uint8)[codes]
    return [row.tobytes().decode().lstrip("N") for row in letters]


def test_design_is_read_off_the_real_rows(real_codes):
    design = infer_design(real_codes)
    summary = design.summary()
    assert summary["prefix"] == PREFIX and summary["suffix"] == SUFFIX
    assert summary["variable_length_mode"] == 80
    assert np.array_equal(np.sort(design.lengths), np.sort(110 - padding_lengths(real_codes)))
    # Composition of the variable parts, counted independently on the strings.
    variable = "".join(s[len(PREFIX):-len(SUFFIX)] for s in _strings(real_codes)
                       if s.startswith(PREFIX))
    expected = np.array([variable.count(b) for b in "ACGT"], float) / len(variable)
    assert np.allclose(design.composition, expected, atol=2e-3)


def test_flanks_survive_trimmed_rows_and_short_rows(real_train_file, real_codes):
    """Rows longer than the window lose their 5' flank when trimmed, short rows cannot hold
    the 3' one: 2 % of either left the flank unread at the old 99 % agreement (a subset of
    a few hundred real rows crosses 1 % by chance), and augmentation then edited it."""
    sequences = [s for chunk in iter_chunks(real_train_file, with_expression=True)
                 for s in chunk.sequences]
    longer = [s for s in sequences if len(s) > 110][:10]  # 2 % of the rows below
    ordinary = [s for s in sequences if len(s) <= 110][:490]
    for codes in (encode(ordinary + longer), np.concatenate(
            [real_codes[:490], encode(["ACGTACGTAC"] * 10)])):
        summary = infer_design(codes).summary()
        assert (summary["prefix"], summary["suffix"]) == (PREFIX, SUFFIX)


def test_strict_agreement_is_the_longest_common_prefix_and_suffix():
    codes = encode(["AACGTTTGG", "AACCAAGG", "AACTTTTTTGG"], seq_len=12)
    design = infer_design(codes, agreement=1.0)
    assert design.summary()["prefix"] == "AAC" and design.summary()["suffix"] == "GG"


def test_generated_sequences_keep_flanks_and_length_distribution(real_codes):
    design = infer_design(real_codes)
    generator = SequenceGenerator(design)
    batch = np.concatenate([generator.batch(7, 1, step, 500) for step in range(8)])
    strings = _strings(batch)
    assert all(s.startswith(PREFIX) and s.endswith(SUFFIX) for s in strings)
    assert "N" not in "".join(strings)
    lengths = np.array([len(s) for s in strings])
    # The same length distribution as the training rows (4,000 draws).
    for length in (110, 109, 108):
        assert np.mean(lengths == length) == pytest.approx(np.mean(design.lengths == length),
                                                           abs=0.02)
    assert lengths.min() >= design.lengths.min() and lengths.max() <= 110
    letters = "".join(s[len(PREFIX):-len(SUFFIX)] for s in strings)
    composition = np.array([letters.count(b) for b in "ACGT"], float) / len(letters)
    assert np.allclose(composition, design.composition, atol=0.01)


def test_rows_shorter_than_the_3_prime_flank_keep_their_drawn_length(real_codes):
    """A training file with a few 6-bp rows (shorter than the 13-bp 3' flank): generated
    rows of that length are 6 bases (the flank's last 6), not the whole flank."""
    short = encode(["GGCTGT"] * 5, real_codes.shape[1])
    design = infer_design(np.concatenate([real_codes, short]))
    batch = SequenceGenerator(design, "design").batch(0, 1, 0, 20000)
    lengths = batch.shape[1] - (batch == N_CODE).cumprod(axis=1).sum(axis=1)
    assert set(lengths) <= set(design.lengths) and (lengths == 6).any()
    six = batch[lengths == 6][:, -6:]
    np.testing.assert_array_equal(six, np.broadcast_to(design.suffix[-6:], six.shape))


def _keeps_known_flanks(original, changed):
    """Independently of design.variable_region: every row whose original starts with the
    DREAM 5' flank and ends with the 3' flank still does, in the same columns."""
    checked = 0
    for before, after in zip(_strings(original), _strings(changed)):
        if before.startswith(PREFIX) and before.endswith(SUFFIX):
            assert after.startswith(PREFIX) and after.endswith(SUFFIX)
            assert len(after) == len(before)
            checked += 1
    assert checked > 0.9 * len(original)


def test_generation_is_stateless_and_seeded(real_codes):
    generator = SequenceGenerator(infer_design(real_codes))
    first = generator.batch(3, 1, 41, 64)
    assert np.array_equal(first, generator.batch(3, 1, 41, 64))  # the same (seed, step)
    assert not np.array_equal(first, generator.batch(3, 1, 42, 64))
    assert not np.array_equal(first, generator.batch(4, 1, 41, 64))


@pytest.mark.parametrize("kind", ["mutate", "shuffle"])
def test_copies_of_training_rows_keep_their_flanks(real_codes, kind):
    design = infer_design(real_codes)
    generator = SequenceGenerator(design, kind, real_codes, mutation_rate=0.2)
    batch = generator.batch(0, 1, 0, 300)
    start, end = design.variable_region(batch)
    columns = np.arange(110)[None, :]
    outside = (columns < start[:, None]) | (columns >= end[:, None])
    # Every generated row is a training row outside its variable part.
    rng = batch_rng(0, 1, 0)
    sources = real_codes[rng.integers(0, len(real_codes), size=300)]
    assert np.array_equal(np.where(outside, batch, 0), np.where(outside, sources, 0))
    _keeps_known_flanks(sources, batch)
    inside_changed = (batch != sources).sum(axis=1)
    if kind == "shuffle":
        for row, source in zip(batch[:50], sources[:50]):
            assert sorted(row) == sorted(source)  # the same bases, reordered
    else:
        assert 0.1 < inside_changed.sum() / (end - start).sum() < 0.3


@pytest.mark.parametrize("name", ["mutation", "insertion", "deletion", "translocation"])
def test_augmentations_never_touch_flanks_and_keep_rows_in_place(real_codes, name):
    design = infer_design(real_codes)
    codes = real_codes[:400]
    start, end = design.variable_region(codes)
    settings = {"mutation": dict(mutation_rate=0.1), "insertion": dict(insertion_max=10),
                "deletion": dict(deletion_max=10), "translocation": dict(translocation_max=20)}
    augmentations = augment.Augmentations(probability=0.5, **settings[name])
    out = augmentations.apply(codes, start, end, np.random.default_rng(1))
    assert out.shape == codes.shape and out.dtype == np.uint8
    columns = np.arange(110)[None, :]
    outside = (columns < start[:, None]) | (columns >= end[:, None])
    assert np.array_equal(out[outside], codes[outside])  # flanks and padding unchanged
    _keeps_known_flanks(codes, out)
    assert np.array_equal(padding_lengths(out), padding_lengths(codes))  # lengths kept
    assert not (out[~outside] == N_CODE).any() or (codes[~outside] == N_CODE).any()
    changed = (out != codes).any(axis=1)
    assert 0.3 < changed.mean() < 0.7  # about half the rows, each in its own place
    # Row i still holds (an augmentation of) row i: its variable part agrees with row i's
    # at some shift of up to 20 bases far better than with another row's.
    own = [_best_shift_agreement(out[i], codes[i]) for i in np.flatnonzero(changed)[:40]]
    other = [_best_shift_agreement(out[i], codes[i + 1]) for i in np.flatnonzero(changed)[:40]]
    assert min(own) > 0.45 and np.median(other) < 0.4


def test_without_a_5_prime_flank_an_inner_n_never_becomes_padding():
    """The window rule counts leading N as padding: rows of a design with no constant
    5' start whose inner N a shift moves onto the first base keep their padding (that
    base becomes a random one), so their length and reverse strand do not change."""
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), int(rng.integers(60, 110))))
                 for _ in range(200)]
    sequences = [s[:1] + "NNN" + s[4:] if i % 4 == 0 else s for i, s in enumerate(sequences)]
    codes = encode(sequences, 110)
    design = infer_design(codes)
    assert len(design.prefix) == 0
    start, end = design.variable_region(codes)
    for settings in (dict(translocation_max=5), dict(deletion_max=5), dict(insertion_max=5)):
        augmentations = augment.Augmentations(probability=1.0, **settings)
        for seed in range(10):
            out = augmentations.apply(codes, start, end, np.random.default_rng(seed))
            assert np.array_equal(padding_lengths(out), padding_lengths(codes)), settings
            assert out.max() <= N_CODE


def _best_shift_agreement(row, original, max_shift=20):
    """Highest fraction of equal bases between the variable columns (17..96) of two rows
    under a shift of up to max_shift (translocation wraps, so compare in a circle)."""
    a, b = row[17:97], original[17:97]
    return max(np.mean(a == np.roll(b, shift)) for shift in range(-max_shift, max_shift + 1))


def test_each_augmentation_does_what_it_says():
    codes = encode(["AAAA" + "ACGTACGTAC" + "TTTT"], seq_len=18)
    start, end = np.array([4]), np.array([14])
    variable = codes[0, 4:14]
    rolled = augment.translocate(codes, start, end, np.random.default_rng(0), 3)
    shift = [s for s in range(-3, 4) if np.array_equal(np.roll(variable, s), rolled[0, 4:14])]
    assert shift and np.array_equal(rolled[0, :4], codes[0, :4])
    for seed in range(30):
        inserted = augment.insert(codes, start, end, np.random.default_rng(seed), 3)[0, 4:14]
        assert any(_matches(inserted, template) for template in _insertions(variable, 3))
        deleted = augment.delete(codes, start, end, np.random.default_rng(seed), 3)[0, 4:14]
        assert any(_matches(deleted, template) for template in _deletions(variable, 3))
    mutated = augment.mutate(codes, start, end, np.random.default_rng(0), 1.0)
    assert (mutated[0, 4:14] != variable).all() and np.array_equal(mutated[0, :4], codes[0, :4])


def _matches(row, template):
    return all(t is None or t == r for r, t in zip(row.tolist(), template))


def _insertions(variable, max_length):
    """Every EvoAug-style insertion result, inserted bases as None (any base)."""
    v = variable.tolist()
    for size in range(1, max_length + 1):
        for point in range(len(v) + 1):
            longer = v[:point] + [None] * size + v[point:]
            for offset in range(size + 1):
                yield longer[offset:offset + len(v)]


def _deletions(variable, max_length):
    """Every deletion result, refilled bases as None."""
    v = variable.tolist()
    for size in range(1, max_length + 1):
        for point in range(len(v) - size + 1):
            for left in range(size + 1):
                yield [None] * left + v[:point] + v[point + size:] + [None] * (size - left)


def test_a_design_read_off_rows_mostly_cut_at_their_5_prime_end_is_named(real_train_file,
                                                                          caplog):
    """Trimmed to 105 bases, almost every DREAM row lost part of its 5' flank: the flank
    read off them is a remnant, which a warning says (phases.warn_if_many_rows_were_cut)."""
    from dream_keras.phases import warn_if_many_rows_were_cut

    sequences = []
    for chunk in iter_chunks(real_train_file, with_expression=True):
        sequences += chunk.sequences
    sequences = sequences[:1500]
    cut = encode(sequences, 105)
    longer = sum(len(s) > 105 for s in sequences)
    design = infer_design(cut)
    assert design.summary()["prefix"] != PREFIX  # the real flank is not what was read
    message = warn_if_many_rows_were_cut(
        "rows.txt", {"rows_in_cache": 1500, "rows_longer_than_seq_len": longer}, design)
    assert message and f"{longer} of 1500 rows are longer than --seq_len=105" in message
    assert message in caplog.text
    # Whole rows (as the default 110 bases hold 99 % of them): no warning.
    whole = infer_design(encode(sequences, 110))
    assert whole.summary()["prefix"] == PREFIX
    assert warn_if_many_rows_were_cut(
        "rows.txt", {"rows_in_cache": 1500,
                     "rows_longer_than_seq_len": sum(len(s) > 110 for s in sequences)},
        whole) is None
