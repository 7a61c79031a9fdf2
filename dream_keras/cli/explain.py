"""dream-explain (and explain.py): why a trained run predicts what it does (docs/explain.md).

  dream-explain --model=RUN --input=FILE --output_dir=explained --logos=0,1
  dream-explain --model=RUN --input=FILE --output_dir=explained --motifs
"""
from __future__ import annotations

from absl import flags

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before prediction_flags, which imports the model code

from dream_keras.cli import runner  # noqa: E402
from dream_keras.cli.prediction_flags import define_prediction_flags  # noqa: E402
from dream_keras.errors import ConfigurationError  # noqa: E402
from dream_keras.explain.core import METHODS, check_methods  # noqa: E402

_SHARED = define_prediction_flags(
    chunk_rows_help="Input rows read at a time (they are explained 64 at a time).",
    reverse_complement_help="Explain the average of the forward and reverse-complement "
    "strand predictions (the reverse strand's attributions mapped onto the forward window).")

_INPUT = flags.DEFINE_string("input", None, "Sequences to explain, in any format predict.py "
                             "--input accepts (one per line, FASTA, or CSV/TSV with a "
                             "`sequence` column; gzip accepted).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory for attributions.h5, "
                                  "attributions.tsv, logos/ and modisco/.")
_METHODS = flags.DEFINE_multi_string(
    "methods", ",".join(METHODS),
    "Attribution methods, comma-separated (or the flag repeated): ism (every single-base "
    "substitution, exact, 3 x seq_len + 1 forward rows per sequence), gradient_x_input "
    "(one gradient), integrated_gradients (ig_steps + 1 gradients).")


def _known_methods(values) -> bool:
    try:
        check_methods(values)
    except ConfigurationError:
        return False
    return True


flags.register_validator("methods", _known_methods, message=f"--methods takes "
                         f"{', '.join(METHODS)} (comma-separated or the flag repeated)")
_IG_STEPS = flags.DEFINE_integer("ig_steps", 100, "Integrated gradients: path points "
                                 "minus one (trapezoid rule).", lower_bound=1)
_IG_BASELINE = flags.DEFINE_enum("ig_baseline", "zeros", ["zeros", "uniform"],
                                 "Integrated gradients' reference input: zeros (all N) or "
                                 "uniform (0.25 per base where the sequence has a base; "
                                 "nearly singular on trained runs: see docs/explain.md).")
_LOGOS = flags.DEFINE_list("logos", [], "0-based input rows to draw as sequence-logo PNGs "
                           "(logos/row<i>.png), or 'all'.")
_TSV = flags.DEFINE_bool("tsv", True, "Also write the tidy attributions.tsv (one line per "
                         "sequence position).")
_MOTIFS = flags.DEFINE_bool("motifs", False, "Run TF-MoDISco (needs modisco-lite: pip "
                            "install 'dream_keras[motifs]') on all the sequences' "
                            "attributions; writes modisco/ (its inputs, results and report).")
_MOTIF_SOURCE = flags.DEFINE_enum("motif_source", "ism", ["ism", "gradient"],
                                  "Hypothetical contributions given to TF-MoDISco: centred "
                                  "ISM or centred input gradient.")
_MOTIF_MAX_SEQLETS = flags.DEFINE_integer("motif_max_seqlets", 2000, "TF-MoDISco's "
                                          "maximum seqlets per sign.", lower_bound=1)
_MOTIF_DB = flags.DEFINE_string("motif_db", None, "A MEME motif file (e.g. yeast motifs) "
                                "to match the learned motifs against in the report.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the explain outputs in a "
                               "non-empty --output_dir.")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", True, "Run the model and its gradient "
                                 "XLA-compiled (as predict.py).")
runner.mark_required(["input", "output_dir"])


def run_explain(model_path, input_path, output_dir, *, methods, logo_rows=(),
                motifs: bool = False, motif_source: str = "ism", motif_max_seqlets=2000,
                motif_db=None, overwrite: bool = False, **options) -> str:
    """What dream-explain does; returns the summary it prints."""
    import os

    from dream_keras.explain import files, motifs as motif_step
    from dream_keras.explain.model_access import load_run
    from dream_keras.explain.logos import flanks_of_run
    from dream_keras.file_errors import check_input_file
    from dream_keras.run_directory import model_path_of, trained_run_records
    from dream_keras.strand_layers import refuse_second_strand_average

    if motifs and not motif_step.modisco_available():
        raise ConfigurationError("--motifs needs modisco-lite: pip install "
                                 "'dream_keras[motifs]' (or run without --motifs and feed "
                                 "the attributions to it later)")
    if motifs and motif_source == "ism" and "ism" not in methods:
        raise ConfigurationError("--motif_source=ism needs --methods to include ism")
    if motifs and motif_source == "gradient" and "gradient_x_input" not in methods:
        raise ConfigurationError("--motif_source=gradient needs --methods to include "
                                 "gradient_x_input")
    check_input_file(input_path)
    files.check_output_dir(output_dir, overwrite, inputs=[input_path])
    model, scaler = load_run(model_path)
    if options.get("reverse_complement_average"):
        refuse_second_strand_average(model, model_path_of(model_path))
    written = files.explain_file(model, scaler, input_path, output_dir, methods=methods,
                                 logo_rows=logo_rows, overwrite=overwrite,
                                 flanks=flanks_of_run(trained_run_records(
                                     model_path_of(model_path))), **options)
    summary = [f"explained {written['rows']} sequences: {written['h5']}"]
    if written["tsv"]:
        summary.append(f"tidy table: {written['tsv']}")
    if written["logos"]:
        summary.append(f"{len(written['logos'])} logos in {os.path.dirname(written['logos'][0])}")
    if motifs:
        directory = os.path.join(output_dir, "modisco")
        motif_step.write_modisco_inputs(written["h5"], directory, motif_source)
        summary.append(f"TF-MoDISco results: "
                       f"{motif_step.run_modisco(directory, max_seqlets=motif_max_seqlets, meme_db=motif_db)}")
    return "\n".join(summary)


def _logo_rows(values):
    if [value.lower() for value in values] == ["all"]:
        return "all"
    try:
        rows = [int(value) for value in values]
    except ValueError:
        raise ConfigurationError(f"--logos takes 0-based row numbers or 'all', got "
                                 f"{','.join(values)}") from None
    if any(row < 0 for row in rows):
        raise ConfigurationError("--logos rows are 0-based and cannot be negative")
    return rows


def explain_from_flags():
    return run_explain(
        _SHARED.model.value, _INPUT.value, _OUTPUT_DIR.value, methods=check_methods(_METHODS.value),
        logo_rows=_logo_rows(_LOGOS.value), motifs=_MOTIFS.value,
        motif_source=_MOTIF_SOURCE.value, motif_max_seqlets=_MOTIF_MAX_SEQLETS.value,
        motif_db=_MOTIF_DB.value, overwrite=_OVERWRITE.value,
        reverse_complement_average=_SHARED.reverse_complement_average.value,
        steps=_IG_STEPS.value, baseline=_IG_BASELINE.value,
        batch_size=_SHARED.batch_size.value, chunk_rows=_SHARED.chunk_rows.value,
        write_tsv=_TSV.value, jit_compile=_JIT_COMPILE.value,
        allow_implausible=_SHARED.allow_implausible.value)


def main() -> None:
    runner.run(explain_from_flags)


if __name__ == "__main__":
    main()
