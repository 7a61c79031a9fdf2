"""Prediction: loading a run, predicting strings and files, strand averaging, pairs, export."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from dream_keras import prediction_files
from dream_keras.data.sequences import encode_strands
from dream_keras.export import export_serving, serving_function
from dream_keras.inference import (compiled_forward, load_run, padded_batch_size, predict_codes,
                                   predict_sequences, variant_effects)
from dream_keras.prediction_files import predict_file, predict_pairs_file
from dream_keras.data.readers import DataFormatError
from dream_keras.data.readers import FASTA, TABLE, TEXT, detect_input_format
from dream_keras.data.sequences import InvalidSequenceError
from tests.run_helpers import run_code, tagged_json
from tests.saved_run import SCALER_MEAN, SCALER_STD, random_sequences, reference_predictions

pytestmark = pytest.mark.long(seconds=26)  # scheduled by length (tests/conftest.py)


@pytest.fixture(scope="module")
def run(small_run):
    return load_run(small_run)


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(40, seed=7) + ["acgtnACGT", "N" * 30, "A" * 150]


@pytest.fixture(scope="module")
def expected(small_run, sequences):
    return reference_predictions(small_run, sequences)


def test_load_run_returns_model_and_scaler_from_file_or_directory(small_run, run):
    model, scaler = run
    assert model.input_shape == (None, 110, 4) and model.output_shape == (None, 1)
    assert (scaler.mean, scaler.std) == (SCALER_MEAN, SCALER_STD)
    assert load_run(small_run.parent)[1] == scaler


def test_load_run_errors_are_clear(tmp_path, small_run):
    with pytest.raises(FileNotFoundError, match=r"model.keras: model not found"):
        load_run(tmp_path / "model.keras")
    (tmp_path / "model.keras").write_bytes(small_run.read_bytes())
    with pytest.raises(FileNotFoundError, match="target_scaler.json: target scaler not found"):
        load_run(tmp_path / "model.keras")
    (tmp_path / "target_scaler.json").write_text('{"mean": 0, "std": 1}')
    (tmp_path / "model.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="model.keras: cannot load the model"):
        load_run(tmp_path / "model.keras")


def test_predict_sequences_matches_an_independent_computation(run, sequences, expected):
    values = predict_sequences(*run, sequences, batch_size=16)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert values.std() > 0.05  # the predictions do depend on the sequence
    np.testing.assert_allclose(predict_sequences(*run, sequences[::-1], batch_size=7),
                               expected[::-1], atol=1e-5)


def reverse_windows(sequences):
    """The reverse strand of each sequence's window (its last 110 bases), as strings."""
    complement = str.maketrans("ACGTNacgtn", "TGCANtgcan")
    return [s[-110:].translate(complement)[::-1] for s in sequences]


def test_reverse_complement_average_is_the_mean_of_both_strands(run, sequences, expected):
    assert reverse_windows(["AACGTn", "ggcA", "C" * 5 + "A" * 110]) == [
        "nACGTT", "Tgcc", "T" * 110]
    reverse = predict_sequences(*run, reverse_windows(sequences))
    averaged = predict_sequences(*run, sequences, reverse_complement_average=True)
    np.testing.assert_allclose(averaged, (expected + reverse) / 2, atol=1e-5)
    assert np.abs(averaged - expected).max() > 1e-3


def test_padded_batch_shapes():
    assert [padded_batch_size(n, 256) for n in (1, 8, 9, 100, 255, 256, 10_000)] == [
        8, 8, 16, 128, 256, 256, 256]
    assert padded_batch_size(3, 4) == 4


def test_compiled_forward_is_traced_once_and_padding_changes_nothing(run, sequences, expected):
    model, _ = run
    codes = encode_strands(sequences, 110, False)[0]
    forward = compiled_forward(model, 16)
    # 43 rows at batch 16: two full batches and a padded one, all through one trace.
    standardised = predict_codes(model, codes, batch_size=16)
    predict_codes(model, codes[:5], batch_size=16, batch_shape=16)
    assert compiled_forward(model, 16) is forward
    assert forward.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(standardised * SCALER_STD + SCALER_MEAN, expected, atol=1e-5)
    # The same numbers without XLA (plain graph ops).
    np.testing.assert_allclose(predict_codes(model, codes, batch_size=16, jit_compile=False),
                               standardised, atol=1e-5)


def test_the_compiled_forward_cache_does_not_keep_models_alive():
    """Nor the float32 twin of a mixed-precision model (inference.scoring_model)."""
    import gc
    import weakref

    import dream_keras
    from tests.conftest import SMALL_MODEL

    for dtype, jit_compile in ((None, True), ("mixed_bfloat16", False)):
        model = dream_keras.build_model(**SMALL_MODEL, dtype=dtype)
        predict_codes(model, np.full((3, 110), 4, np.uint8), jit_compile=jit_compile)
        forward = compiled_forward(model, 8, jit_compile=jit_compile)
        assert compiled_forward(model, 8, jit_compile=jit_compile) is forward  # cached
        alive = weakref.ref(model)
        del model, forward
        gc.collect()
        assert alive() is None


def test_scoring_many_batch_shapes_and_models_traces_each_once_without_a_warning():
    """The compiled forward (and the explanations' gradient) was a closure made per key: TensorFlow counts traces per
    function code, so a process scoring several batch shapes or models logged "5 out of
    the last 5 calls ... triggered tf.function retracing", each function traced once. In
    a fresh process: TensorFlow warns at most twice per function code per process."""
    script = (
        "import json, logging, numpy as np, tensorflow as tf\n"
        "import dream_keras\n"
        "from dream_keras.inference import compiled_forward, predict_codes\n"
        "from dream_keras.explain.gradients import gradient_function, outputs_and_gradients\n"
        "from tests.conftest import SMALL_MODEL\n"
        "messages = []\n"
        "handler = logging.Handler()\n"
        "handler.emit = lambda record: messages.append(record.getMessage())\n"
        "tf.get_logger().addHandler(handler)\n"
        "counts = []\n"
        "for model in [dream_keras.build_model(**SMALL_MODEL) for _ in range(2)]:\n"
        "    for batch in (8, 16, 32):  # batch // 2 + 1 rows run at that batch shape\n"
        "        codes = np.full((batch // 2 + 1, 110), 4, np.uint8)\n"
        "        predict_codes(model, codes, jit_compile=False)\n"
        "        predict_codes(model, codes, jit_compile=False)\n"
        "        counts.append(compiled_forward(model, batch, jit_compile=False)\n"
        "                      .experimental_get_tracing_count())\n"
        "        one_hot = np.zeros((batch // 2 + 1, 110, 4), np.float32)\n"
        "        outputs_and_gradients(model, one_hot, jit_compile=False)\n"
        "        outputs_and_gradients(model, one_hot, jit_compile=False)\n"
        "        counts.append(gradient_function(model, batch, jit_compile=False)\n"
        "                      .experimental_get_tracing_count())\n"
        "print('RESULT', json.dumps({'counts': counts, 'retracing': [\n"
        "    m for m in messages if 'retracing' in m]}))\n")
    result = tagged_json(run_code(script).stdout, "RESULT ")
    assert result["retracing"] == []
    assert result["counts"] == [1] * 12  # 2 models x 3 batch shapes x (forward, gradient)


def test_a_seq_len_other_than_the_models_is_refused_by_name(tmp_path, run, sequences,
                                                            expected):
    """`seq_len` was passed to the encoding only: the compiled model still took its own
    length, so another one failed as a shape error inside TensorFlow (or, in the
    SavedModel, only when served). The model's own length is accepted."""
    model, scaler = run
    np.testing.assert_allclose(predict_sequences(model, scaler, sequences, seq_len=110),
                               expected, atol=1e-5)
    path = tmp_path / "in.txt"
    path.write_text("ACGT\n")
    refused = r"`seq_len`=100, but the model takes sequences of 110 bases .*pass 110"
    for call in (lambda: predict_sequences(model, scaler, sequences, seq_len=100),
                 lambda: variant_effects(model, scaler, ["ACGT"], ["ACGA"], seq_len=100),
                 lambda: predict_file(model, scaler, path, tmp_path / "out.tsv", seq_len=100),
                 lambda: serving_function(model, scaler, seq_len=100)):
        with pytest.raises(ValueError, match=refused):
            call()
    assert not (tmp_path / "out.tsv").exists()


def test_strand_average_is_one_call_over_both_strands(run, sequences):
    model, _ = run
    codes, reverse_codes = encode_strands(sequences, 110, True)
    averaged = predict_codes(model, codes, batch_size=32, reverse_codes=reverse_codes)
    separate = (predict_codes(model, codes, 32) + predict_codes(model, reverse_codes, 32)) / 2
    np.testing.assert_allclose(averaged, separate, atol=1e-6)
    both = compiled_forward(model, 32, both_strands=True)
    assert both.experimental_get_tracing_count() == 1
    assert [tuple(spec.shape) for spec in both.input_signature] == [(32, 110), (32, 110)]


def test_compiled_forward_on_one_hot_equals_on_codes(run, sequences):
    from dream_keras.data.sequences import one_hot

    model, _ = run
    codes = encode_strands(sequences[:8], 110)[0]
    on_codes = compiled_forward(model, 8)(codes).numpy()
    on_one_hot = compiled_forward(model, 8, one_hot_input=True)(one_hot(codes)).numpy()
    np.testing.assert_allclose(on_one_hot, on_codes, atol=1e-6)


def test_predict_file_in_many_pieces_keeps_order(tmp_path, run, sequences, expected,
                                                 monkeypatch):
    # One batch per piece: 43 rows pass reader -> model -> writer threads in 11 hand-offs,
    # across three chunks, with the strand average on.
    monkeypatch.setattr(prediction_files, "PIECE_BATCHES", 1)
    path = write_inputs(tmp_path, sequences)["text"]
    output = tmp_path / "out.tsv"
    assert predict_file(*run, path, output, batch_size=4, chunk_rows=20,
                        reverse_complement_average=True) == len(sequences)
    lines = output.read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in lines] == sequences
    np.testing.assert_allclose(
        [float(line.split("\t")[1]) for line in lines],
        predict_sequences(*run, sequences, reverse_complement_average=True), atol=1e-5)


def test_an_output_named_gz_is_gzipped_with_the_plain_files_text(tmp_path, run, sequences):
    import gzip

    path = write_inputs(tmp_path, sequences)["text"]
    predict_file(*run, path, tmp_path / "out.tsv")
    predict_file(*run, path, tmp_path / "out.tsv.gz")
    with gzip.open(tmp_path / "out.tsv.gz", "rb") as handle:
        assert handle.read() == (tmp_path / "out.tsv").read_bytes()
    # No clock in the gzip header: the same predictions give the same bytes.
    first = (tmp_path / "out.tsv.gz").read_bytes()
    predict_file(*run, path, tmp_path / "out.tsv.gz", overwrite=True)
    assert (tmp_path / "out.tsv.gz").read_bytes() == first


def test_bad_letters_raise_with_the_row(run):
    with pytest.raises(InvalidSequenceError) as caught:
        predict_sequences(*run, ["ACGT", "ACXT"])
    assert caught.value.row == 1


def test_invalid_sequence_error_is_importable_from_the_package(run):
    """What predict_sequences raises for a bad letter can be caught by its public name."""
    import dream_keras

    assert dream_keras.InvalidSequenceError is InvalidSequenceError
    assert "InvalidSequenceError" in dream_keras.__all__
    with pytest.raises(dream_keras.InvalidSequenceError) as caught:
        predict_sequences(*run, ["ACGT", "NA"])
    assert caught.value.row == 1 and caught.value.letter is None


def test_variant_effects_are_alt_minus_ref(run, sequences, expected):
    effects = variant_effects(*run, sequences[:10], sequences[10:20])
    np.testing.assert_allclose(effects["ref_prediction"], expected[:10], atol=1e-5)
    np.testing.assert_allclose(effects["alt_prediction"], expected[10:20], atol=1e-5)
    np.testing.assert_allclose(effects["effect"], expected[10:20] - expected[:10], atol=1e-5)


def write_inputs(directory, sequences):
    """The same sequences in every supported input format."""
    text = directory / "seqs.txt"
    text.write_text("".join(f"{s}\t{i}.5\n" for i, s in enumerate(sequences)))  # labels ignored
    fasta = directory / "seqs.fa"
    fasta.write_text("".join(f">s{i} x\n{s[:50]}\n{s[50:]}\n" if len(s) > 50 else f">s{i}\n{s}\n"
                             for i, s in enumerate(sequences)))
    table = directory / "seqs.csv"
    table.write_text("id,Sequence,other\n" + "".join(f"r{i},{s},x\n"
                                                     for i, s in enumerate(sequences)))
    gzipped = directory / "seqs.txt.gz"
    gzipped.write_bytes(gzip.compress(text.read_bytes()))
    return {"text": text, "fasta": fasta, "table": table, "gzip": gzipped}


def test_detect_input_format(tmp_path, sequences):
    inputs = write_inputs(tmp_path, sequences)
    assert [detect_input_format(inputs[k]) for k in ("text", "fasta", "table", "gzip")] == [
        TEXT, FASTA, TABLE, TEXT]
    (tmp_path / "pairs.tsv").write_text("ref_sequence\talt_sequence\nAC\tGT\n")
    assert detect_input_format(tmp_path / "pairs.tsv") == TEXT  # no `sequence` column


def test_predict_file_keeps_row_order_in_every_format(tmp_path, run, sequences, expected):
    carried = {"text": [], "gzip": [], "fasta": [("id", [f"s{i}" for i in range(43)])],
               "table": [("id", [f"r{i}" for i in range(43)]), ("other", ["x"] * 43)]}
    for name, path in write_inputs(tmp_path, sequences).items():
        output = tmp_path / f"{name}.tsv"
        rows = predict_file(*run, path, output, chunk_rows=9, batch_size=8)
        table = pd.read_csv(output, sep="\t", dtype=str, keep_default_na=False)
        names = [column for column, _ in carried[name]]
        assert rows == len(sequences)
        assert list(table.columns) == [*names, "sequence", "prediction"], name
        for column, values in carried[name]:  # the input's other fields, row by row
            assert table[column].tolist() == values, name
        assert table["sequence"].tolist() == sequences, name
        np.testing.assert_allclose(table["prediction"].astype(float), expected, atol=1e-5,
                                   err_msg=name)


def test_carried_fields_are_quoted_only_when_needed_and_clashes_refused(tmp_path, run):
    """A table's other columns come back as they were (a tab, a line break, a quote inside
    a quoted CSV field included); a column named like an output column is refused; a
    header-only table still gets the carried header."""
    path = tmp_path / "odd.csv"
    path.write_text('sequence,note,Gene, Gene\nACGT,"a\tb",g1,h1\nCCGG,"two\nlines, ""q""",'
                    'g2,h2\nTTAA,,g3,h3\n')
    predict_file(*run, path, tmp_path / "odd.tsv")
    table = pd.read_csv(tmp_path / "odd.tsv", sep="\t", dtype=str, keep_default_na=False)
    # Names are stripped unless two would meet: then the second keeps its spaces.
    assert list(table.columns) == ["note", "Gene", " Gene", "sequence", "prediction"]
    assert table[" Gene"].tolist() == ["h1", "h2", "h3"]
    assert table["note"].tolist() == ["a\tb", 'two\nlines, "q"', ""]
    assert table["Gene"].tolist() == ["g1", "g2", "g3"]
    (tmp_path / "empty.csv").write_text("id,sequence\n")
    assert predict_file(*run, tmp_path / "empty.csv", tmp_path / "empty.tsv") == 0
    assert (tmp_path / "empty.tsv").read_text() == "id\tsequence\tprediction\n"
    (tmp_path / "again.tsv").write_text("sequence\tPrediction\nACGT\t0.5\n")
    with pytest.raises(DataFormatError, match="column 'Prediction' has the name of an output"):
        predict_file(*run, tmp_path / "again.tsv", tmp_path / "out.tsv")
    assert not (tmp_path / "out.tsv").exists()


def test_dream_json_output_and_overwrite_refusal(tmp_path, run, sequences, expected):
    path = write_inputs(tmp_path, sequences)["text"]
    output = tmp_path / "submission.json"
    predict_file(*run, path, output, output_format="dream_json", chunk_rows=10)
    mapping = json.loads(output.read_text())
    assert list(mapping) == [str(i) for i in range(len(sequences))]
    np.testing.assert_allclose(list(mapping.values()), expected, atol=1e-5)
    with pytest.raises(FileExistsError, match="`overwrite=True`"):
        predict_file(*run, path, output)
    predict_file(*run, path, output, overwrite=True)
    assert output.read_text().startswith("sequence\tprediction\n")


def test_pairs_file_gives_ref_alt_and_effect(tmp_path, run, sequences, expected):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("name,ref_sequence,alt_sequence\n" + "".join(
        f"p{i},{sequences[i]},{sequences[i + 20]}\n" for i in range(20)))
    predict_pairs_file(*run, pairs, tmp_path / "effects.tsv", chunk_rows=6)
    lines = (tmp_path / "effects.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["name", "ref_sequence", "alt_sequence", "ref_prediction",
                                    "alt_prediction", "effect"]
    assert [line.split("\t")[0] for line in lines[1:]] == [f"p{i}" for i in range(20)]
    table = np.array([[float(v) for v in line.split("\t")[3:]] for line in lines[1:]])
    np.testing.assert_allclose(table[:, 0], expected[:20], atol=1e-5)
    np.testing.assert_allclose(table[:, 1], expected[20:40], atol=1e-5)
    np.testing.assert_allclose(table[:, 2], expected[20:40] - expected[:20], atol=1e-5)


@pytest.mark.parametrize("name, content, line", [
    ("bad.txt", "ACGT\nACGT\nACJT\n", 3),
    ("bad.fa", ">a\nACGT\n>b\nAC\nGGZ\n", 5),
    ("bad.csv", "sequence,x\nACGT,1\nAC T,2\n", 3),
])
def test_bad_letters_in_files_name_file_and_line(tmp_path, run, name, content, line):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFormatError) as caught:
        predict_file(*run, tmp_path / name, tmp_path / "out.tsv")
    assert caught.value.line == line and caught.value.path.endswith(name)
    assert "outside ACGTN" in str(caught.value)
    assert not (tmp_path / "out.tsv").exists()  # nothing half-written is left behind


def test_unreadable_inputs_are_format_errors(tmp_path, run):
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00\x81" * 50)
    for path, reason in [(tmp_path / "binary.bin", "cannot read|not a text"),
                         (tmp_path / "missing.txt", "no such file")]:
        with pytest.raises(DataFormatError, match=reason):
            predict_file(*run, path, tmp_path / "out.tsv")


def test_serving_function_with_strand_average_matches_python(run, sequences):
    serve = tf.function(serving_function(*run, reverse_complement_average=True))
    served = serve(tf.constant(sequences))["expression"].numpy()
    np.testing.assert_allclose(
        served, predict_sequences(*run, sequences, reverse_complement_average=True), atol=1e-5)


def test_the_served_model_says_which_predictions_are_implausible(run, sequences):
    """It answers every request (a server should), and says which answers not to trust."""
    import dataclasses

    model, scaler = run
    served = tf.function(serving_function(model, scaler, with_plausibility=True))(
        tf.constant(sequences))
    assert served["plausible"].dtype == tf.bool and served["plausible"].numpy().all()
    assert set(serving_function(model, scaler)(tf.constant(sequences[:2]))) == {"expression"}
    values = served["expression"].numpy()
    middle = float(np.median(values))  # a range that half the predictions fall outside
    narrow = dataclasses.replace(scaler, minimum=middle - 1e-3, maximum=middle + 1e-3)
    flagged = tf.function(serving_function(model, narrow, with_plausibility=True))(
        tf.constant(sequences))
    np.testing.assert_allclose(flagged["expression"].numpy(), values, atol=1e-6)
    from dream_keras.plausibility import implausible_mask

    np.testing.assert_array_equal(flagged["plausible"].numpy(),
                                  ~implausible_mask(values.astype(np.float64), narrow))
    assert 0 < flagged["plausible"].numpy().sum() < len(sequences)


def test_the_served_model_reads_empty_missing_markers_and_non_ascii_as_documented(run):
    """docs/evaluation.md, "Export for serving": the served model refuses nothing. "" is
    all N; the markers NA/nan are scored as their letters; a non-ASCII character is one N
    per UTF-8 byte; ASCII whitespace around a sequence is stripped, a no-break space not."""
    serve = tf.function(serving_function(*run))
    requests = ["", "NA", "nan", "AC\u00e9GT", "AC\u20acGT", " ACGT\n", "ACGT\u00a0"]
    read_as = ["", "A", "AN", "ACNNGT", "ACNNNGT", "ACGT", "ACGTNN"]
    np.testing.assert_allclose(serve(tf.constant(requests))["expression"].numpy(),
                               predict_sequences(*run, read_as), atol=1e-5)


def test_export_reloads_without_dream_keras_and_matches(tmp_path, run, sequences, expected):
    export_dir = tmp_path / "saved_model"
    export_serving(*run, export_dir)
    with pytest.raises(FileExistsError):
        export_serving(*run, export_dir)
    # Replaced whole, so only an earlier export: a folder of the user's is refused.
    from dream_keras.export import check_export_dir

    check_export_dir(export_dir, overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    for overwrite in (True, False):  # never 'pass overwrite', which would not help
        with pytest.raises(FileExistsError, match="holds no SavedModel"):
            check_export_dir(tmp_path / "mine", overwrite=overwrite)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(sequences + ["acgXt"]))  # odd letters read as N when served
    script = (
        "import json, sys, numpy as np, tensorflow as tf\n"
        f"loaded = tf.saved_model.load({str(export_dir)!r})\n"
        f"seqs = json.load(open({str(inputs)!r}))\n"
        "out = loaded.signatures['serving_default'](sequences=tf.constant(seqs))\n"
        "assert not any(m.startswith('dream_keras') for m in sys.modules)\n"
        "assert list(out) == ['expression'], list(out)\n"
        "both = loaded.signatures['serve_with_plausibility'](sequences=tf.constant(seqs))\n"
        "assert both['plausible'].dtype == tf.bool and bool(np.all(both['plausible']))\n"
        "assert np.array_equal(both['expression'].numpy(), out['expression'].numpy())\n"
        "print('SERVED', json.dumps(out['expression'].numpy().tolist()))\n")
    served = np.array(tagged_json(run_code(script, cwd=tmp_path).stdout, "SERVED "))
    np.testing.assert_allclose(served[:-1], expected, atol=1e-5)
    np.testing.assert_allclose(served[-1], predict_sequences(*run, ["acgNt"])[0], atol=1e-5)


def test_one_string_is_refused_where_a_list_of_sequences_is_asked(small_run):
    """Iterating a string would score each of its letters as a sequence of its own."""
    from dream_keras.inference import load_run, predict_sequences, variant_effects

    model, scaler = load_run(small_run)
    with pytest.raises(TypeError, match="`sequences` must be a list of sequences, not one "
                                        "string: pass \\['TGCATT'\\]"):
        predict_sequences(model, scaler, "TGCATT", jit_compile=False)
    with pytest.raises(TypeError, match="`ref_sequences` must be a list"):
        variant_effects(model, scaler, "ACGT", "ACGA", jit_compile=False)
    effects = variant_effects(model, scaler, (s for s in ["ACGT"]), ["ACGA"], jit_compile=False)
    assert effects["effect"].shape == (1,)  # any iterable of strings, generators too


def test_the_exported_model_answers_an_empty_batch(tmp_path, small_run):
    import tensorflow as tf

    from dream_keras.export import serving_function
    from dream_keras.inference import load_run

    model, scaler = load_run(small_run)
    for strands in (False, True):
        serve = tf.function(serving_function(model, scaler, reverse_complement_average=strands),
                            input_signature=[tf.TensorSpec([None], tf.string)])
        assert serve(tf.constant([], tf.string))["expression"].shape == (0,)
        assert serve(tf.constant(["ACGT", "TTGCA"]))["expression"].shape == (2,)


def test_sequences_longer_than_the_window_are_counted_in_a_warning(tmp_path, run, caplog):
    """The model reads a sequence's last 110 bases: a file of longer constructs (a 150-200
    bp reporter library, say) used to be cut without a word."""
    import logging

    path = tmp_path / "long.txt"
    path.write_text("ACGT\n" + "A" * 150 + "\n" + "C" * 200 + "\nGGG\n")
    with caplog.at_level(logging.WARNING, logger="absl"):
        predict_file(*run, path, tmp_path / "out.tsv")
    assert (f"{path}: 2 sequence(s) (first: line 2; the longest 200 bases) are longer than "
            "the model's 110-bp window: it sees only their last 110 bases") in caplog.text
    caplog.clear()
    path.write_text("ACGT\n" + "A" * 110 + "\n")
    with caplog.at_level(logging.WARNING, logger="absl"):
        predict_file(*run, path, tmp_path / "out.tsv", overwrite=True)
    assert "longer than" not in caplog.text


def test_a_mixed_precision_run_is_scored_in_float32(tmp_path):
    """A --mixed_precision run is saved with its bfloat16 policy; as loaded it predicted in
    bfloat16, each path (eager, compiled, exported) rounding its own way. load_run (and so
    predict.py, evaluate.py, explain.py and --export) scores it in float32: the float32
    model with the same weights, to float32 rounding."""
    import keras

    import dream_keras
    from dream_keras.data.sequences import encode, one_hot
    from dream_keras.data.splits import TargetScaler
    from tests.saved_run import SAVED_RUN_MODEL

    keras.utils.set_random_seed(3)
    trained = dream_keras.build_model(**SAVED_RUN_MODEL, dtype="mixed_bfloat16")
    (tmp_path / "run").mkdir()
    trained.save(tmp_path / "run" / "model.keras")
    TargetScaler(2.0, 3.0).save(tmp_path / "run" / "target_scaler.json")
    model, scaler = load_run(tmp_path / "run")
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    twin = dream_keras.build_model(**SAVED_RUN_MODEL)
    twin.set_weights(trained.get_weights())
    sequences = random_sequences(40, seed=5)
    float32 = twin(one_hot(encode(sequences)), training=False).numpy()[:, 0] * 3.0 + 2.0
    bfloat16 = trained(one_hot(encode(sequences)), training=False).numpy()[:, 0] * 3.0 + 2.0
    np.testing.assert_allclose(predict_sequences(model, scaler, sequences), float32,
                               atol=1e-4)
    assert np.abs(bfloat16 - float32).max() > 1e-3  # what was scored before


def test_models_that_cannot_be_rebuilt_from_their_config_are_still_scored(caplog):
    """The float32 rule asked every model for its config: a float32 model with a custom
    layer lacking get_config, and a mixed-precision Sequential (which keras.Model cannot
    rebuild), were scored before it and failed after it. The first is scored as it is,
    the second in float32 (rebuilt as a Sequential), and one that cannot be rebuilt in its
    own precision with a warning."""
    import keras

    from dream_keras.inference import predict_codes

    class Doubling(keras.layers.Layer):  # no get_config: its config cannot be written
        def __init__(self, factor_array):
            super().__init__()
            self.factor_array = factor_array

        def call(self, inputs):
            return inputs * self.factor_array[0]

    codes = np.random.default_rng(0).integers(0, 4, size=(5, 110)).astype(np.uint8)
    inputs = keras.Input((110, 4))
    custom = keras.Model(inputs, keras.layers.Dense(1)(
        keras.layers.Flatten()(Doubling(np.array([2.0]))(inputs))))
    one_hot_codes = np.eye(4, dtype=np.float32)[codes]
    np.testing.assert_allclose(predict_codes(custom, codes, jit_compile=False),
                               custom(one_hot_codes).numpy()[:, 0], atol=1e-5)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        sequential = keras.Sequential([keras.Input((110, 4)), keras.layers.Flatten(),
                                       keras.layers.Dense(1, dtype="float32")])
        inputs = keras.Input((110, 4))
        mixed_custom = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(
            keras.layers.Flatten()(Doubling(np.array([2.0]))(inputs))))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    float32 = keras.Sequential([keras.Input((110, 4)), keras.layers.Flatten(),
                                keras.layers.Dense(1)])
    float32.set_weights(sequential.get_weights())
    np.testing.assert_allclose(predict_codes(sequential, codes, jit_compile=False),
                               float32(one_hot_codes).numpy()[:, 0], atol=1e-5)
    with caplog.at_level("WARNING"):
        scored = predict_codes(mixed_custom, codes, jit_compile=False)
    np.testing.assert_allclose(scored, mixed_custom(one_hot_codes).numpy()[:, 0], atol=1e-2)
    assert "cannot be rebuilt in float32" in caplog.text


def test_a_mixed_float16_model_is_scored_and_exported_in_float32_however_it_was_loaded(
        tmp_path):
    """load_run converted a --mixed_precision run to float32, but dream_keras.load_model
    (like keras.models.load_model, or a model built in memory) keeps its float16 policy,
    and predict_sequences, export_serving and the explanations' gradients then scored it
    in float16. Each scoring path now takes the float32 twin (inference.scoring_model),
    with the model's current weights."""
    import keras

    import dream_keras
    from dream_keras.data.sequences import encode, one_hot
    from dream_keras.data.splits import TargetScaler
    from dream_keras.explain.gradients import outputs_and_gradients
    from tests.saved_run import SAVED_RUN_MODEL

    keras.utils.set_random_seed(4)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        dream_keras.build_model(**SAVED_RUN_MODEL).save(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy(policy)
    model = dream_keras.load_model(tmp_path / "model.keras")
    assert "float16" in {layer.compute_dtype for layer in model.layers}  # as trained
    twin = dream_keras.build_model(**SAVED_RUN_MODEL)
    scaler, inputs = TargetScaler(2.0, 3.0), random_sequences(24, seed=9)

    def float32_predictions():
        twin.set_weights(model.get_weights())
        return twin(one_hot(encode(inputs)), training=False).numpy()[:, 0] * 3.0 + 2.0

    float32 = float32_predictions()
    float16 = model(one_hot(encode(inputs)), training=False).numpy()[:, 0] * 3.0 + 2.0
    assert np.abs(float16 - float32).max() > 1e-3  # what was scored before
    np.testing.assert_allclose(predict_sequences(model, scaler, inputs, jit_compile=False),
                               float32, atol=1e-5)
    export_serving(model, scaler, tmp_path / "served")
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"](
        sequences=tf.constant(inputs))["expression"].numpy()
    np.testing.assert_allclose(served, float32, atol=1e-5)
    outputs = outputs_and_gradients(model, one_hot(encode(inputs)), jit_compile=False)[0]
    np.testing.assert_allclose(outputs * 3.0 + 2.0, float32, atol=1e-5)
    # Weights changed after a first scoring (training on) are the ones scored next.
    model.set_weights([weight * 0.9 for weight in model.get_weights()])
    np.testing.assert_allclose(predict_sequences(model, scaler, inputs, jit_compile=False),
                               float32_predictions(), atol=1e-5)
