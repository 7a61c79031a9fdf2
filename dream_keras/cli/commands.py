"""What predict.py and evaluate.py do, given their settings: checks, then library calls.

The command lines' cross-flag rules live here, once (`prediction_problem`,
`evaluation_problem`): the absl flag validators of cli/predict.py and cli/evaluate.py and
the `run_*` functions below all call them. Library errors name parameters in backticks
(`overwrite=True`); cli/runner.py shows them as the flags that set those parameters.
"""
from __future__ import annotations

from dream_keras.data.readers import DEFAULT_CHUNK_ROWS
from dream_keras.dream_score import MIN_SUBSET_ROWS
from dream_keras.errors import ConfigurationError
from dream_keras.inference import DEFAULT_BATCH_SIZE


def prediction_problem(*, input_path, pairs_path, output_path, export_dir,
                       output_format="tsv") -> str | None:
    """Why this predict.py request cannot run (a message naming flags), or None."""
    if input_path and pairs_path:
        return "give --input or --pairs, not both"
    if not (input_path or pairs_path or export_dir):
        return "nothing to do: give --input, --pairs or --export"
    if (input_path or pairs_path) and not output_path:
        return "--output is required with --input or --pairs"
    if pairs_path and output_format != "tsv":
        return "--pairs writes TSV only (--format=tsv)"
    if not output_path and output_format != "tsv":
        return "--format is the format of --output: give --input and --output, or drop it"
    return None


def evaluation_problem(*, data_path, dream_dir, dream_labels=None) -> str | None:
    """Why this evaluate.py request cannot run (a message naming flags), or None."""
    if bool(data_path) == bool(dream_dir):
        return "give exactly one of --data and --dream_dir"
    if dream_labels and not dream_dir:
        return "--dream_labels needs --dream_dir"
    return None


def _refuse(problem: str | None) -> None:
    if problem:
        raise ConfigurationError(problem)


def run_prediction(model_path, *, input_path=None, pairs_path=None, output_path=None,
                   export_dir=None, output_format: str = "tsv",
                   batch_size: int = DEFAULT_BATCH_SIZE, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   reverse_complement_average: bool = False, overwrite: bool = False,
                   jit_compile: bool = True, allow_implausible: bool = False) -> str:
    """What `predict.py` does: predict a file, a pair file, and/or export. Returns a summary.

    Output paths (never an input: the model, its target scaler, --input/--pairs; never a
    non-regular file; never inside the export: safe_output) and inputs are checked before
    the model loads, so a refusal is immediate.
    """
    from dream_keras.export import check_export_dir, export_serving
    from dream_keras.strand_layers import refuse_second_strand_average
    from dream_keras.file_errors import check_input_file
    from dream_keras.inference import load_run, model_path_of, scaler_path_of
    from dream_keras.prediction_files import (check_output_writable, predict_file,
                                              predict_pairs_file)
    from dream_keras.safe_output import check_outside

    _refuse(prediction_problem(input_path=input_path, pairs_path=pairs_path,
                               output_path=output_path, export_dir=export_dir,
                               output_format=output_format))
    inputs = [input_path, pairs_path, model_path_of(model_path), scaler_path_of(model_path)]
    check_outside(output_path, export_dir)
    if output_path:
        check_output_writable(output_path, overwrite, inputs=inputs)
    if export_dir:
        check_export_dir(export_dir, overwrite, inputs=inputs)
    for source in (input_path, pairs_path):
        if source:
            check_input_file(source)
    model, scaler = load_run(model_path)
    if reverse_complement_average:  # before any work: every path below refuses it
        refuse_second_strand_average(model, model_path_of(model_path))
    options = dict(batch_size=batch_size, chunk_rows=chunk_rows, overwrite=overwrite,
                   reverse_complement_average=reverse_complement_average,
                   jit_compile=jit_compile, allow_implausible=allow_implausible)
    summary = []
    if input_path:
        rows = predict_file(model, scaler, input_path, output_path,
                            output_format=output_format, **options)
        summary.append(f"wrote {rows} predictions to {output_path}")
    if pairs_path:
        rows = predict_pairs_file(model, scaler, pairs_path, output_path, **options)
        summary.append(f"wrote {rows} variant effects to {output_path}")
    if export_dir:
        export_serving(model, scaler, export_dir, overwrite=overwrite,
                       reverse_complement_average=reverse_complement_average)
        summary.append(f"exported a SavedModel (signature 'serving_default': sequences "
                       f"tf.string [None] -> expression float32 [None]; "
                       f"'serve_with_plausibility' also plausible bool [None]) to {export_dir}")
    return "\n".join(summary)


def run_evaluation(model_path, *, data_path=None, dream_dir=None, dream_labels=None,
                   output_dir=None, batch_size=DEFAULT_BATCH_SIZE,
                   chunk_rows=DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                   baseline_train_data=None, baseline_skip_bad_rows: bool = False,
                   dream_partial: str = "mark", dream_min_subset_rows: int = MIN_SUBSET_ROWS,
                   overwrite: bool = False, allow_implausible: bool = False) -> str:
    """What `evaluate.py` does; returns the text to print (tables and where files went).

    `baseline_train_data`: fit the k-mer ridge baseline on that labelled file first and
    report it beside the model (`baseline_skip_bad_rows`: leaving its bad rows out, as
    training with skip_bad_rows does). `dream_partial` and `dream_min_subset_rows`: what
    `evaluate_dream` does with an incomplete DREAM score (its `partial`, `min_subset_rows`).
    `overwrite`: results of another data file (or other DREAM labels) may be replaced.
    `allow_implausible`: score predictions outside the plausible range (refused by
    default; dream_keras.plausibility), recording a warning with the results."""
    from dream_keras import dream_score
    from dream_keras.evaluation import (DREAM_PREDICTIONS_JSON, DREAM_SCORE_JSON, METRICS_JSON,
                                        METRICS_MD, RESIDUALS_PNG, SCATTER_PNG, evaluate_dream,
                                        evaluate_file, format_metrics_table)

    _refuse(evaluation_problem(data_path=data_path, dream_dir=dream_dir,
                               dream_labels=dream_labels))
    # The baseline is fitted once the inputs and outputs have passed their checks.
    if data_path:
        metrics, where = evaluate_file(model_path, data_path, output_dir,
                                       batch_size=batch_size, chunk_rows=chunk_rows,
                                       reverse_complement_average=reverse_complement_average,
                                       overwrite=overwrite,
                                       baseline_train_data=baseline_train_data,
                                       baseline_skip_bad_rows=baseline_skip_bad_rows,
                                       allow_implausible=allow_implausible)
        return f"{format_metrics_table(metrics)}\nwrote {METRICS_JSON}, {METRICS_MD}, " \
               f"{SCATTER_PNG}, {RESIDUALS_PNG} to {where}"
    score, where = evaluate_dream(model_path, dream_dir, dream_labels, output_dir,
                                  batch_size=batch_size,
                                  reverse_complement_average=reverse_complement_average,
                                  partial=dream_partial, min_subset_rows=dream_min_subset_rows,
                                  baseline_train_data=baseline_train_data,
                                  baseline_skip_bad_rows=baseline_skip_bad_rows,
                                  overwrite=overwrite, allow_implausible=allow_implausible)
    text = dream_score.format_score_table(score)
    if "baseline" in score:
        baseline = score["baseline"]
        text += (f"\nbaseline ({baseline['k']}-mer ridge on {baseline['train_rows']:,} rows):\n"
                 + dream_score.format_score_table(baseline))
    return f"{text}\nwrote {DREAM_SCORE_JSON}, {DREAM_PREDICTIONS_JSON} to {where}"
