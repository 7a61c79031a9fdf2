"""Evaluate a trained run: metrics on a labelled file, or the official DREAM challenge score.

  python evaluate.py --model=RUN/model.keras --data=FILE [--output_dir=DIR]
  python evaluate.py --model=RUN/model.keras --dream_dir=DIR [--dream_labels=ground.json]
"""
import sys

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "The trained model: RUN/model.keras (or the run "
                             "directory RUN); RUN/target_scaler.json must sit beside it.")
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
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1024, "Sequences per prediction batch.",
                                   lower_bound=1)
_CHUNK_ROWS = flags.DEFINE_integer("chunk_rows", 200_000, "Rows of --data read and predicted "
                                   "at a time (bounds memory).", lower_bound=1)
_REVERSE_COMPLEMENT_AVERAGE = flags.DEFINE_bool(
    "reverse_complement_average", False, "Average the forward and reverse-complement strand "
    "predictions.")
flags.mark_flag_as_required("model")
flags.register_multi_flags_validator(
    ["data", "dream_dir"], lambda values: bool(values["data"]) != bool(values["dream_dir"]),
    message="give exactly one of --data and --dream_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from dream_keras.evaluation import run_evaluation

    try:
        report = run_evaluation(
            _MODEL.value, data_path=_DATA.value, dream_dir=_DREAM_DIR.value,
            dream_labels=_DREAM_LABELS.value, output_dir=_OUTPUT_DIR.value,
            batch_size=_BATCH_SIZE.value, chunk_rows=_CHUNK_ROWS.value,
            reverse_complement_average=_REVERSE_COMPLEMENT_AVERAGE.value)
    except (OSError, ValueError) as error:  # DataFormatError is a ValueError
        sys.exit(f"error: {error}")
    print(report)


if __name__ == "__main__":
    app.run(main)
