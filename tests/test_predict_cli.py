"""predict.py and evaluate.py as a user runs them (subprocesses: ~5 s of TF import each).
Their refusals (missing model, bad letters, unreadable input, ...) are cases of
test_fuzz_cli.py, which runs them through the same `main()` in one process."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from dream_keras.inference import load_run, predict_sequences, variant_effects
from tests.run_helpers import run_script
from tests.saved_run import random_sequences

pytestmark = pytest.mark.long(seconds=12)  # scheduled by length (tests/conftest.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(25, seed=11)


def test_predict_fasta_with_strand_average_and_export(tmp_path, small_run, sequences):
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">seq{i}\n{s}\n" for i, s in enumerate(sequences)))
    result = run_script("predict.py", f"--model={small_run}", f"--input={fasta}",
                        "--output=out.tsv", "--reverse_complement_average", "--chunk_rows=7",
                        "--batch_size=4", "--export=served", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 25 predictions" in result.stdout
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    assert lines[0] == "id\tsequence\tprediction"  # the FASTA records' ids come first
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        [f"seq{i}", s] for i, s in enumerate(sequences)]
    from_cli = np.array([float(line.split("\t")[2]) for line in lines[1:]])
    model, scaler = load_run(small_run)
    from_api = predict_sequences(model, scaler, sequences, reverse_complement_average=True)
    np.testing.assert_allclose(from_cli, from_api, atol=1e-5)
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(tf.constant(sequences))["expression"].numpy(),
                               from_api, atol=1e-5)


def test_predict_pairs_gives_effects(tmp_path, small_run, sequences, caplog):
    """Effects equal the API's; a pair of 150-bp sequences that differ only in a base
    before the model's 110-bp window (effect 0 by construction) is named in a warning, a
    pair that differs inside it is not."""
    long = "C" * 40 + "ACGT" * 27 + "AC"
    refs, alts = sequences[:10] + [long, long], sequences[10:20] + ["G" + long[1:],
                                                                    long[:-1] + "T"]
    (tmp_path / "pairs.tsv").write_text("ref_sequence\talt_sequence\n" + "".join(
        f"{ref}\t{alt}\n" for ref, alt in zip(refs, alts)))
    result = run_script("predict.py", f"--model={small_run}", "--pairs=pairs.tsv",
                        "--output=effects.tsv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pairs.tsv: 1 pair(s) (first: line 12) differ only outside the model's 110-bp " \
           "window" in result.stderr
    rows = [line.split("\t") for line in (tmp_path / "effects.tsv").read_text().splitlines()[1:]]
    effects = variant_effects(*load_run(small_run), refs, alts)
    assert "1 pair(s) (first: index 10) differ only outside" in caplog.text
    np.testing.assert_allclose([float(r[4]) for r in rows], effects["effect"], atol=1e-5)
    np.testing.assert_allclose([float(r[2]) for r in rows], effects["ref_prediction"], atol=1e-5)
    assert effects["effect"][10] == 0.0 and effects["effect"][11] != 0.0


def test_evaluate_prints_the_table_and_writes_metrics(tmp_path, small_run, real_train_file):
    data = tmp_path / "labelled.txt"
    data.write_text("\n".join(real_train_file.read_text().splitlines()[:200]) + "\n")
    result = run_script("evaluate.py", f"--model={small_run}", f"--data={data}",
                        "--output_dir=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 200
    # The printed table's row for Pearson r carries the metrics.json value (any padding).
    pearson_rows = [line.split() for line in result.stdout.splitlines()
                    if line.startswith("Pearson r ")]
    assert pearson_rows and pearson_rows[0][2] == f"{metrics['pearson']:.4f}"
    usage = run_script("evaluate.py", f"--model={small_run}", cwd=tmp_path)
    assert usage.returncode != 0 and "exactly one of --data and --dream_dir" in usage.stderr


def test_library_errors_name_parameters_and_the_cli_names_flags(tmp_path, small_run):
    from dream_keras.cli.commands import prediction_problem, run_prediction
    from dream_keras.cli.runner import flag_spelling

    (tmp_path / "taken.tsv").write_text("mine\n")
    with pytest.raises(FileExistsError) as caught:
        run_prediction(small_run, input_path="x.txt", output_path=tmp_path / "taken.tsv")
    assert "pass `overwrite=True` to replace it" in str(caught.value)
    assert "pass --overwrite to replace it" in flag_spelling(str(caught.value))
    assert (tmp_path / "taken.tsv").read_text() == "mine\n"
    assert flag_spelling("`output_format='tsv'`, `labels_path`, `other`") == (
        "--format=tsv, --dream_labels, `other`")
    assert prediction_problem(input_path="a", pairs_path=None, output_path=None,
                              export_dir=None) == "--output is required with --input or --pairs"


def test_a_format_without_an_output_is_refused():
    """--export alone wrote no file in --format, which was silently ignored."""
    from dream_keras.cli.commands import prediction_problem

    assert prediction_problem(input_path=None, pairs_path=None, output_path=None,
                              export_dir="exported", output_format="dream_json") == (
        "--format is the format of --output: give --input and --output, or drop it")
    assert prediction_problem(input_path=None, pairs_path=None, output_path=None,
                              export_dir="exported", output_format="tsv") is None
    assert prediction_problem(input_path="a", pairs_path=None, output_path="b.json",
                              export_dir="exported", output_format="dream_json") is None


def test_the_scaler_beside_the_model_is_an_input_never_replaced(tmp_path, small_run, sequences):
    from dream_keras.cli.commands import run_prediction
    from dream_keras.errors import ConfigurationError

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "target_scaler.json"):
        shutil.copy(small_run.parent / name, run)
    scaler = (run / "target_scaler.json").read_bytes()
    (tmp_path / "seqs.txt").write_text("\n".join(sequences[:3]) + "\n")
    for model in (run, run / "model.keras"):
        with pytest.raises(ConfigurationError, match=r"target_scaler\.json: `output_path` is "
                                                     r"or holds the input"):
            run_prediction(model, input_path=tmp_path / "seqs.txt",
                           output_path=run / "target_scaler.json", overwrite=True)
    assert (run / "target_scaler.json").read_bytes() == scaler


def test_an_output_inside_the_export_is_refused_before_anything_is_written(tmp_path,
                                                                           small_run,
                                                                           sequences):
    from dream_keras.cli.commands import run_prediction
    from dream_keras.cli.runner import flag_spelling
    from dream_keras.errors import ConfigurationError

    (tmp_path / "seqs.txt").write_text("\n".join(sequences[:3]) + "\n")
    for output in (tmp_path / "served" / "o.tsv", tmp_path / "served"):
        with pytest.raises(ConfigurationError, match="`output_path` is inside `export_dir`") \
                as caught:
            run_prediction(small_run, input_path=tmp_path / "seqs.txt", output_path=output,
                           export_dir=tmp_path / "served", overwrite=True)
        assert not (tmp_path / "served").exists()
    assert "--output is inside --export" in flag_spelling(str(caught.value))
