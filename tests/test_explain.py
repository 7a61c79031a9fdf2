"""dream-explain: ISM against predict.py --pairs, gradients against an eager tape,
integrated-gradients completeness, the strand mapping, and the files it writes."""
import csv
import os
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf

from dream_keras.data.sequences import encode, one_hot
from dream_keras.inference import load_run, predict_sequences  # the scoring API ISM must match
from tests import warm_fork
from tests.saved_run import SCALER_STD, random_sequences, save_small_run

pytestmark = pytest.mark.long(seconds=23)  # scheduled by length (tests/conftest.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L = 110
COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = save_small_run(tmp_path_factory.mktemp("explain_run"))
    model, scaler = load_run(path)
    return path, model, scaler


@pytest.fixture(scope="module")
def sequences():
    """One shorter, one exactly as long as and one longer than the model's window."""
    return [random_sequences(1, seed, min_len=n, max_len=n)[0]
            for seed, n in ((1, 95), (2, 110), (3, 125))]


def every_mutation(sequence):
    """[(window position, base code, mutant string)] for each base the model sees."""
    mutations = []
    for j in range(max(0, len(sequence) - L), len(sequence)):
        for code, base in enumerate("ACGT"):
            if base != sequence[j]:
                mutations.append((j + L - len(sequence), code,
                                  sequence[:j] + base + sequence[j + 1:]))
    return mutations


def test_every_ism_entry_is_the_variant_effect_predict_pairs_reports(tmp_path, run, sequences):
    from dream_keras.explain import explain_run

    path, _, _ = run
    arrays = explain_run(path, sequences, methods=("ism",))
    pairs = tmp_path / "pairs.tsv"
    expected = []
    with open(pairs, "w") as handle:
        handle.write("ref_sequence\talt_sequence\n")
        for row, sequence in enumerate(sequences):
            for position, code, mutant in every_mutation(sequence):
                handle.write(f"{sequence}\t{mutant}\n")
                expected.append((row, position, code))
    result = warm_fork.run([sys.executable, os.path.join(REPO, "predict.py"), f"--model={path}",
                             f"--pairs={pairs}", f"--output={tmp_path / 'effects.tsv'}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "effects.tsv") as handle:
        effects = [float(line["effect"]) for line in csv.DictReader(handle, delimiter="\t")]
    assert len(effects) == len(expected) == 3 * (95 + 110 + 110)
    ism = arrays["ism"]
    got = np.array([ism[row, position, code] for row, position, code in expected])
    np.testing.assert_allclose(got, effects, atol=1e-5, rtol=0)
    assert np.isnan(ism[0, :L - 95]).all() and not np.isnan(ism[0, L - 95:]).any()
    observed = encode(sequences, L)
    rows, positions = np.nonzero(observed < 4)
    assert (ism[rows, positions, observed[rows, positions]] == 0).all()
    np.testing.assert_allclose(arrays["ism_position"][1], ism[1].sum(-1) / 3, rtol=1e-6)


def test_strand_averaged_ism_matches_strand_averaged_predictions(run, sequences):
    from dream_keras.explain import explain_sequences

    _, model, scaler = run
    arrays = explain_sequences(model, scaler, sequences, methods=("ism",),
                               reverse_complement_average=True)
    for row, sequence in enumerate(sequences):
        mutations = every_mutation(sequence)[::7]
        values = predict_sequences(model, scaler, [sequence] + [m for _, _, m in mutations],
                                   reverse_complement_average=True)
        got = [arrays["ism"][row, position, code] for position, code, _ in mutations]
        np.testing.assert_allclose(got, values[1:] - values[0], atol=1e-5, rtol=0)


def test_strand_averaged_ism_is_the_pairs_effect_when_the_window_starts_with_n(run):
    """A window's leading Ns count as padding (data/sequences.leading_padding), also where
    explain puts a mutation on the reverse strand: short and long sequences."""
    from dream_keras.explain import explain_sequences
    from dream_keras.inference import variant_effects

    _, model, scaler = run
    body = random_sequences(2, 5, min_len=L, max_len=L)
    starts_with_n = ["NNN" + body[0][:80], body[1][:20] + "NNN" + body[1][3:]]
    assert starts_with_n[1][-L:].startswith("NNN")
    arrays = explain_sequences(model, scaler, starts_with_n, methods=("ism",),
                               reverse_complement_average=True)
    for row, sequence in enumerate(starts_with_n):
        mutations = [(position, code, mutant) for position, code, mutant
                     in every_mutation(sequence) if sequence[position - L + len(sequence)] != "N"]
        effects = variant_effects(model, scaler, [sequence] * len(mutations),
                                  [mutant for _, _, mutant in mutations],
                                  reverse_complement_average=True)["effect"]
        got = [arrays["ism"][row, position, code] for position, code, _ in mutations]
        assert len(got) == 3 * (len(sequence[-L:]) - sequence[-L:].count("N"))
        np.testing.assert_allclose(got, effects, atol=1e-5, rtol=0)


def test_gradient_x_input_is_the_eager_gradient_times_the_one_hot(run, sequences):
    from dream_keras.explain import explain_sequences

    _, model, scaler = run
    arrays = explain_sequences(model, scaler, sequences, methods=("gradient_x_input",))
    inputs = tf.constant(one_hot(encode(sequences, L)))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        total = tf.reduce_sum(model(inputs, training=False))
    gradient = tape.gradient(total, inputs).numpy() * SCALER_STD
    np.testing.assert_allclose(arrays["gradient"], gradient, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(arrays["gradient_x_input"], gradient * inputs.numpy(),
                               atol=1e-4, rtol=1e-3)


def test_strand_average_maps_the_reverse_strand_base_for_base(run, sequences):
    """Both strands = the mean of the forward string's and the reverse-complement string's
    own attributions, the latter read at the partner base (string indices, not strands.py)."""
    from dream_keras.explain import explain_sequences

    _, model, scaler = run
    short = sequences[:2]  # <= L: every base is in both windows
    reverse = [s.translate(COMPLEMENT)[::-1] for s in short]
    options = dict(methods=("gradient_x_input",))
    both = explain_sequences(model, scaler, short, reverse_complement_average=True, **options)
    forward = explain_sequences(model, scaler, short, **options)["gradient_x_input"]
    other = explain_sequences(model, scaler, reverse, **options)["gradient_x_input"]
    for row, sequence in enumerate(short):
        n = len(sequence)
        for j in range(n):
            p, q = j + L - n, (n - 1 - j) + L - n
            np.testing.assert_allclose(both["gradient_x_input"][row, p],
                                       (forward[row, p] + other[row, q, ::-1]) / 2, atol=1e-5)


def test_integrated_gradients_are_complete_at_the_default_steps(run, sequences):
    from dream_keras.explain import explain_sequences

    _, model, scaler = run
    for strands, baseline in ((False, "zeros"), (True, "zeros"), (False, "uniform")):
        arrays = explain_sequences(model, scaler, sequences[:2], methods=("integrated_gradients",),
                                   reverse_complement_average=strands, baseline=baseline)
        difference = arrays["prediction"] - arrays["baseline_prediction"]
        total = arrays["integrated_gradients"].sum(axis=(1, 2))
        # 1 %, with a floor of 1e-3 (0.04 % of the scaler's std) for a near-zero difference:
        # the untrained model's all-N output can be within 0.01 of a sequence's.
        assert np.all(np.abs(total - difference) <= 0.01 * np.abs(difference) + 1e-3), \
            (baseline, strands, total, difference)
        assert np.abs(difference).max() > 0.1  # at least one sequence tests the 1 % itself
    all_n = predict_sequences(model, scaler, ["N" * L])[0]
    default = explain_sequences(model, scaler, sequences[1:2], methods=("integrated_gradients",))
    np.testing.assert_allclose(default["baseline_prediction"], all_n, atol=1e-5)


def test_explain_py_writes_aligned_arrays_tsv_and_readable_logos(tmp_path, run, dream_dir):
    import matplotlib.image

    from dream_keras.explain import logos

    path, model, scaler = run
    source = dream_dir / "test_subsets" / "high_exp_seqs.csv"
    with open(source) as handle:
        lines = handle.readlines()[:4]
    (tmp_path / "in.csv").write_text("".join(lines))
    sequences = [line.split(",")[2] for line in lines[1:]]
    out = tmp_path / "explained"
    command = [sys.executable, os.path.join(REPO, "explain.py"), f"--model={path}",
               f"--input={tmp_path / 'in.csv'}", f"--output_dir={out}", "--logos=2",
               "--methods=ism,integrated_gradients", "--ig_steps=8"]
    result = warm_fork.run(command, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with h5py.File(out / "attributions.h5") as arrays:
        assert [s.decode() for s in arrays["sequence"][:]] == sequences
        assert list(arrays["line"][:]) == [2, 3, 4]
        assert arrays["ism"].shape == (3, L, 4) and arrays["integrated_gradients"].shape == (3, L, 4)
        assert "gradient" not in arrays and arrays.attrs["integrated_gradients_steps"] == 8
        np.testing.assert_allclose(arrays["prediction"][:],
                                   predict_sequences(model, scaler, sequences), atol=1e-5)
        ism = arrays["ism"][:]
    with open(out / "attributions.tsv") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert len(table) == 3 * L
    assert table[L + 4]["row"] == "1" and table[L + 4]["base"] == sequences[1][4]
    assert float(table[L + 4]["ism_G"]) == pytest.approx(float(ism[1, 4, 2]), abs=1e-5)
    assert sorted(os.listdir(out / "logos")) == ["row2.png"]
    image = matplotlib.image.imread(out / "logos" / "row2.png")
    assert image.shape[:2] == (round(2 * logos.PANEL_INCHES * logos.DPI),
                               round(logos.WIDTH_INCHES * logos.DPI))
    assert image[..., :3].std() > 0.05  # something is drawn

    again = warm_fork.run(command, timeout=300)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert os.path.getsize(out / "attributions.h5") > 0


def test_methods_are_a_comma_list_or_the_flag_repeated():
    """explain.py's --help shows the default as a comma list, so a comma list must work
    (the flag took one method per --methods); the API takes the same."""
    from dream_keras.errors import ConfigurationError
    from dream_keras.explain.core import check_methods

    assert check_methods(["ism,integrated_gradients"]) == ("ism", "integrated_gradients")
    assert check_methods(["ism", "gradient_x_input, ism"]) == ("ism", "gradient_x_input")
    assert check_methods("gradient_x_input") == ("gradient_x_input",)
    for bad in (["ism,gradient"], [","], []):
        with pytest.raises(ConfigurationError, match="methods must be among"):
            check_methods(bad)


def test_flanks_are_found_where_the_sequence_holds_them():
    from dream_keras.data.synthetic import FLANK_3PRIME, FLANK_5PRIME
    from dream_keras.explain.logos import flank_spans

    middle = "A" * 80
    assert flank_spans(FLANK_5PRIME + middle + FLANK_3PRIME, L) == [(97, 109), (0, 16)]
    assert flank_spans(FLANK_5PRIME + middle[:60] + FLANK_3PRIME, L) == [(97, 109), (20, 36)]
    assert flank_spans("C" * 30 + FLANK_5PRIME + middle + FLANK_3PRIME, L) == [(97, 109)]
    assert flank_spans(middle, L) == []
    # A library of one's own: the flanks its run inferred (run.json's design) are shaded.
    from dream_keras.explain.logos import DREAM_FLANKS, flanks_of_run

    own = flanks_of_run([{"flags": {}}, {"design": {"prefix": "GGATCC", "suffix": "AAGCTT"}}])
    assert own == ("GGATCC", "AAGCTT")
    assert flank_spans("ggatcc" + middle + "AAGCTT", L, own) == [(104, 109), (18, 23)]
    assert flank_spans(FLANK_5PRIME + middle + FLANK_3PRIME, L, own) == []
    assert flanks_of_run([{}]) == DREAM_FLANKS  # no design recorded: DREAM's
    assert flanks_of_run([[], {"design": "x"}, {"design": {"prefix": 1}}]) == DREAM_FLANKS
    assert flank_spans("GGATCC" + middle, L, ("GGATCC", "")) == [(24, 29)]  # no 3' flank


def test_modisco_inputs_are_one_hot_and_centred_hypothetical_scores(tmp_path, run, sequences):
    from dream_keras.explain import explain_sequences, motifs

    _, model, scaler = run
    arrays = explain_sequences(model, scaler, sequences, methods=("ism",))
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        for name, values in arrays.items():
            handle[name] = values
    ohe_path, hypothetical_path = motifs.write_modisco_inputs(tmp_path / "a.h5", tmp_path / "m")
    ohe = np.load(ohe_path)["arr_0"]
    hypothetical = np.load(hypothetical_path)["arr_0"]
    assert ohe.shape == hypothetical.shape == (3, 4, L)
    np.testing.assert_array_equal(ohe.transpose(0, 2, 1), one_hot(encode(sequences, L)))
    np.testing.assert_allclose(hypothetical.sum(axis=1), 0.0, atol=1e-5)
    # At the observed base the centred ISM is minus the substitutions' sum over four.
    observed = (hypothetical * ohe).sum(axis=1)[1]
    np.testing.assert_allclose(observed, -arrays["ism"][1].sum(-1) / 4, atol=1e-5)


def test_logo_rows_past_the_end_are_refused_before_any_work(tmp_path, run, sequences):
    from dream_keras.cli.runner import flag_spelling
    from dream_keras.errors import ConfigurationError
    from dream_keras.explain.files import explain_file

    _, model, scaler = run
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sequences * 2) + "\n")  # 6 rows, read in chunks of 3
    with pytest.raises(ConfigurationError, match=r"`logo_rows` -1, 6, 9: \S*in\.txt has 6 "
                                                 r"sequences \(0-based rows 0-5\)") as error:
        explain_file(model, scaler, source, tmp_path / "out", logo_rows=[1, 9, 6, 5, -1],
                     methods=("gradient_x_input",), chunk_rows=3)
    assert flag_spelling(str(error.value)).startswith("--logos -1, 6, 9:")
    assert not (tmp_path / "out").exists()


def _overwrite_options():
    return dict(methods=("gradient_x_input",), logo_rows=[0], overwrite=True, logo_dpi=20)


def test_overwrite_reads_the_input_first_and_replaces_only_its_own_outputs(tmp_path, run,
                                                                           sequences):
    from dream_keras.errors import DataFormatError, DreamKerasError
    from dream_keras.explain.files import explain_file

    _, model, scaler = run
    out = tmp_path / "explained"
    ours = ["attributions.tsv", "logos/row5.png", "modisco/ohe.npz", "modisco/report/a.html"]
    theirs = ["notes.txt", "logos/my_notes.txt", "modisco/notes.txt"]
    for name in ours + theirs:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old")
    # A file of the user's named like an output is never replaced, --overwrite or not;
    # explain's own TSV is known by its header.
    from dream_keras.explain.files import TSV_COLUMNS

    (tmp_path / "one.txt").write_text(f"{sequences[0]}\n")
    with pytest.raises(DreamKerasError, match=r"attributions.tsv: exists and was not "
                                              r"written by explain"):
        explain_file(model, scaler, tmp_path / "one.txt", out, **_overwrite_options())
    (out / "attributions.h5").write_text("my own")
    (out / "attributions.tsv").write_text("\t".join(TSV_COLUMNS) + "\nold\n")
    with pytest.raises(DreamKerasError, match=r"attributions.h5: exists and was not "):
        explain_file(model, scaler, tmp_path / "one.txt", out, **_overwrite_options())
    (out / "attributions.h5").unlink()
    (tmp_path / "bad.txt").write_text(f"{sequences[0]}\nACGTXACGT\n")
    (tmp_path / "good.txt").write_text(f"{sequences[0]}\n{sequences[1]}\n")
    options = _overwrite_options()
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: "):
        explain_file(model, scaler, tmp_path / "bad.txt", out, **options)
    with pytest.raises(DreamKerasError, match=r"absent\.txt: no such file"):
        explain_file(model, scaler, tmp_path / "absent.txt", out, **options)
    assert all((out / name).read_text() == "old" for name in ours[1:] + theirs)
    assert sorted(os.listdir(out / "logos")) == ["my_notes.txt", "row5.png"]

    written = explain_file(model, scaler, tmp_path / "good.txt", out, write_tsv=False,
                           **options)
    assert written["logos"] == [str(out / "logos" / "row0.png")]
    assert sorted(os.listdir(out / "logos")) == ["my_notes.txt", "row0.png"]
    assert not any((out / name).exists() for name in ours)
    assert all((out / name).read_text() == "old" for name in theirs)
    assert sorted(os.listdir(out)) == ["attributions.h5", "logos", "modisco", "notes.txt"]


def test_a_diverged_model_is_refused_and_a_killed_explains_leftovers_are_cleared(tmp_path,
                                                                                   run):
    """NaN attributions or predictions are refused before anything is written; short
    sequences (ISM is NaN by design where the window holds N) are explained; a killed
    explain's temporary files neither block the next one nor stay."""
    import subprocess
    import sys

    import keras

    from dream_keras import atomic_files
    from dream_keras.errors import DataFormatError
    from dream_keras.explain.files import explain_file

    _, model, scaler = run
    (tmp_path / "in.txt").write_text("ACGTACGTAC\nTTTTGGGACA\n")  # short: N-padded windows
    out = tmp_path / "explained"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid no live process has (until reused)
    leftover = out / f".partial-{atomic_files.HOST}-{dead.pid}.attributions.h5"
    leftover.write_text("half")
    options = dict(methods=("ism", "gradient_x_input"), jit_compile=False)
    written = explain_file(model, scaler, tmp_path / "in.txt", out, **options)
    assert written["rows"] == 2 and not leftover.exists()
    assert sorted(os.listdir(out)) == ["attributions.h5", "attributions.tsv"]
    # Only explain's own: another command's leftover (a killed export's set-aside
    # directory) is not explain's to remove, and makes the directory not empty.
    other = out / f".partial-{atomic_files.HOST}-{dead.pid}.export.old"
    other.mkdir()
    explain_file(model, scaler, tmp_path / "in.txt", out, overwrite=True, **options)
    assert other.is_dir()

    diverged = keras.models.clone_model(model)
    diverged.set_weights(model.get_weights())
    kernel, bias = diverged.get_layer("expression").get_weights()
    diverged.get_layer("expression").set_weights([kernel, np.full_like(bias, np.nan)])
    with pytest.raises(DataFormatError, match=r"in\.txt: the model's .* for sequence 0 "
                                              r"\(0-based\) is not a finite number"):
        explain_file(diverged, scaler, tmp_path / "in.txt", tmp_path / "nan", **options)
    assert not (tmp_path / "nan").exists()

    # An input that is one of the outputs is refused, --overwrite or not.
    from dream_keras.errors import ConfigurationError

    table = out / "attributions.tsv"
    table.write_text("ACGTACGTAC\n")
    with pytest.raises(ConfigurationError, match="is or holds the input"):
        explain_file(model, scaler, table, out, overwrite=True, **options)
    assert table.read_text() == "ACGTACGTAC\n"


def test_integrated_gradients_of_a_both_strands_ensemble_equal_the_outside_average(run):
    """An ensemble file that averages both strands inside reads the padding off its input,
    and the all-N baseline reads as all padding: its path's first gradient landed on
    unrolled positions (attributions off by 2e-2 at 20 steps for a 60-bp sequence). Now
    they equal the plain model's strand-averaged ones, and f(baseline) is exact."""
    from dream_keras.ensemble import ensemble_model
    from dream_keras.explain.core import explain_sequences

    _, model, scaler = run
    both, both_scaler = ensemble_model([model], [scaler], both_strands=True)
    short = [random_sequences(1, seed, min_len=n, max_len=n)[0] for seed, n in ((5, 60),
                                                                                (1, 95))]
    options = dict(methods=("integrated_gradients",), steps=20)
    inside = explain_sequences(both, both_scaler, short, **options)
    outside = explain_sequences(model, scaler, short, reverse_complement_average=True,
                                **options)
    np.testing.assert_allclose(inside["integrated_gradients"],
                               outside["integrated_gradients"], atol=2e-5)
    np.testing.assert_allclose(inside["baseline_prediction"],
                               outside["baseline_prediction"], atol=1e-5)
    with pytest.raises(TypeError, match="must be a list of sequences, not one string"):
        explain_sequences(model, scaler, short[0], **options)
