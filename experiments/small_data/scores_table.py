"""One markdown table of evaluated runs (ensemble_vs_members.sh, score_runs.sh): each run's
best validation r (run.json) beside its held-out scores, the k-mer ridge's on the row
after the run whose evaluation holds the baseline, and the diverged epochs.

    python experiments/small_data/scores_table.py KIND RESULT RUN_DIR...

KIND is "dream" (RESULT dream_score.json: the challenge's scores and each subset's r) or
"heldout" (RESULT metrics.json: Pearson and Spearman r); each RUN_DIR holds
evaluation/KIND/RESULT. A directory without run.json (an ensemble file's) is named
"ensemble".
"""
import json
import os
import sys

SUBSETS = ["all", "high", "low", "yeast", "random", "challenging", "motif_perturbation",
           "motif_tiling"]


def cells(kind, scores):
    if kind != "dream":
        return [f"{scores['pearson']:.3f}", f"{scores['spearman']:.3f}"]
    r = [scores["subsets"].get(name, {}).get("pearson") for name in SUBSETS]
    return [f"{scores['pearson_score']:.3f}", f"{scores['spearman_score']:.3f}"] + \
        ["" if value is None else f"{value:.3f}" for value in r]


def main(kind, result, *runs):
    if kind == "dream":
        header = ["Pearson score", "Spearman score"] + [f"r {name}" for name in SUBSETS]
    else:
        header = ["held-out r", "held-out rho"]
    print("| model | val_pearson | diverged epochs | " + " | ".join(header) + " |")
    print("|---" * (3 + len(header)) + "|")
    for run in runs:
        scores = json.load(open(os.path.join(run, "evaluation", kind, result)))
        record_path = os.path.join(run, "run.json")
        record = json.load(open(record_path)) if os.path.isfile(record_path) else None
        if record is None:
            name, val, diverged = "ensemble", "", ""
        else:
            name = os.path.basename(os.path.normpath(run))
            val = (record.get("best_metrics") or {}).get("val_pearson")
            val = "" if val is None else f"{val:.3f}"
            diverged = ", ".join(map(str, record.get("diverged_epochs") or [])) or "none"
        print(f"| {name} | {val} | {diverged} | " + " | ".join(cells(kind, scores)) + " |")
        if "baseline" in scores:
            print("| k-mer ridge | | | " + " | ".join(cells(kind, scores["baseline"])) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
