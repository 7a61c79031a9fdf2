"""Held-out scores of experiment runs beside their baselines, one row per run, then the
mean over the runs (e.g. the folds of a cross-validation):

    python experiments/small_data/summarise_runs.py RUN_DIR [RUN_DIR ...]

Reads RUN_DIR/evaluation/heldout/metrics.json (written by run_experiment.sh) and
RUN_DIR/run.json (best epoch, its val_pearson, epochs run).
"""
import json
import os
import sys

import numpy as np


def _best_val_pearson(record) -> float:
    """The best epoch's val_pearson; nan when there is none (a diverged run's run.json has
    best_metrics: null)."""
    value = (record.get("best_metrics") or {}).get("val_pearson")
    return np.nan if value is None else float(value)


def summarise(run_dirs):
    rows = []
    for run_dir in run_dirs:
        metrics_path = os.path.join(run_dir, "evaluation", "heldout", "metrics.json")
        with open(metrics_path) as handle:
            metrics = json.load(handle)
        with open(os.path.join(run_dir, "run.json")) as handle:
            record = json.load(handle)
        baseline = metrics.get("baseline", {})
        rows.append({
            "run": run_dir, "epochs": record.get("epochs_completed"),
            "best_epoch": record.get("best_epoch"),
            "val_r": _best_val_pearson(record),
            "model_r": metrics["pearson"], "model_rho": metrics["spearman"],
            "ridge_r": baseline.get("pearson", np.nan),
            "ridge_rho": baseline.get("spearman", np.nan),
        })
    return rows


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    rows = summarise(argv[1:])
    columns = ["epochs", "best_epoch", "val_r", "model_r", "model_rho", "ridge_r", "ridge_rho"]
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        print(f"| {row['run']} | " + " | ".join(
            f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
            + " |")
    if len(rows) > 1:
        means = {c: np.mean([row[c] for row in rows]) for c in columns[2:]}
        print(f"| mean of {len(rows)} | | | " + " | ".join(
            f"{means[c]:.3f}" for c in columns[2:]) + " |")


if __name__ == "__main__":
    main(sys.argv)
