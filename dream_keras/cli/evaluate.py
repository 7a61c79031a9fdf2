"""dream-evaluate (and evaluate.py): metrics on a labelled file, or the official DREAM score.

  dream-evaluate --model=RUN/model.keras --data=FILE [--output_dir=DIR]
  dream-evaluate --model=RUN/model.keras --dream_dir=DIR [--dream_labels=ground.json]

Add --baseline_train_data=TRAIN_FILE to fit the k-mer ridge baseline on the run's training
file and report it beside the model, on the same rows, scale and DREAM subsets.
"""
from __future__ import annotations

from absl import flags

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before prediction_flags, which imports the model code

from dream_keras.cli import commands, runner  # noqa: E402
from dream_keras.cli.prediction_flags import define_prediction_flags  # noqa: E402

_SHARED = define_prediction_flags(
    chunk_rows_help="Rows of --data read and predicted at a time (bounds memory).",
    reverse_complement_help="Average the forward and reverse-complement strand predictions.")

_DATA = flags.DEFINE_string("data", None, "A labelled sequence<TAB>expression file (the "
                            "challenge's training format, optionally gzipped).")
_DREAM_DIR = flags.DEFINE_string("dream_dir", None, "A directory in the DREAM 2022 layout: "
                                 "test_subsets/*.csv (+ public_leaderboard/*.json labels).")
_DREAM_LABELS = flags.DEFINE_string("dream_labels", None, "With --dream_dir: a JSON "
                                    "{\"<pos>\": value} of labels (e.g. ground.json); "
                                    "default: the per-subset JSONs in public_leaderboard/.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the results. Default: "
                                  "RUN/evaluation/<data file stem>/ or "
                                  "RUN/evaluation/dream_score/.")
_BASELINE_TRAIN_DATA = flags.DEFINE_string(
    "baseline_train_data", None, "Also fit the built-in baseline (ridge regression on k-mer "
    "counts, k in 3..6 and the penalty chosen by leave-one-out cross-validation) on every "
    "row of this labelled file (normally the run's --train_data) and report its metrics "
    "beside the model's. About a minute of CPU for 40,000 rows and 2.2 minutes for "
    "200,000; the fit's working memory stays about 0.7 GiB whatever the rows (the file's "
    "sequences are held besides: ~1 GB for the 6.7M DREAM rows; benchmarks/ridge_bench.py).")
_BASELINE_SKIP_BAD_ROWS = flags.DEFINE_bool(
    "baseline_skip_bad_rows", False, "With --baseline_train_data: leave out its malformed "
    "rows (a header line, NA values, ...), counted in a warning and in the baseline's "
    "skipped_train_rows, as train.py --skip_bad_rows does; without it they stop the "
    "evaluation, naming file and line.")
_DREAM_PARTIAL = flags.DEFINE_enum(
    "dream_partial", "mark", ["mark", "refuse"], "With --dream_dir, when a subset is missing "
    "(its file absent, or no labelled row with a known sequence) or has fewer than "
    "--dream_min_subset_rows rows: mark: score the rest, marked partial (missing subsets "
    "and files named, score renormalised over the weights actually scored; the public "
    "DREAM release has no SNV sequences, so its score is always partial); refuse: stop "
    "with an error.")
_DREAM_MIN_SUBSET_ROWS = flags.DEFINE_integer(
    "dream_min_subset_rows", 10, "With --dream_dir: a subset with fewer rows is reported "
    "but not counted (a correlation of a few points means nothing).", lower_bound=2)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace results of ANOTHER data file in the output directory "
    "(fold.1.txt and fold.2.txt have their own; x.txt and x.tsv share RUN/evaluation/x/), "
    "or with --dream_dir a score of other labels (--dream_labels or the public "
    "leaderboard's). Results of the same data are always replaced; files this command did "
    "not write never are.")
flags.register_multi_flags_validator(
    ["data", "dream_dir", "dream_labels"],
    lambda values: runner.no_problem(commands.evaluation_problem(
        data_path=values["data"], dream_dir=values["dream_dir"],
        dream_labels=values["dream_labels"])))


def evaluate_from_flags():
    return commands.run_evaluation(
        _SHARED.model.value, data_path=_DATA.value, dream_dir=_DREAM_DIR.value,
        dream_labels=_DREAM_LABELS.value, output_dir=_OUTPUT_DIR.value,
        batch_size=_SHARED.batch_size.value, chunk_rows=_SHARED.chunk_rows.value,
        reverse_complement_average=_SHARED.reverse_complement_average.value,
        baseline_train_data=_BASELINE_TRAIN_DATA.value,
        baseline_skip_bad_rows=_BASELINE_SKIP_BAD_ROWS.value, dream_partial=_DREAM_PARTIAL.value,
        dream_min_subset_rows=_DREAM_MIN_SUBSET_ROWS.value, overwrite=_OVERWRITE.value,
        allow_implausible=_SHARED.allow_implausible.value)


def main() -> None:
    runner.run(evaluate_from_flags)


if __name__ == "__main__":
    main()
