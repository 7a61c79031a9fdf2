"""Implausible predictions (finite, far outside the training targets): the rule, the
scaler's recorded range, the refusal / warning of the prediction paths, and the one-file
ensemble's mean that leaves an implausible member out. predict.py and evaluate.py's
refusals run as commands in test_fuzz_cli.py."""
import json

import numpy as np
import pytest

from dream_keras.data.splits import TargetScaler
from dream_keras.errors import DataFormatError
from dream_keras.plausibility import (PlausibilityCheck, implausible_mask, plausible_range,
                                      standardised_plausible_range)
from tests.saved_run import random_sequences

pytestmark = pytest.mark.long(seconds=20)  # scheduled by length (tests/conftest.py)

DREAM = TargetScaler(11.0, 2.5, 0.0, 17.0)


def test_the_range_is_the_training_range_widened_by_its_width_or_ten_stds():
    assert plausible_range(DREAM) == (-17.0, 34.0)
    assert plausible_range(TargetScaler(11.0, 2.5)) == (-14.0, 36.0)  # no recorded range
    low, high = standardised_plausible_range(DREAM)
    assert low == pytest.approx(-28 / 2.5) and high == pytest.approx(23 / 2.5)
    values = np.array([-17.0, 34.0, -17.01, 34.01, -2.0e10, np.inf, np.nan, 11.0])
    np.testing.assert_array_equal(implausible_mask(values, DREAM),
                                  [False, False, True, True, True, True, False, False])


def test_the_scaler_records_its_training_range_and_reads_files_without_one(tmp_path):
    scaler = TargetScaler.fit([3.0, 9.0, 5.0, 4.0])
    assert (scaler.minimum, scaler.maximum) == (3.0, 9.0)
    scaler.save(tmp_path / "scaler.json")
    assert json.loads((tmp_path / "scaler.json").read_text())["maximum"] == 9.0
    assert TargetScaler.load(tmp_path / "scaler.json") == scaler
    (tmp_path / "old.json").write_text('{"mean": 1.0, "std": 2.0}')
    old = TargetScaler.load(tmp_path / "old.json")
    assert (old.minimum, old.maximum) == (None, None)
    old.save(tmp_path / "old_again.json")  # written back as it was read: no range
    assert json.loads((tmp_path / "old_again.json").read_text()) == {"mean": 1.0, "std": 2.0}
    (tmp_path / "bad.json").write_text('{"mean": 1.0, "std": 2.0, "minimum": NaN, '
                                       '"maximum": 3}')
    with pytest.raises(DataFormatError, match=r"bad\.json: target scaler minimum must be a "
                                              "finite number, found nan"):
        TargetScaler.load(tmp_path / "bad.json")


def test_the_check_refuses_naming_the_row_or_counts_for_one_warning(caplog):
    values = np.array([11.0, 12.0, -2.0e10, 50.0])
    with pytest.raises(DataFormatError, match=r"in\.txt: the model predicts -2e\+10 for row "
                                              r"2 \(1 more among the 4 checked with it\): "
                                              r"outside the plausible range \[-17, 34\]"):
        PlausibilityCheck(DREAM, "in.txt").check(values, lambda index: f"row {index}")
    assert PlausibilityCheck(DREAM, "in.txt").check(values[:2], str) == 0
    allowed = PlausibilityCheck(DREAM, "in.txt", allow=True)
    assert allowed.check(values, lambda index: f"row {index}") == 2
    assert allowed.check(values, lambda index: f"row {index + 4}") == 2
    assert allowed.report() is not None
    assert "4 value(s) outside the plausible range [-17, 34]" in caplog.text
    assert "first: row 2 (-2e+10)" in caplog.text
    assert PlausibilityCheck(DREAM, "in.txt", allow=True).report() is None


def test_plausible_mean_is_the_mean_until_an_output_is_outside_its_range():
    from dream_keras.ensemble_layers import PlausibleMean
    from tests.layer_test_utils import assert_config_round_trip

    layer = PlausibleMean(-10.0, 10.0, name="mean")
    outputs = [np.array([[1.0], [2.0], [-2.0e10], [50.0]], np.float32),
               np.array([[3.0], [4.0], [6.0], [np.nan]], np.float32),
               np.array([[5.0], [9.0], [9.0], [70.0]], np.float32)]
    got = np.asarray(layer(outputs)).reshape(-1)
    # row 0, 1: the plain mean; row 2: the exploded member left out; row 3: only the
    # middle one would remain but it is NaN, so no output is plausible: the plain mean.
    np.testing.assert_allclose(got[:3], [3.0, 5.0, 7.5], rtol=1e-6)
    assert np.isnan(got[3])
    assert_config_round_trip(layer)
    with pytest.raises(ValueError, match="low < high"):
        PlausibleMean(1.0, 1.0)


def test_an_ensemble_leaves_out_a_member_that_explodes(tmp_path):
    """Member 2's scaler puts its predictions ~1e10 from the others' (as a member whose
    swish LSTM exploded on an input): the file's prediction is the other two's mean."""
    from dream_keras.ensemble import write_ensemble
    from dream_keras.inference import load_run, predict_sequences
    from tests.test_ensemble import save_member, training_scale

    members = [save_member(tmp_path / f"seed_{k}", k, scaler) for k, scaler in
               enumerate([(11.0, 2.5, 0.0, 17.0), (11.3, 2.2, 0.5, 18.0), (1e10, 2.5, 1.0, 15.0)])]
    write_ensemble(members, tmp_path / "ens")
    sequences = random_sequences(12, seed=3, min_len=90, max_len=110)
    expected = np.mean([training_scale(m, sequences) for m in members[:2]], axis=0)
    model, scaler = load_run(tmp_path / "ens")
    assert (scaler.minimum, scaler.maximum) == (0.0, 18.0)  # the members' ranges, joined
    got = predict_sequences(model, scaler, sequences, jit_compile=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_file_of_implausible_pairs_is_refused_or_written_with_one_warning(
        tmp_path, small_run, caplog):
    from dream_keras.inference import load_run
    from dream_keras.prediction_files import predict_pairs_file

    model, _ = load_run(small_run)
    far = TargetScaler(11.0, 2.5, 1000.0, 1001.0)
    ref = random_sequences(5, seed=6, min_len=100, max_len=110)
    alt = ["A" + sequence[1:] for sequence in ref]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("ref_sequence,alt_sequence\n"
                     + "".join(f"{r},{a}\n" for r, a in zip(ref, alt)))
    with pytest.raises(DataFormatError, match=r"pairs\.csv: the model predicts .* for pair 0 "
                                              r"\(0-based; its ref_sequence\) \(9 more "
                                              r"among the 10"):
        predict_pairs_file(model, far, pairs, tmp_path / "effects.tsv", jit_compile=False)
    assert not (tmp_path / "effects.tsv").exists()
    assert predict_pairs_file(model, far, pairs, tmp_path / "effects.tsv", jit_compile=False,
                              allow_implausible=True) == 5
    assert "pairs.csv: the model predicts 10 value(s) outside the plausible range" \
        in caplog.text


def test_teacher_labels_leave_out_nan_and_keep_one_value_per_sequence(tmp_path, small_run):
    """A teacher answering NaN counts for nothing (the ridge's label stands; alone: 0, the
    training mean), and a teacher whose output is [batch] still labels [batch, 1]."""
    import keras
    import tensorflow as tf

    from dream_keras.data.sequences import encode, one_hot
    from dream_keras.teachers import ModelTeacher

    teacher = ModelTeacher([str(small_run)], TargetScaler(11.0, 2.5, 0.0, 17.0))
    x = one_hot(encode(random_sequences(4, seed=8, min_len=110, max_len=110), 110))
    inputs = keras.Input((110, 4))
    nan = keras.Model(inputs, keras.layers.Lambda(
        lambda t: keras.ops.mean(t, axis=(1, 2))[:, None] * float("nan"))(inputs))
    flat = keras.Model(inputs, keras.layers.Lambda(
        lambda t: keras.ops.mean(t, axis=(1, 2)))(inputs))  # [batch], not [batch, 1]
    ridge = tf.constant([[0.5], [-0.5], [1.0], [0.0]])
    teacher.models = [nan]
    np.testing.assert_array_equal(teacher.labels(x).numpy(), np.zeros((4, 1)))
    np.testing.assert_allclose(teacher.labels(x, ridge).numpy(), ridge.numpy())
    teacher.models = [flat]
    assert teacher.labels(x, ridge).shape == (4, 1)
    np.testing.assert_allclose(teacher.labels(x, ridge).numpy(), (ridge.numpy() + 0.25) / 2,
                               rtol=1e-6)  # each one-hot row sums to 1 over 4 channels


def test_the_api_warns_and_explain_refuses_implausible_predictions(tmp_path, small_run,
                                                                  caplog):
    from dream_keras.explain.core import explain_sequences
    from dream_keras.explain.files import explain_file
    from dream_keras.inference import load_run, predict_sequences

    model, _ = load_run(small_run)
    far = TargetScaler(11.0, 2.5, 1000.0, 1001.0)  # predictions (~11) far below its range
    sequences = random_sequences(6, seed=4, min_len=100, max_len=110)
    values = predict_sequences(model, far, sequences, jit_compile=False)
    assert np.all(np.abs(values - 11.0) < 10)  # returned as computed ...
    assert "6 of 6 predictions lie outside the plausible range [999, 1002]" in caplog.text
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sequences) + "\n")
    with pytest.raises(DataFormatError, match=r"in\.txt: the model predicts .* for sequence "
                                              r"0 \(0-based\) \(5 more among the 6"):
        explain_file(model, far, source, tmp_path / "out", methods=("ism",),
                     jit_compile=False)
    assert not (tmp_path / "out").exists()
    # A range of +/- 3e-4 around the first sequence's prediction: it is plausible, and
    # some of its single-base mutants are not.
    (tmp_path / "one.txt").write_text(sequences[0] + "\n")
    tight = TargetScaler(11.0, 2.5, values[0] - 1e-4, values[0] + 1e-4)
    with pytest.raises(DataFormatError, match=r"one\.txt: the model predicts .* for sequence "
                                              r"0 \(0-based\) with base [ACGT] at window "
                                              r"position \d+ \(1-110, as attributions\.tsv "
                                              r"counts\)") as refused:
        explain_file(model, tight, tmp_path / "one.txt", tmp_path / "out", methods=("ism",),
                     jit_compile=False)
    # Counted: the 3 substitutions of each base the window holds (not its N padding).
    checked = 3 * min(len(sequences[0]), 110)
    assert f"more among the {checked} checked with it" in str(refused.value)
    caplog.clear()
    explain_sequences(model, far, sequences[:2], methods=("gradient_x_input",),
                      jit_compile=False)
    assert "2 of 2 predictions lie outside" in caplog.text
    written = explain_file(model, far, source, tmp_path / "out", methods=("ism",),
                           jit_compile=False, allow_implausible=True, write_tsv=False)
    assert written["rows"] == 6 and "written anyway (--allow_implausible)" in caplog.text
