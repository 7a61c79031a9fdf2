"""experiments/small_data/cv_ensemble_table.py: the CV table that docs/small_data.md reports
from kept member predictions (an ensemble is the mean of its members; folds without every
seed stay out of the mean; predictions of other rows are refused)."""
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tests.conftest import REPO

SCRIPT = REPO / "experiments" / "small_data" / "cv_ensemble_table.py"
REAL_ROWS = REPO / "tests" / "data" / "dream2022" / "train_sample" / "camformer_demo_test.txt"


SCALER = {"mean": 11.0, "std": 2.5, "minimum": 0.0, "maximum": 17.0}  # plausible: -17..34


def _write_member(results, fold, seed, predictions, test_path):
    np.savetxt(results / f"fold{fold}_seed{seed}.txt", predictions, fmt="%.6g")
    sha = hashlib.sha256(test_path.read_bytes()).hexdigest()
    (results / f"fold{fold}_seed{seed}.json").write_text(json.dumps(
        {"fold": fold, "seed": seed, "diverged_epochs": [2] if seed == 1 else [],
         "test_sha256": sha, "target_scaler": SCALER}))


@pytest.fixture
def cv(tmp_path):
    lines = REAL_ROWS.read_text().splitlines()
    folds, results = tmp_path / "folds", tmp_path / "results"
    results.mkdir()
    rng = np.random.default_rng(0)
    measured = {}
    for fold in (0, 1):
        part = folds / f"fold{fold}"
        part.mkdir(parents=True)
        (part / "train.txt").write_text("\n".join(lines[fold * 400:fold * 400 + 300]) + "\n")
        (part / "test.txt").write_text("\n".join(lines[fold * 400 + 300:fold * 400 + 400]) + "\n")
        measured[fold] = np.array([float(line.split("\t")[1]) for line in
                                   lines[fold * 400 + 300:fold * 400 + 400]])
    members = {seed: measured[0] + rng.normal(0, 3, 100) for seed in (0, 1)}
    for seed, predictions in members.items():
        _write_member(results, 0, seed, predictions, folds / "fold0" / "test.txt")
    _write_member(results, 1, 0, measured[1] + rng.normal(0, 3, 100), folds / "fold1" / "test.txt")
    return folds, results, measured, members


def _table(folds, results, seeds="0,1", bootstrap=0, *options):
    return subprocess.run([sys.executable, str(SCRIPT), f"--fold_dir={folds}",
                           f"--results_dir={results}", f"--seeds={seeds}", "--folds=0,1",
                           f"--bootstrap={bootstrap}", *options],
                          capture_output=True, text=True, cwd=REPO)


def _bootstrap_line(done):
    line = next(line for line in done.stdout.splitlines() if line.startswith("Paired"))
    numbers = [float(n) for n in re.findall(r"[-+]\d+\.\d+", line)]
    return line, {"pearson": numbers[0:3], "spearman": numbers[3:6]}, [
        float(n) for n in re.findall(r"above 0 in ([\d.]+) %", line)]


def test_the_bootstrap_interval_holds_the_mean_difference_and_follows_its_sign(cv):
    folds, results, measured, members = cv
    done = _table(folds, results, bootstrap=400)
    assert done.returncode == 0, done.stderr
    ridge = np.loadtxt(results / "fold0_ridge.txt")
    ensemble = np.mean([members[0], members[1]], axis=0)
    line, found, above = _bootstrap_line(done)
    assert "over folds 0 (400 resamples" in line
    for name, score in (("pearson", lambda p: stats.pearsonr(p, measured[0])[0]),
                        ("spearman", lambda p: stats.spearmanr(p, measured[0])[0])):
        difference, low, high = found[name]
        assert difference == pytest.approx(score(ensemble) - score(ridge), abs=1e-4)
        assert low < difference < high
    # Members near the measured values beat the ridge in every resample; members that are
    # the ridge's predictions upside down lose in every one.
    for predictions, share in ((measured[0] + 0.01, 100.0), (-ridge, 0.0)):
        for seed in (0, 1):
            _write_member(results, 0, seed, predictions, folds / "fold0" / "test.txt")
        _, found, above = _bootstrap_line(_table(folds, results, bootstrap=200))
        assert above == [share, share]
        assert (found["spearman"][1] > 0) == (share == 100.0)
    assert "Paired" not in _table(folds, results).stdout  # --bootstrap=0: none


def test_the_ensemble_is_the_mean_of_its_members_and_incomplete_folds_stay_out(cv):
    folds, results, measured, members = cv
    done = _table(folds, results)
    assert done.returncode == 0, done.stderr
    ensemble = np.mean([members[0], members[1]], axis=0)
    r = stats.pearsonr(ensemble, measured[0])[0]
    rho = stats.spearmanr(ensemble, measured[0])[0]
    fold0 = next(line for line in done.stdout.splitlines() if line.startswith("| 0 |"))
    assert f"{r:.3f} / {rho:.3f}" in fold0
    assert "seed 1: 2" in fold0  # its diverged epoch is named
    fold1 = next(line for line in done.stdout.splitlines() if line.startswith("| 1 |"))
    assert "not run" in fold1 and "incomplete" in fold1
    assert "| mean of folds 0 |" in done.stdout
    assert f"**{r:.4f} / {rho:.4f}**" in done.stdout
    assert "Folds without all 2 seeds (not in the mean): 1" in done.stdout
    assert (results / "fold0_ridge.txt").exists()  # kept: the table rebuilds without refitting


def test_an_implausible_member_prediction_is_left_out_of_the_ensembles_mean(cv):
    """Member 1 predicts -2e10 for row 7 (an exploded output): the default ensemble takes
    member 0's prediction there, as the one-file ensemble does; --combine=mean does not."""
    folds, results, measured, members = cv
    exploded = members[1].copy()
    exploded[7] = -2.0e10
    _write_member(results, 0, 1, exploded, folds / "fold0" / "test.txt")
    expected = np.mean([members[0], members[1]], axis=0)
    expected[7] = members[0][7]
    for options, ensemble, left_out in (((), expected, "fold 0: 1"),
                                        (("--combine=mean",), (members[0] + exploded) / 2,
                                         "none")):
        done = _table(folds, results, "0,1", 0, *options)
        assert done.returncode == 0, done.stderr
        fold0 = next(line for line in done.stdout.splitlines() if line.startswith("| 0 |"))
        r, rho = stats.pearsonr(ensemble, measured[0])[0], stats.spearmanr(ensemble, measured[0])[0]
        assert f"| {r:.3f} / {rho:.3f} |" in fold0, (options, fold0)
        assert f"left out as implausible: {left_out}" in done.stdout
    assert stats.pearsonr((members[0] + exploded) / 2, measured[0])[0] < 0.2  # so it matters


def test_the_files_predictions_are_the_ensemble_with_combine_file(cv):
    """--combine=file scores fold<i>_file.txt (the one-file ensemble's predictions), and
    refuses one of other rows or other members."""
    folds, results, measured, members = cv
    own = measured[0] + np.random.default_rng(5).normal(0, 1, 100)
    np.savetxt(results / "fold0_file.txt", own)
    sha = hashlib.sha256((folds / "fold0" / "test.txt").read_bytes()).hexdigest()
    summary = {"fold": 0, "member_seeds": [0, 1], "test_sha256": sha}
    (results / "fold0_file.json").write_text(json.dumps(summary))
    done = _table(folds, results, "0,1", 0, "--combine=file", "--folds=0")
    assert done.returncode == 0, done.stderr
    fold0 = next(line for line in done.stdout.splitlines() if line.startswith("| 0 |"))
    r, rho = stats.pearsonr(own, measured[0])[0], stats.spearmanr(own, measured[0])[0]
    assert f"| {r:.3f} / {rho:.3f} |" in fold0
    (results / "fold0_file.json").write_text(json.dumps(dict(summary, member_seeds=[0, 2])))
    done = _table(folds, results, "0,1", 0, "--combine=file", "--folds=0")
    assert done.returncode != 0 and "an ensemble of seeds [0, 2], not 0,1" in done.stderr


def test_kept_ridge_predictions_of_other_folds_are_refitted(cv):
    folds, results, measured, _ = cv
    assert _table(folds, results).returncode == 0
    kept = (results / "fold1_ridge.txt").read_text()
    # Fold 1 made again from other rows: its kept ridge predictions are for the old ones.
    lines = REAL_ROWS.read_text().splitlines()
    (folds / "fold1" / "test.txt").write_text("\n".join(lines[900:1000]) + "\n")
    for member in results.glob("fold1_seed*"):
        member.unlink()  # not rerun yet
    done = _table(folds, results)
    assert done.returncode == 0, done.stderr
    assert (results / "fold1_ridge.txt").read_text() != kept  # refitted on the new rows


def test_predictions_of_other_rows_are_refused(cv):
    folds, results, _, _ = cv
    (folds / "fold0" / "test.txt").write_text(
        (folds / "fold1" / "test.txt").read_text())
    done = _table(folds, results)
    assert done.returncode != 0
    assert "fold0_seed0.json: predicted another test.txt" in done.stderr


MEMBERS_SCRIPT = REPO / "experiments" / "small_data" / "cv_member_predictions.sh"
# Stands in for the Python that cv_member_predictions.sh runs. train.py: seed 1 ends as a
# run stopped on NaN does (run.json says stopped_on_nan, exit status 0), seed 3 crashes
# (exit 1), others complete; predict.py numbers the rows; anything else (the script's own
# status and summary code) goes to the real interpreter.
_FAKE_PYTHON = """#!/usr/bin/env bash
case "$1" in
  train.py)
    echo "$*" >> "$CALLS"
    for a in "$@"; do case $a in --output_dir=*) out=${a#*=};; --seed=*) seed=${a#*=};; esac; done
    [[ $seed == 3 ]] && exit 1
    status=completed
    [[ $seed == 1 ]] && status=stopped_on_nan
    mkdir -p "$out" && echo "{\\"status\\": \\"$status\\", \\"best_epoch\\": 3}" > "$out/run.json"
    echo '{"mean": 1.0, "std": 2.0}' > "$out/target_scaler.json";;
  predict.py)
    echo "$*" >> "$CALLS"
    for a in "$@"; do case $a in --output=*) out=${a#*=};; --input=*) in=${a#*=};; esac; done
    { printf 'sequence\\tprediction\\n'; awk -F'\\t' '{print $1 "\\t" NR / 10}' "$in"; } > "$out";;
  *) exec "$REAL_PYTHON" "$@";;
esac
"""


def test_member_script_skips_failed_members_writes_the_others_whole_and_resumes(cv, tmp_path):
    folds, _, _, _ = cv
    fake = tmp_path / "python"
    fake.write_text(_FAKE_PYTHON)
    fake.chmod(0o755)
    results, calls = tmp_path / "kept", tmp_path / "calls.txt"
    environment = {"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "CALLS": str(calls),
                   "REAL_PYTHON": sys.executable}

    def members():
        return subprocess.run(["bash", str(MEMBERS_SCRIPT), str(folds), str(tmp_path / "cv"),
                               str(results), "0", "0 1 2 3"], capture_output=True,
                              text=True, cwd=REPO, env=environment)

    done = members()
    assert done.returncode == 1, done.stderr
    assert "fold 0 seed 1: " in done.stderr and "status 'stopped_on_nan', not completed" \
        in done.stderr
    assert "fold 0 seed 3: training failed" in done.stderr
    assert "members not kept (see the messages above): fold 0 seed 1,fold 0 seed 3" \
        in done.stderr
    assert sorted(path.name for path in results.iterdir()) == [
        "fold0_seed0.json", "fold0_seed0.txt", "fold0_seed2.json", "fold0_seed2.txt"]
    rows = len((folds / "fold0" / "test.txt").read_text().splitlines())
    kept = [float(value) for value in (results / "fold0_seed2.txt").read_text().split()]
    assert kept == pytest.approx([row / 10 for row in range(1, rows + 1)])
    summary = json.loads((results / "fold0_seed2.json").read_text())
    assert summary["best_epoch"] == 3 and summary["test_rows"] == rows
    assert summary["status"] == "completed"
    assert summary["target_scaler"] == {"mean": 1.0, "std": 2.0}  # the table's rule needs it
    # predict.py keeps implausible predictions: the table decides what to leave out.
    assert "predict.py" in calls.read_text() and all("--allow_implausible" in line for line in calls.read_text().splitlines()
               if line.startswith("predict.py"))
    # Rerun: kept members are skipped, the run that stopped on NaN is not trained again
    # (train.py would refuse its finished directory); only the crashed one is retried.
    calls.unlink()
    assert members().returncode == 1
    assert calls.read_text().split()[:1] == ["train.py"]
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["train.py"]
    assert "--seed=3" in calls.read_text()
