"""The k-mer ridge baseline: counts against hand counts, recovery of a planted effect, and
its report next to the model in evaluate.py's outputs."""
from __future__ import annotations

import numpy as np
import pytest

from dream_keras.baseline import fit_kmer_ridge, kmer_counts, kmer_indices
from dream_keras.data.sequences import encode
from dream_keras.errors import ConfigurationError


def _count(counts, row: int, kmer: str) -> float:
    return counts[row, _index(kmer)]


def test_kmer_counts_match_hand_counts_and_skip_n():
    # "ACGTAC": 2-mers AC, CG, GT, TA, AC -> AC twice, CG, GT, TA once.
    # "AANAA":  AA, AN, NA, AA -> AA twice (windows holding the N count nothing).
    # "GA":     GA once; its N padding (to the longest row) counts nothing either.
    counts = kmer_counts(["ACGTAC", "AANAA", "GA"], 2).toarray()
    assert counts.shape == (3, 16)
    assert _count(counts, 0, "AC") == 2
    assert _count(counts, 0, "CG") == _count(counts, 0, "GT") == _count(counts, 0, "TA") == 1
    assert counts[0].sum() == 5
    assert _count(counts, 1, "AA") == 2 and counts[1].sum() == 2
    assert _count(counts, 2, "GA") == 1 and counts[2].sum() == 1


def test_kmer_counts_are_strand_specific():
    # AAC and its reverse complement GTT are different columns: no strand merging.
    counts = kmer_counts(["AACG", "CGTT"], 3).toarray()
    assert _count(counts, 0, "AAC") == 1 and _count(counts, 0, "GTT") == 0
    assert _count(counts, 1, "GTT") == 1 and _count(counts, 1, "AAC") == 0


def test_kmer_indices_first_base_most_significant():
    index = kmer_indices(encode(["TGCA"], seq_len=4), 3)
    assert index.tolist() == [[3 * 16 + 2 * 4 + 1, 2 * 16 + 1 * 4 + 0]]


def test_fitted_baseline_recovers_a_planted_kmer_effect():
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), 40)) for _ in range(1500)]
    counts = kmer_counts(sequences, 3).toarray()
    effect = {"GAT": 2.0, "CCA": -1.5, "TTT": 0.7}
    truth = sum(weight * counts[:, _index(kmer)] for kmer, weight in effect.items())
    targets = 5.0 + truth + rng.normal(0.0, 0.3, len(sequences))
    baseline = fit_kmer_ridge(sequences, targets, ks=(2, 3, 4))
    assert baseline.k == 3  # the true k wins the cross-validation
    for kmer, weight in effect.items():
        assert baseline.coef[_index(kmer)] == pytest.approx(weight, abs=0.1)
    others = np.delete(baseline.coef, [_index(k) for k in effect])
    assert np.abs(others).max() < 0.1
    new = ["".join(rng.choice(list("ACGT"), 40)) for _ in range(300)]
    new_counts = kmer_counts(new, 3).toarray()
    expected = 5.0 + sum(w * new_counts[:, _index(k)] for k, w in effect.items())
    assert np.corrcoef(baseline.predict(new), expected)[0, 1] > 0.98


def test_leave_one_out_scores_match_refitting():
    rng = np.random.default_rng(1)
    sequences = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(60)]
    targets = rng.normal(size=60)
    baseline = fit_kmer_ridge(sequences, targets, ks=(2,), penalties=(0.5,))
    # Refit without each row, by plain NumPy, with the full fit's absolute penalty (the
    # relative factor times the mean eigenvalue of the centred X'X = trace / columns).
    counts = kmer_counts(sequences, 2).toarray()
    centred = counts - counts.mean(axis=0)
    absolute = 0.5 * np.trace(centred.T @ centred) / 16
    errors = []
    for i in range(len(sequences)):
        keep = np.arange(len(sequences)) != i
        x, y = counts[keep], targets[keep]
        xc = x - x.mean(axis=0)
        coef = np.linalg.solve(xc.T @ xc + absolute * np.eye(16), xc.T @ (y - y.mean()))
        errors.append(targets[i] - (y.mean() + (counts[i] - x.mean(axis=0)) @ coef))
    assert baseline.cv[0]["cv_mse"] == pytest.approx(np.mean(np.square(errors)), rel=1e-8)


def test_a_k_without_variance_never_wins_and_no_variance_at_all_is_refused():
    """5-bp rows hold no 6-mer (every count 0: held-out scores 0/0): the choice must not
    depend on where k=6 sits in the grid; rows shorter than every k cannot be fitted."""
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), 5)) for _ in range(200)]
    targets = rng.normal(size=200)
    forward = fit_kmer_ridge(sequences, targets, ks=(3, 4, 5, 6))
    backward = fit_kmer_ridge(sequences, targets, ks=np.array([6, 5, 4, 3]),
                              penalties=np.logspace(-3, 2, 11))  # arrays are grids too
    assert forward.k == backward.k != 6 and np.isfinite(backward.intercept)
    with pytest.raises(ConfigurationError, match="do not vary"):
        fit_kmer_ridge(["AC", "GT", "CA", "TT"], [1.0, 2.0, 3.0, 4.0], ks=(3, 4))
    # Identical rows: the centred counts are rounding noise, which the relative penalty
    # would fit as a model (predictions away from the mean); refused in both forms.
    # (Measured before the fix: the 14-row dual fit below predicted -2.86 for AAAAAAAAA,
    # the targets' mean being 0.137.)
    for rows in (14, 100):  # 14 < 64 3-mers: the dual form; 100: the primal
        with pytest.raises(ConfigurationError, match="do not vary"):
            fit_kmer_ridge(["GCATTGCAGTAC"] * rows, np.random.default_rng(1).normal(size=rows),
                           ks=(3,))


def test_too_few_rows_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        fit_kmer_ridge(["ACGT", "ACGA"], [1.0, 2.0])


def _index(kmer: str) -> int:
    index = 0
    for letter in kmer:
        index = index * 4 + "ACGT".index(letter)
    return index


# ---- beside the model in evaluate.py ----------------------------------------------------

@pytest.fixture(scope="module")
def split_real_rows(tmp_path_factory, real_train_file):
    """(train file: 1,200 real rows, evaluation file: the next 300)."""
    lines = real_train_file.read_text().splitlines()
    directory = tmp_path_factory.mktemp("real")
    train, held = directory / "train.txt", directory / "held.txt"
    train.write_text("\n".join(lines[:1200]) + "\n")
    held.write_text("\n".join(lines[1200:1500]) + "\n")
    return train, held


def test_evaluate_reports_the_baseline_beside_the_model(tmp_path, small_run, split_real_rows,
                                                        caplog):
    """The baseline fitted on the run's training file, here one that needs
    --baseline_skip_bad_rows (a header line, as train.py --skip_bad_rows reads it), and
    scored on the same rows as the model."""
    import json
    import logging

    from dream_keras.data.readers import DataFormatError

    from dream_keras.baseline import fit_kmer_ridge_file
    from dream_keras.data.readers import read_expression_file
    from dream_keras.cli.commands import run_evaluation
    from dream_keras.metrics import METRIC_NAMES
    from tests.saved_run import SCALER_MEAN, SCALER_STD

    train, held = split_real_rows
    with_header = tmp_path / "with_header.txt"
    with_header.write_text("sequence\texpression\n" + train.read_text())
    with pytest.raises(DataFormatError, match=r"with_header.txt:1: letter 's'"):
        fit_kmer_ridge_file(with_header)
    with caplog.at_level(logging.WARNING, logger="absl"):
        text = run_evaluation(small_run, data_path=held, output_dir=str(tmp_path / "e"),
                              baseline_train_data=with_header, baseline_skip_bad_rows=True)
    written = json.loads((tmp_path / "e" / "metrics.json").read_text())
    baseline = written["baseline"]
    assert set(METRIC_NAMES) <= set(baseline) and baseline["n"] == written["n"] == 300
    assert (baseline["skipped_train_rows"], baseline["longest_train_row"]) == (1, 135)
    # 135-bp rows: the ridge counts their k-mers whole, the model reads the last 110 bases.
    assert (f"{with_header} holds sequences of up to 135 bases: the k-mer baseline counts "
            "k-mers over whole sequences, the model reads their last 110 bases") in caplog.text
    # Independently: refit, predict, standardise with the run's scaler, correlate.
    refit = fit_kmer_ridge_file(train)
    assert baseline["k"] == refit.k and baseline["train_rows"] == 1200
    sequences, measured = read_expression_file(held)[:2]
    predicted = (refit.predict(sequences) - SCALER_MEAN) / SCALER_STD
    standardised = (np.asarray(measured) - SCALER_MEAN) / SCALER_STD
    assert baseline["pearson"] == pytest.approx(np.corrcoef(predicted, standardised)[0, 1],
                                                abs=1e-6)
    assert baseline["mse"] == pytest.approx(np.mean((predicted - standardised) ** 2), rel=1e-5)
    assert baseline["pearson"] > 0.2  # k-mers carry signal in real promoters
    markdown = (tmp_path / "e" / "metrics.md").read_text()
    assert f"| metric | model | baseline: {refit.k}-mer ridge |" in markdown
    assert "k-mer ridge" in text


def test_dream_score_of_the_baseline_on_the_same_subsets(tmp_path, small_run, split_real_rows,
                                                         dream_dir):
    import json

    from dream_keras.cli.commands import run_evaluation

    train, _ = split_real_rows
    text = run_evaluation(small_run, dream_dir=dream_dir, output_dir=str(tmp_path / "d"),
                          baseline_train_data=train)
    written = json.loads((tmp_path / "d" / "dream_score.json").read_text())
    model, baseline = written["subsets"], written["baseline"]["subsets"]
    assert {name: s["n"] for name, s in model.items()} == \
        {name: s["n"] for name, s in baseline.items()}
    assert written["baseline"]["missing_subsets"] == written["missing_subsets"]
    assert "baseline (" in text


def test_dual_and_primal_forms_agree():
    from dream_keras import baseline as module

    rng = np.random.default_rng(2)
    sequences = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(40)]  # 40 rows < 64
    targets = rng.normal(size=40)
    factors = np.array([0.01, 1.0])
    primal = module._primal_leave_one_out(sequences, 3, targets, factors)
    dual = module._dual_leave_one_out(sequences, 3, targets, factors)
    assert np.allclose(primal[0], dual[0], rtol=1e-6)
    assert np.allclose(primal[1], dual[1], atol=1e-8)


def test_the_fit_is_the_same_whatever_the_chunk_of_rows_counted_at_once():
    """Memory is bounded by counting k-mers a chunk of rows at a time (twice per k in the
    primal form); chunks of 7 rows, 4,096 and all rows at once give one fit, every
    leave-one-out score included; the scores summed chunk by chunk are scipy's."""
    rng = np.random.default_rng(4)
    sequences = ["".join(rng.choice(list("ACGT"), int(n))) for n in rng.integers(8, 30, 400)]
    targets = rng.normal(size=400) + kmer_counts(sequences, 2).toarray()[:, _index("GA")]
    fits = [fit_kmer_ridge(sequences, targets, ks=(2, 3, 5), chunk_rows=rows)
            for rows in (7, 4096, 400)]  # k=5: 400 rows < 1,024 k-mers, the dual form
    for other in fits[1:]:
        assert other.k == fits[0].k == 2 and other.penalty == fits[0].penalty
        np.testing.assert_allclose(other.coef, fits[0].coef, rtol=1e-9, atol=1e-12)
        for mine, theirs in zip(fits[0].cv, other.cv):
            assert mine["cv_mse"] == pytest.approx(theirs["cv_mse"], rel=1e-10)
            assert mine["cv_pearson"] == pytest.approx(theirs["cv_pearson"], rel=1e-9)
    # Scores summed over uneven chunks against a plain MSE and scipy's Pearson r.
    from dream_keras import baseline as module

    held_out = module._HeldOutScores(1)
    predictions = rng.normal(targets.mean(), 1.0, size=(400, 1)) + 0.5 * targets[:, None]
    for start in range(0, 400, 33):
        held_out.add(predictions[start:start + 33], targets[start:start + 33])
    ((mse, pearson),) = held_out.scores()
    from scipy import stats

    assert mse == pytest.approx(np.mean((predictions[:, 0] - targets) ** 2), rel=1e-12)
    assert pearson == pytest.approx(stats.pearsonr(predictions[:, 0], targets)[0], rel=1e-10)
    # Predictions far from the targets' mean relative to their spread keep r's precision.
    offset = module._HeldOutScores(1)
    far = 1e4 + 1e-4 * predictions
    for start in range(0, 400, 33):
        offset.add(far[start:start + 33], targets[start:start + 33])
    assert offset.scores()[0][1] == pytest.approx(stats.pearsonr(far[:, 0], targets)[0],
                                                  rel=1e-6)
    with pytest.raises(ConfigurationError, match="chunk_rows"):
        fit_kmer_ridge(sequences, targets, chunk_rows=0)
    for bad in ({"ks": (3, 8)}, {"ks": (3.7,)}, {"penalties": (1.0, -1e-3)},
                {"chunk_rows": 2.5}):  # refused before any counting
        with pytest.raises(ConfigurationError, match="whole number|>= 0"):
            fit_kmer_ridge(sequences, targets, **bad)
    with pytest.raises(ValueError, match=r"row 3 \(0-based\) is nan"):
        fit_kmer_ridge(sequences, np.where(np.arange(400) == 3, np.nan, targets))


def test_in_sample_scores_are_named_in_the_metrics_and_the_log(tmp_path, small_run,
                                                               split_real_rows, caplog):
    """Scoring the model on the file its run trained on, or a baseline fitted on the
    evaluated file itself, gives in-sample numbers that read like held-out ones: both are
    said (a warning, metrics.json's `warnings`, metrics.md); a held-out evaluation says
    nothing."""
    import json
    import logging
    import shutil

    from dream_keras.cli.commands import run_evaluation
    from dream_keras.data.cache import file_sha256

    train, held = split_real_rows
    run = tmp_path / "run"
    shutil.copytree(small_run.parent, run)
    record = json.loads((run / "run.json").read_text())
    record["data"] = {"source_sha256": file_sha256(train)}
    (run / "run.json").write_text(json.dumps(record))
    copy_of_train = tmp_path / "copy_of_train.txt"  # another name, the same contents
    copy_of_train.write_text(train.read_text())
    with caplog.at_level(logging.WARNING, logger="absl"):
        run_evaluation(str(run), data_path=copy_of_train, output_dir=str(tmp_path / "e"),
                       baseline_train_data=copy_of_train)
    warnings = json.loads((tmp_path / "e" / "metrics.json").read_text())["warnings"]
    assert len(warnings) == 2
    assert "copy_of_train.txt has the contents of the file the model trained on" in warnings[0]
    assert "the baseline is fitted on" in warnings[1] and "itself" in warnings[1]
    assert all(warning in caplog.text for warning in warnings)
    assert (tmp_path / "e" / "metrics.md").read_text().count("**Warning:**") == 2
    run_evaluation(str(run), data_path=held, output_dir=str(tmp_path / "held"),
                   baseline_train_data=train)
    assert json.loads((tmp_path / "held" / "metrics.json").read_text())["warnings"] == []
    # A run.json this check cannot read never stops an evaluation that would succeed.
    for damaged in ("[]", json.dumps({**record, "data": "not a record"}), "{not json"):
        (run / "run.json").write_text(damaged)
        run_evaluation(str(run), data_path=copy_of_train, output_dir=str(tmp_path / "e"),
                       overwrite=True)
        assert json.loads((tmp_path / "e" / "metrics.json").read_text())["warnings"] == []
