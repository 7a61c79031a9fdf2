"""The official DREAM score: real public-leaderboard files and hand-computed cases."""
import json

import numpy as np
import pytest

from dream_keras.dream_score import (OFFICIAL_DENOMINATOR, SUBSET_WEIGHTS, DreamTestSet,
                                     format_score_table, load_dream_test_set,
                                     score_predictions, unscorable_subsets)
from dream_keras.data.readers import DataFormatError

# Labelled units with a known sequence in tests/data/dream2022 (pairs for pair subsets).
REAL_COUNTS = {"all": 1921, "high": 96, "low": 99, "yeast": 208, "random": 733,
               "challenging": 195, "SNVs": 0, "motif_perturbation": 328, "motif_tiling": 263}


@pytest.fixture(scope="module")
def leaderboard(dream_dir):
    return load_dream_test_set(dream_dir)


def oracle(test_set):
    return {p: test_set.labels[p] for p in test_set.positions_to_predict()}


def test_real_leaderboard_counts_and_oracle_scores_one(leaderboard):
    score = score_predictions(oracle(leaderboard), leaderboard)
    assert {name: s["n"] for name, s in score["subsets"].items()} == REAL_COUNTS
    assert len(leaderboard.positions_to_predict()) == 1921
    for name, subset in score["subsets"].items():
        if name == "SNVs":
            assert subset["status"] == "missing" and subset["pearson_r2"] is None
        else:
            assert subset["pearson_r2"] == pytest.approx(1.0)
            assert subset["spearman"] == pytest.approx(1.0)
    assert score["missing_subsets"] == ["SNVs"] and not score["complete"]
    assert score["pearson_score"] == pytest.approx((4.65 - 1.25) / 4.65)
    assert score["spearman_score"] == pytest.approx((4.65 - 1.25) / 4.65)
    assert score["renormalised_pearson_score"] == pytest.approx(1.0)
    assert sum(score["weights_used"].values()) == pytest.approx(3.4)
    assert "SNVs" not in score["weights_used"]


def test_subsets_left_out_are_known_before_any_prediction(leaderboard):
    """What `--dream_partial=refuse` checks before it loads a model: the same subsets the
    score of predictions leaves out."""
    assert unscorable_subsets(leaderboard) == {"SNVs": 0}
    assert unscorable_subsets(leaderboard, min_rows=100) == {"high": 96, "low": 99,
                                                             "SNVs": 0}
    score = score_predictions(oracle(leaderboard), leaderboard, min_rows=100)
    assert score["missing_subsets"] == ["high", "low", "SNVs"]


def test_ground_json_labels_give_the_same_score_as_the_subset_files(dream_dir, leaderboard):
    ground = load_dream_test_set(dream_dir, dream_dir / "public_leaderboard" / "ground.json")
    assert len(ground.labels) == 1921  # ground.json sliced to the positions with a sequence
    assert ground.positions_to_predict() == leaderboard.positions_to_predict()
    rng = np.random.default_rng(3)
    predictions = {p: float(v) for p, v in zip(
        leaderboard.positions_to_predict(), rng.normal(size=1921))}
    from_ground = score_predictions(predictions, ground)
    from_subsets = score_predictions(predictions, leaderboard)
    for name in REAL_COUNTS:
        assert from_ground["subsets"][name]["n"] == REAL_COUNTS[name]
        assert from_ground["subsets"][name]["pearson_r2"] == from_subsets["subsets"][name][
            "pearson_r2"]


def test_random_predictions_score_near_zero(leaderboard):
    rng = np.random.default_rng(0)
    predictions = {p: float(rng.normal()) for p in leaderboard.positions_to_predict()}
    score = score_predictions(predictions, leaderboard)
    assert 0.0 <= score["pearson_score"] < 0.03
    assert abs(score["spearman_score"]) < 0.08
    assert score["subsets"]["all"]["pearson_r2"] < 0.01


def test_scores_ignore_monotone_affine_rescaling(leaderboard):
    rng = np.random.default_rng(1)
    noisy = {p: v + rng.normal(scale=0.5) for p, v in oracle(leaderboard).items()}
    rescaled = {p: 3.0 * v + 7.0 for p, v in noisy.items()}
    first, second = score_predictions(noisy, leaderboard), score_predictions(rescaled, leaderboard)
    assert second["pearson_score"] == pytest.approx(first["pearson_score"], rel=1e-9)
    assert 0.2 < first["pearson_score"] < 0.6


def small_test_set():
    """Positions 0..7 labelled; 'high' = 0,1,2; motif_tiling = pairs (alt, ref)."""
    labels = {0: 1.0, 1: 2.0, 2: 3.0, 3: 0.0, 4: 1.0, 5: 0.0, 6: 2.0, 7: 0.0}
    return DreamTestSet(
        sequences={p: "ACGT" for p in range(9)}, labels=labels,
        single_subsets={"high": np.array([0, 1, 2, 2])},
        pair_subsets={"motif_tiling": np.array([[4, 3], [6, 5], [6, 5], [2, 7], [8, 3]])})


def test_hand_computed_weighted_sum_with_pair_differences():
    test_set = small_test_set()
    # high: measured [1, 2, 3], predicted [1, 3, 2] -> r = rho = 0.5.
    # motif_tiling pairs (4,3), (6,5), (2,7): measured alt-ref [1, 2, 3], predicted
    # alt-ref [1, 3, 2] -> r = rho = 0.5; (6,5) is listed twice and counted once; (8,3)
    # has an unlabelled alt and is dropped. Levels alone would correlate differently.
    predictions = {0: 1.0, 1: 3.0, 2: 2.0, 3: 10.0, 4: 11.0, 5: -4.0, 6: -1.0, 7: 0.0, 8: 5.0}
    score = score_predictions(predictions, test_set, min_rows=3)  # 3-row subsets count
    high, tiling = score["subsets"]["high"], score["subsets"]["motif_tiling"]
    assert (high["n"], tiling["n"]) == (3, 3)
    assert high["pearson"] == pytest.approx(0.5) and high["spearman"] == pytest.approx(0.5)
    assert tiling["pearson"] == pytest.approx(0.5) and tiling["spearman"] == pytest.approx(0.5)
    positions = sorted(test_set.labels)
    measured = [test_set.labels[p] for p in positions]
    predicted = [predictions[p] for p in positions]
    r_all = np.corrcoef(predicted, measured)[0, 1]
    assert score["subsets"]["all"]["n"] == 8  # position 8 has no label
    assert score["subsets"]["all"]["pearson_r2"] == pytest.approx(r_all ** 2)
    expected = (1.0 * r_all ** 2 + 0.3 * 0.25 + 0.4 * 0.25) / 4.65
    assert score["pearson_score"] == pytest.approx(expected)
    rho_all = score["subsets"]["all"]["spearman"]
    assert score["spearman_score"] == pytest.approx((rho_all + 0.3 * 0.5 + 0.4 * 0.5) / 4.65)
    assert score["renormalised_pearson_score"] == pytest.approx(expected * 4.65 / 1.7)
    assert sorted(score["missing_subsets"]) == sorted(
        ["low", "yeast", "random", "challenging", "SNVs", "motif_perturbation"])
    assert score["weights_used"] == {"all": 1.0, "high": 0.3, "motif_tiling": 0.4}


def test_constant_predictions_are_undefined_and_count_as_zero():
    test_set = small_test_set()
    predictions = {p: 1.0 for p in range(9)}
    score = score_predictions(predictions, test_set, min_rows=3)
    assert score["subsets"]["high"]["status"] == "undefined"
    assert score["pearson_score"] == 0.0
    assert score["weights_used"]["high"] == 0.3  # present, so it lowers the renormalised score
    assert score["renormalised_pearson_score"] == 0.0


def test_weights_are_the_official_ones():
    assert SUBSET_WEIGHTS == {"all": 1.0, "high": 0.3, "low": 0.3, "yeast": 0.3,
                              "random": 0.3, "challenging": 0.5, "SNVs": 1.25,
                              "motif_perturbation": 0.3, "motif_tiling": 0.4}
    assert sum(SUBSET_WEIGHTS.values()) == pytest.approx(OFFICIAL_DENOMINATOR)


def test_table_names_missing_subsets_and_renormalised_score(leaderboard):
    table = format_score_table(score_predictions(oracle(leaderboard), leaderboard))
    assert "motif_tiling" in table and "0.4" in table
    assert "PARTIAL: missing SNVs" in table and "renormalised over weights 3.40" in table


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_subsets"):
        load_dream_test_set(tmp_path)
    (tmp_path / "test_subsets").mkdir()
    (tmp_path / "test_subsets" / "high_exp_seqs.csv").write_text(
        "tag,sequence,pos,exp\na,ACGT,5,\nb,AAAA,5,\n")
    with pytest.raises(DataFormatError, match=r"high_exp_seqs.csv:3: position 5 has two"):
        load_dream_test_set(tmp_path)
    (tmp_path / "test_subsets" / "high_exp_seqs.csv").write_text(
        "tag,sequence,pos,exp\na,ACGT,5,\n")
    with pytest.raises(FileNotFoundError, match="`labels_path`"):
        load_dream_test_set(tmp_path)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([1, 2]))
    with pytest.raises(DataFormatError, match="labels.json"):
        load_dream_test_set(tmp_path, labels)
    labels.write_text(json.dumps({"5": 1.5}))
    test_set = load_dream_test_set(tmp_path, labels)
    assert test_set.positions_to_predict() == [5] and test_set.sequences[5] == "ACGT"


def test_a_subset_file_of_the_wrong_kind_and_conflicting_labels_are_refused(tmp_path):
    """A pair subset read from pos/sequence columns would pair consecutive rows silently;
    a labels JSON whose key repeats (or "7" and "07") with different values would keep
    one silently."""
    subsets = tmp_path / "test_subsets"
    subsets.mkdir()
    (subsets / "motif_tiling_seqs.csv").write_text("tag,sequence,pos\na,ACGT,5\nb,AAAA,6\n")
    with pytest.raises(DataFormatError, match=r"motif_tiling_seqs.csv:1: expected columns "
                                              r"alt_pos, .*variant pairs\); found tag, "):
        load_dream_test_set(tmp_path)
    (subsets / "motif_tiling_seqs.csv").unlink()
    (subsets / "high_exp_seqs.csv").write_text(
        "alt_sequence,ref_sequence,alt_pos,ref_pos\nACGT,AAAA,5,6\n")
    with pytest.raises(DataFormatError, match=r"high_exp_seqs.csv:1: expected columns pos, "
                                              r"sequence \(a subset scored per sequence\)"):
        load_dream_test_set(tmp_path)
    (subsets / "high_exp_seqs.csv").write_text("sequence,pos\nACGT,5\nAAAA,7\n")
    labels = tmp_path / "labels.json"
    labels.write_text('{"5": 0.1, "5": 0.9}')
    with pytest.raises(DataFormatError, match=r"labels.json: invalid JSON: key '5' appears "
                                              r"twice with different values \(0.1 and 0.9\)"):
        load_dream_test_set(tmp_path, labels)
    labels.write_text('{"7": 0.2, "07": 0.8, "5": 0.1, "5": 0.1}')  # the same value: fine
    with pytest.raises(DataFormatError, match=r"position 7 has two labels: '7': 0.2 and "
                                              r"'07': 0.8"):
        load_dream_test_set(tmp_path, labels)
    labels.write_text('{"7": 0.2, "5": 0.1, "5": 0.1}')
    test_set = load_dream_test_set(tmp_path, labels)
    assert test_set.labels == {5: 0.1, 7: 0.2}
    with pytest.raises(ValueError, match="position 7 is nan, not a finite number"):
        score_predictions({5: 1.0, 7: float("nan")}, test_set)


def test_predictions_that_miss_or_misnumber_positions_are_a_partial_score(leaderboard):
    """Scoring only the predicted positions shrinks each subset's n without a word: left-out
    scorable positions and positions the test set does not hold (a shifted numbering) are
    counted, warned about and make the score partial."""
    full = oracle(leaderboard)
    score = score_predictions(full, leaderboard)
    assert (score["scorable_positions"], score["unpredicted_positions"],
            score["unknown_positions"]) == (1921, 0, 0)
    assert "not predicted" not in format_score_table(score)
    half = dict(list(full.items())[::2])
    with pytest.warns(UserWarning, match="960 of 1921 scorable test positions have no "
                                         "prediction"):
        score = score_predictions(half, leaderboard)
    assert score["unpredicted_positions"] == 960 and not score["complete"]
    assert score["subsets"]["all"]["n"] == 961
    assert "PARTIAL: 960 of 1921 scorable positions not predicted" in format_score_table(score)
    shifted = {p + 10**9: v for p, v in full.items()}
    with pytest.warns(UserWarning) as warned:
        score = score_predictions(shifted, leaderboard)
    assert [str(w.message) for w in warned][-1] == (
        f"1921 predicted positions are not in the test set (the first: {min(shifted)}): is "
        "the numbering the test set's?")
    assert score["unknown_positions"] == 1921
