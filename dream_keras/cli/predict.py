"""dream-predict (and predict.py): score sequences or variant pairs, or export a SavedModel.

  dream-predict --model=RUN/model.keras --input=FILE --output=predictions.tsv
  dream-predict --model=RUN/model.keras --pairs=pairs.tsv --output=effects.tsv
  dream-predict --model=RUN/model.keras --export=DIR
"""
from __future__ import annotations

from absl import flags

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before prediction_flags, which imports the model code

from dream_keras.cli import commands, runner  # noqa: E402
from dream_keras.cli.prediction_flags import define_prediction_flags  # noqa: E402

_SHARED = define_prediction_flags(
    chunk_rows_help="Input rows read, predicted and written at a time (bounds memory).",
    reverse_complement_help="Average the forward and reverse-complement strand predictions (also inside --export).")

_INPUT = flags.DEFINE_string("input", None, "Sequences to predict: one per line (a second "
                             "tab-separated column is ignored), FASTA, or a CSV/TSV with a "
                             "header holding a `sequence` column; gzip accepted.")
_PAIRS = flags.DEFINE_string("pairs", None, "Variant pairs: CSV/TSV with header columns "
                             "ref_sequence and alt_sequence.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file for --input or --pairs "
                               "(gzipped when the name ends in .gz).")
_FORMAT = flags.DEFINE_enum("format", "tsv", ["tsv", "dream_json"], "Output of --input: TSV "
                            "sequence<TAB>prediction after the input's other fields (a "
                            "FASTA id, a table's other columns), or the challenge's JSON "
                            "{\"<row index>\": prediction}.")
_EXPORT = flags.DEFINE_string("export", None, "Write a TF SavedModel here whose serving "
                              "signature maps sequence strings to expression.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output / --export.")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", True, "Run the model XLA-compiled (one fixed "
                                 "batch shape, compiled once; faster on CPU, see "
                                 "docs/scoring.md); --nojit_compile runs it as plain "
                                 "TensorFlow graph ops.")
flags.register_multi_flags_validator(
    ["input", "pairs", "output", "export", "format"],
    lambda values: runner.no_problem(commands.prediction_problem(
        input_path=values["input"], pairs_path=values["pairs"], output_path=values["output"],
        export_dir=values["export"], output_format=values["format"])))


def predict_from_flags():
    return commands.run_prediction(
        _SHARED.model.value, input_path=_INPUT.value, pairs_path=_PAIRS.value,
        output_path=_OUTPUT.value, export_dir=_EXPORT.value, output_format=_FORMAT.value,
        batch_size=_SHARED.batch_size.value, chunk_rows=_SHARED.chunk_rows.value,
        reverse_complement_average=_SHARED.reverse_complement_average.value,
        overwrite=_OVERWRITE.value, jit_compile=_JIT_COMPILE.value,
        allow_implausible=_SHARED.allow_implausible.value)


def main() -> None:
    runner.run(predict_from_flags)


if __name__ == "__main__":
    main()
