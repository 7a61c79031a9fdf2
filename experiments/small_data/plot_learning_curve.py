"""Plot held-out Pearson r against training rows for the model and the k-mer baseline.

    python experiments/small_data/plot_learning_curve.py \
        --table=docs/small_data_learning_curve.csv --output=docs/small_data_learning_curve.png

The table is CSV with columns rows, model_pearson, model_spearman, baseline_pearson,
baseline_spearman and, optionally, distill_pearson, distill_spearman (the distillation
recipe with the design generator) and mutate_pearson, mutate_spearman (with mutated
training rows: what --pretrain_generator=auto chooses on these synthetic data) and
recipe_pearson, recipe_spearman (flags/small_data.flags as shipped: auto with its LSTM
constraints; the mean over the seeds run) with recipe_seeds_pearson (each seed's Pearson
r, separated by spaces: drawn as points, so a mean never hides a seed below the
baseline); an empty model cell: not measured.
"""
import csv

from absl import app, flags
from matplotlib.figure import Figure

_TABLE = flags.DEFINE_string("table", None, "CSV learning-curve table.")
_OUTPUT = flags.DEFINE_string("output", None, "PNG to write.")
flags.mark_flags_as_required(["table", "output"])


def _series(rows, column):
    """(rows, value) of every value in `column`: a cell holds none (empty), one, or several
    separated by spaces (recipe_seeds_pearson)."""
    points = [(int(r["rows"]), float(value)) for r in rows
              for value in (r.get(column) or "").split()]
    return [p[0] for p in points], [p[1] for p in points]


def main(argv):
    del argv
    with open(_TABLE.value) as handle:
        rows = list(csv.DictReader(handle))
    figure = Figure(figsize=(7, 6))
    axes = figure.add_subplot()
    x, y = _series(rows, "recipe_seeds_pearson")
    if x:
        axes.plot(x, y, "v", color="0.4", markersize=4, linestyle="none", zorder=5,
                  label="model, the recipe, each seed, Pearson r")
    for column, label, style in (("recipe_pearson", "model, the recipe (auto + LSTM "
                                                    "constraints), Pearson r, seed mean",
                                  "v-"),
                                 ("recipe_spearman", "model, the recipe (auto + LSTM "
                                                     "constraints), Spearman, seed mean",
                                  "v--"),
                                 ("mutate_pearson", "model, auto (mutated rows), no LSTM "
                                                    "constraints, Pearson r", "^-"),
                                 ("mutate_spearman", "model, auto (mutated rows), no LSTM "
                                                     "constraints, Spearman", "^--"),
                                 ("distill_pearson", "model, distillation on designs, Pearson r",
                                  "D-"),
                                 ("distill_spearman", "model, distillation on designs, Spearman",
                                  "D--"),
                                 ("model_pearson", "model, first recipe, Pearson r", "o-"),
                                 ("model_spearman", "model, first recipe, Spearman", "o--"),
                                 ("baseline_pearson", "k-mer ridge, Pearson r", "s-"),
                                 ("baseline_spearman", "k-mer ridge, Spearman", "s--")):
        x, y = _series(rows, column)
        if x:
            axes.plot(x, y, style, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("training rows (synthetic data)")
    axes.set_ylabel("held-out correlation (5,000 rows)")
    axes.set_title("Learning curve: model vs built-in baseline", fontsize=10)
    axes.grid(alpha=0.3)
    # Below the axes: eleven series leave no free corner inside them.
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    figure.tight_layout()
    figure.savefig(_OUTPUT.value, dpi=120)


if __name__ == "__main__":
    app.run(main)
