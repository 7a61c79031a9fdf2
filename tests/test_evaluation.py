"""Evaluation: metrics against NumPy, output files, the output-directory rule, DREAM score."""
import os
import json
import re
import shutil

import matplotlib.image
import numpy as np
import pytest

from dream_keras.dream_score import load_dream_test_set, score_predictions
from dream_keras.cli.commands import run_evaluation
from dream_keras.errors import DataFormatError, OutputExistsError
from dream_keras.file_errors import FileAccessError
from dream_keras.evaluation import (MANIFEST, METRICS_JSON, data_stem, evaluate_dream,
                                    evaluate_file, format_metrics_table, metrics_markdown,
                                    plot_predicted_vs_measured, regression_metrics)
from tests.saved_run import SCALER_MEAN, SCALER_STD, reference_predictions

pytestmark = pytest.mark.long(seconds=14)  # scheduled by length (tests/conftest.py)


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory, real_train_file):
    """The first 300 real training rows (sequence<TAB>expression)."""
    lines = real_train_file.read_text().splitlines()[:300]
    path = tmp_path_factory.mktemp("data") / "sample.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_regression_metrics_hand_computed():
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    assert metrics["n"] == 4
    assert metrics["mse"] == pytest.approx(0.25)
    assert metrics["r2"] == pytest.approx(1 - 1.0 / 8.75)  # SST = sum((y - 2.75)^2) = 8.75
    r = np.corrcoef([1, 2, 3, 4], [1, 2, 3, 5])[0, 1]
    assert metrics["pearson"] == pytest.approx(r)
    assert metrics["pearson_r2"] == pytest.approx(r * r)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert re.search(r"^MSE \(standardised\) +0\.2500$", format_metrics_table(metrics), re.M)
    assert "| R² (standardised) | 0.8857 |" in metrics_markdown(metrics, "t")


def test_evaluate_file_numbers_files_and_default_directory(small_run, labelled_file):
    metrics, output_dir = evaluate_file(small_run, labelled_file, chunk_rows=128)
    assert output_dir == str(small_run.parent / "evaluation" / "sample")
    rows = [line.split("\t") for line in labelled_file.read_text().splitlines()]
    sequences, expression = [r[0] for r in rows], np.array([float(r[1]) for r in rows])
    predicted = (reference_predictions(small_run, sequences) - SCALER_MEAN) / SCALER_STD
    measured = (expression - SCALER_MEAN) / SCALER_STD
    assert metrics["n"] == 300
    assert metrics["mse"] == pytest.approx(np.mean((measured - predicted) ** 2), rel=1e-5)
    sst = np.sum((measured - measured.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(1 - np.sum((measured - predicted) ** 2) / sst, abs=1e-6)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predicted, measured)[0, 1],
                                                 abs=1e-5)
    written = json.loads((small_run.parent / "evaluation" / "sample" / "metrics.json")
                         .read_text())
    assert written["mse"] == pytest.approx(metrics["mse"]) and written["n"] == 300
    markdown = (small_run.parent / "evaluation" / "sample" / "metrics.md").read_text()
    assert f"| MSE (standardised) | {metrics['mse']:.4f} |" in markdown
    for name, shape in [("predicted_vs_measured.png", (600, 660)), ("residuals.png", (540, 1200))]:
        image = matplotlib.image.imread(small_run.parent / "evaluation" / "sample" / name)
        assert image.shape[:2] == shape and image.std() > 0.01
    # Our own previous outputs may be replaced; a user's file never is.
    evaluate_file(small_run, labelled_file, chunk_rows=1000)
    other = small_run.parent / "other"
    other.mkdir()
    (other / "metrics.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="metrics.md: exists and was not written"):
        evaluate_file(small_run, labelled_file, output_dir=str(other))
    assert (other / "metrics.md").read_text() == "my notes"
    assert not (other / MANIFEST).exists()


def test_density_plot_for_many_points(tmp_path):
    rng = np.random.default_rng(0)
    measured = rng.normal(size=5000)
    plot_predicted_vs_measured(measured + rng.normal(size=5000), measured, tmp_path / "s.png", "t")
    image = matplotlib.image.imread(tmp_path / "s.png")
    assert image.shape[:2] == (600, 660) and image.std() > 0.01


def test_evaluate_dream_scores_the_predictions_it_writes(tmp_path, small_run, dream_dir):
    score, output_dir = evaluate_dream(small_run, dream_dir, output_dir=str(tmp_path / "d"),
                                       batch_size=512)
    predictions = {int(p): v for p, v in
                   json.loads((tmp_path / "d" / "dream_predictions.json").read_text()).items()}
    assert len(predictions) == 1921
    expected = score_predictions(predictions, load_dream_test_set(dream_dir))
    written = json.loads((tmp_path / "d" / "dream_score.json").read_text())
    assert written["pearson_score"] == pytest.approx(expected["pearson_score"])
    assert written["subsets"]["motif_tiling"]["n"] == 263
    assert written["missing_subsets"] == ["SNVs"]
    assert 0.0 <= score["pearson_score"] < 3.4 / 4.65
    # A score of other labels does not silently replace this one (ground.json and the
    # public leaderboard's labels share RUN/evaluation/dream_score/).
    labels = tmp_path / "ground.json"
    labels.write_text(json.dumps({str(p): v for p, v in
                                  load_dream_test_set(dream_dir).labels.items()}))
    with pytest.raises(OutputExistsError, match=r"holds the evaluation of "
                                                r"public_leaderboard, not of .*ground\.json"):
        evaluate_dream(small_run, dream_dir, labels, output_dir=str(tmp_path / "d"))
    assert json.loads((tmp_path / "d" / "dream_score.json").read_text())["labels"] == \
        "public_leaderboard"
    evaluate_dream(small_run, dream_dir, labels, output_dir=str(tmp_path / "d"),
                   batch_size=512, overwrite=True)
    assert json.loads((tmp_path / "d" / "dream_score.json").read_text())["labels"] == \
        str(labels)


def test_run_evaluation_needs_exactly_one_source(small_run, labelled_file, dream_dir):
    with pytest.raises(ValueError, match="exactly one"):
        run_evaluation(small_run, data_path=labelled_file, dream_dir=dream_dir)
    with pytest.raises(ValueError, match="exactly one"):
        run_evaluation(small_run)


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory, small_run):
    """A run whose model predicts NaN for every sequence (its last bias is NaN)."""
    from dream_keras.inference import load_run

    model, _ = load_run(small_run)
    weights = model.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)
    model.set_weights(weights)
    directory = tmp_path_factory.mktemp("nan_run")
    model.save(directory / "model.keras")
    shutil.copy(small_run.parent / "target_scaler.json", directory)
    return directory / "model.keras"


def test_a_model_predicting_nan_is_refused_before_anything_is_written(tmp_path, nan_run,
                                                                      labelled_file, dream_dir):
    with pytest.raises(DataFormatError, match=rf"{nan_run}: the model predicts nan for "
                                              r"DREAM test position \d+, not a finite"):
        evaluate_dream(nan_run, dream_dir, output_dir=str(tmp_path / "d"))
    with pytest.raises(DataFormatError, match=rf"{nan_run}: the model predicts nan for "
                                              rf"{labelled_file}:1, not a finite"):
        evaluate_file(nan_run, labelled_file, output_dir=str(tmp_path / "e"), chunk_rows=100)
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
    # predict.py's file path too: no output, rather than a file of nan.
    from dream_keras.inference import load_run
    from dream_keras.prediction_files import predict_file

    model, scaler = load_run(nan_run)
    with pytest.raises(DataFormatError, match=r"the model predicts nan for sequence 0 "
                                              r"\(0-based\), not a finite number"):
        predict_file(model, scaler, labelled_file, tmp_path / "p.tsv", jit_compile=False)
    assert not (tmp_path / "p.tsv").exists()


def test_refused_incomplete_dream_score_loads_no_model_and_writes_nothing(tmp_path,
                                                                          dream_dir):
    absent_model = tmp_path / "no_run" / "model.keras"  # loading it would fail otherwise
    with pytest.raises(DataFormatError, match="incomplete DREAM score refused: subsets SNVs"):
        evaluate_dream(absent_model, dream_dir, output_dir=str(tmp_path / "d"),
                       partial="refuse")
    assert not (tmp_path / "d").exists()


def test_data_files_of_one_stem_never_silently_replace_each_other(tmp_path, small_run,
                                                                  labelled_file):
    rows = labelled_file.read_text().splitlines(keepends=True)[:40]
    for name in ("fold.1.txt", "fold.2.txt", "x.txt", "x.tsv"):
        (tmp_path / name).write_text("".join(rows))
    assert data_stem("a/fold.1.txt.gz") == "fold.1" and data_stem("x.tsv") == "x"
    _, first = evaluate_file(small_run, tmp_path / "fold.1.txt")
    _, second = evaluate_file(small_run, tmp_path / "fold.2.txt")
    assert (first, second) == tuple(str(small_run.parent / "evaluation" / stem)
                                    for stem in ("fold.1", "fold.2"))
    assert json.loads((small_run.parent / "evaluation" / "fold.1" / METRICS_JSON).read_text()
                      )["data"] == str(tmp_path / "fold.1.txt")
    shared = str(tmp_path / "x")
    evaluate_file(small_run, tmp_path / "x.txt", output_dir=shared)
    evaluate_file(small_run, tmp_path / "x.txt", output_dir=shared)  # the same data: ours
    with pytest.raises(OutputExistsError, match=r"x: holds the evaluation of .*x\.txt, not "
                                                r"of .*x\.tsv; .*`overwrite=True`"):
        evaluate_file(small_run, tmp_path / "x.tsv", output_dir=shared)
    assert json.loads((tmp_path / "x" / METRICS_JSON).read_text())["data"].endswith("x.txt")
    run_evaluation(small_run, data_path=tmp_path / "x.tsv", output_dir=shared, overwrite=True)
    assert json.loads((tmp_path / "x" / METRICS_JSON).read_text())["data"].endswith("x.tsv")


def test_an_interrupted_evaluation_is_replaced_by_the_next_and_leaves_no_old_results(
        tmp_path, small_run, labelled_file, monkeypatch):
    """Outputs are recorded as the evaluation's own before the first is written, and their
    previous versions removed: a run killed while writing neither locks the folder ("not
    written by an evaluation") nor leaves new metrics beside old plots."""
    from dream_keras import evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = str(tmp_path / "e")
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "plot_residuals", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluate_file(small_run, labelled_file, output_dir=out)
    assert sorted(os.listdir(out)) == sorted([MANIFEST, METRICS_JSON, "metrics.md",
                                              "predicted_vs_measured.png"])
    evaluate_file(small_run, labelled_file, output_dir=out)  # the same data: replaced
    assert (tmp_path / "e" / "residuals.png").is_file()
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "plot_residuals", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluate_file(small_run, labelled_file, output_dir=out)
    assert not (tmp_path / "e" / "residuals.png").exists()  # not the previous run's


def test_bad_inputs_are_refused_before_the_baseline_is_fitted(tmp_path, small_run):
    """The k-mer ridge fit takes long on a large training file: a missing data file is
    reported first (were the baseline fitted first, its bad file would be reported)."""
    bad_train = tmp_path / "train.txt"
    bad_train.write_text("ACGT\tnot-a-number\n")
    with pytest.raises(FileAccessError, match=r"absent\.txt: no such file"):
        run_evaluation(small_run, data_path=tmp_path / "absent.txt",
                       baseline_train_data=bad_train)
    (tmp_path / "data.txt").write_text("ACGT\t1.0\nACGA\t2.0\n")
    with pytest.raises(FileNotFoundError, match=r"no_run.model\.keras: model not found"):
        run_evaluation(tmp_path / "no_run" / "model.keras", data_path=tmp_path / "data.txt",
                       baseline_train_data=bad_train)
