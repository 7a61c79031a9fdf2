"""Cross-validation table of seed ensembles from the kept member predictions of
cv_member_predictions.sh, beside the built-in k-mer ridge of each fold:

    python experiments/small_data/cv_ensemble_table.py --fold_dir=FOLD_DIR \
        --results_dir=experiments/small_data/results/cv_distill --seeds=0,1,2

Per fold: every member's held-out Pearson r and Spearman rho, the ensemble's and the
ridge's. The ensemble's prediction for a row (--combine=plausible_mean, the default) is the
mean of the members' expression-scale, strand-averaged predictions that are plausible
(dream_keras.plausibility, each member judged by its own target scaler, kept in its
.json): the rule ensemble.py's one-file ensemble applies (it judges each strand's output
on its own, so a member with one exploded strand keeps the other there); while every
member is plausible, exactly their mean. --combine=mean is the plain mean (the table as
published before that rule); --combine=file reads the fold's one-file ensemble's own
predictions (fold<i>_file.txt, kept by cv_file_predictions.py): the product a user loads,
whose rule judges each strand. The count of left-out member predictions is printed. The
ridge is, fitted on all of the fold's training
rows as `evaluate.py --baseline_train_data` fits it. The ridge's predictions are kept in
RESULTS_DIR/fold<i>_ridge.txt (+ .json) on first use, so the table is rebuilt without
refitting. The mean row covers only the folds that have every requested seed, and the
output names the folds left out. A member whose test_sha256 does not match the fold's
test.txt is refused (its predictions belong to other rows).

Below the table, a paired bootstrap of the mean difference ensemble - ridge over those
folds (--bootstrap resamples of each fold's held-out rows, drawn within the fold, the same
rows for both): its 95 % percentile interval and the share of resamples above 0, so a
difference of a few thousandths is read against the noise of 1,474 rows per fold.
"""
import json
import os

import numpy as np
from absl import app, flags
from scipy import stats

from dream_keras import atomic_files
from dream_keras.baseline import fit_kmer_ridge_file
from dream_keras.data.cache import file_sha256
from dream_keras.data.readers import read_expression_file
from dream_keras.data.splits import TargetScaler
from dream_keras.plausibility import implausible_mask
from dream_keras.metrics import pearson_r, spearman_rho

_FOLD_DIR = flags.DEFINE_string("fold_dir", None, "Folds of make_folds.py: fold<i>/{train,test}.txt.")
_RESULTS_DIR = flags.DEFINE_string("results_dir", None, "Where cv_member_predictions.sh kept "
                                   "fold<i>_seed<K>.txt/.json.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "The ensemble's members (seeds).")
_FOLDS = flags.DEFINE_list("folds", ["0", "1", "2", "3", "4"], "Folds to report.")
_COMBINE = flags.DEFINE_enum("combine", "plausible_mean", ["plausible_mean", "mean", "file"],
                            "How the members' predictions are averaged (see above); file: "
                            "the fold's one-file ensemble's own predictions, kept by "
                            "cv_file_predictions.py as fold<i>_file.txt.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 2000, "Resamples of the paired bootstrap "
                                  "of ensemble - ridge (0: none).", lower_bound=0)
flags.mark_flags_as_required(["fold_dir", "results_dir"])


def _predictions(path: str, rows: int) -> np.ndarray:
    values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if values.shape != (rows,):
        raise ValueError(f"{path}: {values.shape[0]} predictions for {rows} held-out rows")
    return values


def _ridge_predictions(fold_dir: str, results_dir: str, fold: str, rows: int) -> tuple:
    """The ridge's held-out predictions, refitted unless the kept ones were made from
    these very train.txt and test.txt (their SHA-256 in the .json)."""
    base = os.path.join(results_dir, f"fold{fold}_ridge")
    train, test = (os.path.join(fold_dir, f"fold{fold}", name) for name in ("train.txt", "test.txt"))
    files = {"train_sha256": file_sha256(train), "test_sha256": file_sha256(test)}
    kept = None
    if os.path.exists(base + ".json") and os.path.exists(base + ".txt"):
        with open(base + ".json") as handle:
            kept = json.load(handle)
    if kept is None or any(kept.get(key) != value for key, value in files.items()):
        ridge = fit_kmer_ridge_file(train)
        test_sequences, _ = read_expression_file(test)
        with atomic_files.replacing_open(base + ".txt") as handle:
            np.savetxt(handle, ridge.predict(test_sequences), fmt="%.6f")
        kept = {"k": ridge.k, "penalty": ridge.penalty, **files}
        atomic_files.write_text(base + ".json", json.dumps(kept) + "\n")  # last: marks it done
    return _predictions(base + ".txt", rows), kept


def _scores(predicted, measured) -> tuple:
    return pearson_r(predicted, measured), spearman_rho(predicted, measured)


def combined(members: dict, scalers: dict, combine: str) -> tuple:
    """(ensemble predictions [n], member predictions left out): the plain mean, or the
    mean of each row's plausible member predictions (all of them where none is)."""
    values = np.array(list(members.values()))
    if combine == "mean":
        return values.mean(axis=0), 0
    missing = [seed for seed in members if not scalers.get(seed)]
    if missing:
        raise ValueError(f"seeds {missing}: no target_scaler in their .json, which "
                         "--combine=plausible_mean needs (or pass --combine=mean)")
    outside = np.array([implausible_mask(members[seed], TargetScaler(**scalers[seed]))
                        for seed in members])
    inside = ~outside & np.isfinite(values)
    count = inside.sum(axis=0)
    plausible = np.where(inside, values, 0.0).sum(axis=0) / np.maximum(count, 1)
    return np.where(count > 0, plausible, values.mean(axis=0)), int(outside.sum())


def _file_predictions(results_dir: str, fold: str, seeds: list, test_sha256: str,
                      rows: int) -> tuple:
    """(predictions, 0) of the fold's ensemble file, refused when they are of other rows
    or another set of members."""
    base = os.path.join(results_dir, f"fold{fold}_file")
    if not (os.path.exists(base + ".txt") and os.path.exists(base + ".json")):
        raise ValueError(f"{base}.txt/.json missing: run cv_file_predictions.py (or pass "
                         "--combine=plausible_mean)")
    with open(base + ".json") as handle:
        summary = json.load(handle)
    if summary["test_sha256"] != test_sha256:
        raise ValueError(f"{base}.json: predicted another test.txt")
    if sorted(map(str, summary["member_seeds"])) != sorted(map(str, seeds)):
        raise ValueError(f"{base}.json: an ensemble of seeds {summary['member_seeds']}, not "
                         f"{','.join(seeds)}")
    return _predictions(base + ".txt", rows), 0


def fold_row(fold_dir: str, results_dir: str, fold: str, seeds: list,
             combine: str = "plausible_mean") -> dict:
    test = os.path.join(fold_dir, f"fold{fold}", "test.txt")
    _, measured = read_expression_file(test)
    test_sha256 = file_sha256(test)
    members, diverged, scalers = {}, {}, {}
    for seed in seeds:
        base = os.path.join(results_dir, f"fold{fold}_seed{seed}")
        if not (os.path.exists(base + ".txt") and os.path.exists(base + ".json")):
            continue
        with open(base + ".json") as handle:
            summary = json.load(handle)
        if summary["test_sha256"] != test_sha256:
            raise ValueError(f"{base}.json: predicted another test.txt than {test}")
        members[seed] = _predictions(base + ".txt", len(measured))
        diverged[seed] = summary["diverged_epochs"]
        scalers[seed] = summary.get("target_scaler")
    ridge, ridge_fit = _ridge_predictions(fold_dir, results_dir, fold, len(measured))
    row = {"fold": fold, "members": {s: _scores(p, measured) for s, p in members.items()},
           "diverged_epochs": diverged, "ridge": _scores(ridge, measured), "ridge_fit": ridge_fit,
           "complete": len(members) == len(seeds)}
    if members and combine == "file":
        row["ensemble_predictions"], row["left_out"] = _file_predictions(
            results_dir, fold, seeds, test_sha256, len(measured))
    elif members:
        row["ensemble_predictions"], row["left_out"] = combined(members, scalers, combine)
    if members:
        row["ensemble"] = _scores(row["ensemble_predictions"], measured)
    row["ridge_predictions"], row["measured"] = ridge, measured
    return row


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def paired_bootstrap(folds: list, resamples: int, seed: int = 0) -> dict:
    """{'pearson'|'spearman': (mean difference, 2.5 %, 97.5 %, share above 0)} of the mean
    over `folds` ((model, ridge, measured) arrays) of model - ridge, resampling each
    fold's rows with replacement (the same rows for model and ridge)."""
    rng = np.random.default_rng(seed)
    differences = {"pearson": 0.0, "spearman": 0.0}
    point = {"pearson": 0.0, "spearman": 0.0}
    for model, ridge, measured in folds:
        index = rng.integers(0, len(measured), size=(resamples, len(measured)))
        y = measured[index]
        ranked_y = stats.rankdata(y, axis=1)
        for name, transform in (("pearson", None), ("spearman", "rank")):
            def score(predicted, name=name, transform=transform):
                values = predicted[index]
                if transform:
                    return _rowwise_pearson(stats.rankdata(values, axis=1), ranked_y)
                return _rowwise_pearson(values, y)
            differences[name] = differences[name] + (score(model) - score(ridge)) / len(folds)
        point["pearson"] += (pearson_r(model, measured) - pearson_r(ridge, measured)) / len(folds)
        point["spearman"] += (spearman_rho(model, measured)
                              - spearman_rho(ridge, measured)) / len(folds)
    return {name: (point[name], *np.percentile(values, [2.5, 97.5]), float(np.mean(values > 0)))
            for name, values in differences.items()}


def markdown(rows: list, seeds: list, resamples: int = 0) -> str:
    header = ("| fold | " + " | ".join(f"seed {s} r / rho" for s in seeds)
              + f" | {len(seeds)}-seed ensemble r / rho | ridge r / rho | diverged epochs |")
    lines = [header, "|" + "---|" * (len(seeds) + 4)]
    for row in rows:
        cells = [f"{row['members'][s][0]:.3f} / {row['members'][s][1]:.3f}"
                 if s in row["members"] else "not run" for s in seeds]
        ensemble = (f"{row['ensemble'][0]:.3f} / {row['ensemble'][1]:.3f}"
                    if row["complete"] else "incomplete")
        diverged = "; ".join(f"seed {s}: {', '.join(map(str, e))}"
                             for s, e in row["diverged_epochs"].items() if e) or "none"
        lines.append(f"| {row['fold']} | " + " | ".join(cells) + f" | {ensemble} | "
                     f"{row['ridge'][0]:.3f} / {row['ridge'][1]:.3f} | {diverged} |")
    complete = [row for row in rows if row["complete"]]
    if complete:
        mean = np.mean([row["ensemble"] for row in complete], axis=0)
        ridge = np.mean([row["ridge"] for row in complete], axis=0)
        lines.append(f"| mean of folds {', '.join(r['fold'] for r in complete)} | "
                     + " | ".join("" for _ in seeds)
                     + f" | **{mean[0]:.4f} / {mean[1]:.4f}** | **{ridge[0]:.4f} / {ridge[1]:.4f}** | |")
        if resamples:
            found = paired_bootstrap([(row["ensemble_predictions"], row["ridge_predictions"],
                                       row["measured"]) for row in complete], resamples)
            lines.append(f"\nPaired bootstrap of the mean {len(seeds)}-seed ensemble - ridge "
                         f"over folds {', '.join(r['fold'] for r in complete)} ({resamples} "
                         "resamples of each fold's held-out rows): " + "; ".join(
                             f"{name} {d:+.4f} (95 % interval {low:+.4f} to {high:+.4f}; "
                             f"above 0 in {100 * above:.1f} % of resamples)"
                             for name, (d, low, high, above) in found.items()))
    missing = [row["fold"] for row in rows if not row["complete"]]
    if missing:
        lines.append(f"\nFolds without all {len(seeds)} seeds (not in the mean): "
                     + ", ".join(missing))
    return "\n".join(lines)


def main(argv):
    del argv
    seeds = list(_SEEDS.value)
    rows = [fold_row(_FOLD_DIR.value, _RESULTS_DIR.value, fold, seeds, _COMBINE.value)
            for fold in _FOLDS.value]
    print(markdown(rows, seeds, _BOOTSTRAP.value))
    left_out = {row["fold"]: row["left_out"] for row in rows if row.get("left_out")}
    if _COMBINE.value == "file":
        print("\nEnsemble: --combine=file (each fold's one-file ensemble, as predict.py "
              "--reverse_complement_average scores it)")
    else:
        print(f"\nEnsemble: --combine={_COMBINE.value}; member predictions left out as "
              "implausible: " + (", ".join(f"fold {fold}: {count}" for fold, count in
                                           left_out.items()) or "none"))


if __name__ == "__main__":
    app.run(main)
