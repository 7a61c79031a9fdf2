"""Evaluate a trained run: metrics tables (text, JSON, Markdown), plots, the DREAM score.

Errors (MSE, R²) are on the STANDARDISED scale: measured expression is standardised with
the run's own target scaler, so the numbers compare with the training log and the
original's report. Correlations do not depend on the scale. With a fitted k-mer ridge
baseline, its metrics on the same rows are reported beside the model's (metrics.json / dream_score.json key "baseline"). Outputs go to
`RUN/evaluation/<data file stem>/` (or `RUN/evaluation/dream_score/`) unless an output
directory is given; a file there that this package did not write is never replaced.
"""
from __future__ import annotations

import json
import os

import numpy as np
from absl import logging
from matplotlib.figure import Figure

from dream_keras import dream_score
from dream_keras.baseline import KmerRidge
from dream_keras.inference import (DEFAULT_BATCH_SIZE, load_run, model_path_of, model_seq_len,
                                   predict_standardised, refuse_non_finite, scaler_path_of)
from dream_keras.metrics import correlation_summary, pearson_r
from dream_keras.data.readers import DEFAULT_CHUNK_ROWS, DataFormatError, iter_chunks
from dream_keras.data.sequences import InvalidSequenceError
from dream_keras.atomic_files import replacing_open
from dream_keras.errors import ConfigurationError, OutputExistsError
from dream_keras.file_errors import check_input_file, writing
from dream_keras.plausibility import PlausibilityCheck
from dream_keras.safe_output import check_output_path, check_parent_writable, write_json
from dream_keras.strand_layers import refuse_second_strand_average

METRICS_JSON, METRICS_MD = "metrics.json", "metrics.md"
SCATTER_PNG, RESIDUALS_PNG = "predicted_vs_measured.png", "residuals.png"
DREAM_SCORE_JSON, DREAM_PREDICTIONS_JSON = "dream_score.json", "dream_predictions.json"
MANIFEST = ".dream_keras_evaluation.json"  # names of the files evaluate.py wrote here
PARTIAL_CHOICES = ("mark", "refuse")  # what evaluate_dream does with an incomplete score
HEXBIN_ABOVE_N = 2000  # above this many points a scatter becomes a density (hexbin) plot


def regression_metrics(predicted, measured) -> dict:
    """n, mse, r2 (= 1 - SSE/SST), pearson, pearson_r2, spearman of two [n] arrays
    (the names of metrics.METRIC_NAMES)."""
    predicted = np.asarray(predicted, np.float64).reshape(-1)
    measured = np.asarray(measured, np.float64).reshape(-1)
    if predicted.size != measured.size or predicted.size == 0:
        raise ValueError(f"need equal, non-zero numbers of values, got {predicted.size} "
                         f"predicted and {measured.size} measured")
    sse = float(np.sum((measured - predicted) ** 2))
    sst = float(np.sum((measured - measured.mean()) ** 2))
    return {"mse": sse / predicted.size, "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
            **correlation_summary(predicted, measured)}


_ROWS = (("n", "n", "{:d}"), ("mse", "MSE (standardised)", "{:.4f}"),
         ("r2", "R² (standardised)", "{:.4f}"), ("pearson", "Pearson r", "{:.4f}"),
         ("pearson_r2", "Pearson r²", "{:.4f}"), ("spearman", "Spearman rho", "{:.4f}"))


def format_metrics_table(metrics: dict) -> str:
    """Plain-text table for the terminal: the model's column, and the baseline's if any."""
    baseline = metrics.get("baseline")
    lines = [f"{'':<20}{'model':>10}{'k-mer ridge':>14}"] if baseline else []
    for key, label, fmt in _ROWS:
        line = f"{label:<20}{fmt.format(metrics[key]):>10}"
        lines.append(line + (f"{fmt.format(baseline[key]):>14}" if baseline else ""))
    return "\n".join(lines)


def metrics_markdown(metrics: dict, title: str) -> str:
    """A Markdown table with a title line (and a baseline column when there is one)."""
    baseline = metrics.get("baseline")
    if baseline:
        lines = [f"# {title}", "", f"| metric | model | baseline: {baseline['k']}-mer ridge |",
                 "|---|---|---|"]
        lines += [f"| {label} | {fmt.format(metrics[key])} | {fmt.format(baseline[key])} |"
                  for key, label, fmt in _ROWS]
    else:
        lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {label} | {fmt.format(metrics[key])} |" for key, label, fmt in _ROWS]
    lines += [f"\n**Warning:** {warning}." for warning in metrics.get("warnings", [])]
    lines += ["", "MSE and R² use targets standardised with the run's target scaler; "
              "R² = 1 - SSE/SST. Pearson r is over every row (not a batch average)."]
    if baseline:
        source = f" of {baseline['train_data']}" if baseline.get("train_data") else ""
        lines += [f"The baseline is a ridge regression on {baseline['k']}-mer counts fitted on "
                  f"{baseline['train_rows']:,} rows{source} (k and penalty by leave-one-out "
                  "cross-validation), scored on the same rows and scale."]
    return "\n".join(lines) + "\n"


def _density_or_scatter(axes, x, y):
    if x.size > HEXBIN_ABOVE_N:
        image = axes.hexbin(x, y, gridsize=80, bins="log", mincnt=1, cmap="viridis")
        axes.figure.colorbar(image, ax=axes, label="rows per hexagon (log)")
    else:
        axes.scatter(x, y, s=6, alpha=0.5, linewidths=0)


def plot_predicted_vs_measured(predicted, measured, path, title: str) -> None:
    """PNG: predicted (y) against measured (x), density-shaded for large n, with y = x."""
    predicted, measured = np.asarray(predicted), np.asarray(measured)
    figure = Figure(figsize=(5.5, 5))
    axes = figure.add_subplot()
    _density_or_scatter(axes, measured, predicted)
    low = float(min(predicted.min(), measured.min()))
    high = float(max(predicted.max(), measured.max()))
    axes.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
    axes.set_xlabel("measured expression (standardised)")
    axes.set_ylabel("predicted expression (standardised)")
    axes.set_title(f"{title}\nPearson r = {pearson_r(predicted, measured):.3f}, "
                   f"n = {predicted.size}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_residuals(predicted, measured, path, title: str) -> None:
    """PNG: residual (measured - predicted) against predicted, and the residual histogram."""
    predicted = np.asarray(predicted, np.float64)
    residual = np.asarray(measured, np.float64) - predicted
    figure = Figure(figsize=(10, 4.5))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    _density_or_scatter(left, predicted, residual)
    left.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    left.set_xlabel("predicted expression (standardised)")
    left.set_ylabel("measured - predicted")
    right.hist(residual, bins=60, color="steelblue")
    right.set_xlabel("measured - predicted")
    right.set_ylabel("rows")
    figure.suptitle(f"{title}: residuals (mean {residual.mean():.3f}, sd {residual.std():.3f})",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ---- output directory -------------------------------------------------------------------

def default_output_dir(model_path, name: str) -> str:
    """RUN/evaluation/<name>, next to the model."""
    run_dir = os.path.dirname(os.path.abspath(model_path_of(model_path)))
    return os.path.join(run_dir, "evaluation", name)


def check_output_files(output_dir, filenames, inputs=()) -> None:
    """Refuse (FileExistsError) when one of `filenames` exists in `output_dir` and a
    previous evaluation did not write it, or would replace an input or something that is
    not a regular file (safe_output.check_output_path). Creates nothing: the directory is
    made when the results are written (`make_output_dir`)."""
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise OutputExistsError(f"{output_dir}: `output_dir` exists and is not a directory")
    check_parent_writable(os.path.join(output_dir, MANIFEST), "output_dir")
    ours = _files_we_wrote(output_dir)
    foreign = [name for name in filenames
               if os.path.lexists(os.path.join(output_dir, name)) and name not in ours]
    if foreign:
        raise OutputExistsError(f"{os.path.join(output_dir, foreign[0])}: exists and was not "
                              "written by an evaluation; choose another `output_dir` or move it")
    for name in filenames:
        check_output_path(os.path.join(output_dir, name), inputs=inputs, overwrite=True,
                          parameter="output_dir", in_directory=True)


def _start_writing(output_dir, outputs) -> None:
    """Make `output_dir`, record `outputs` as ours BEFORE writing any (an evaluation killed
    half-way leaves files that the next one may replace, not "not written by an
    evaluation"), and remove their previous versions, so a failure while writing never
    leaves new results beside old ones."""
    make_output_dir(output_dir)
    record_output_files(output_dir, outputs)
    for name in outputs:
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with writing(path):
                os.remove(path)


def in_sample_warnings(model_path, data_path, baseline_train_data=None) -> list[str]:
    """Why the metrics would not be held-out ones: `data_path` has the contents of the file
    the model's run (or an ensemble's member runs) trained on (run.json's source_sha256),
    or the baseline is fitted on `data_path` itself. Each is logged as a warning too."""
    from dream_keras.data.cache import file_sha256
    from dream_keras.run_directory import trained_run_records

    warnings = []
    try:  # a check, never a reason for an evaluation to fail: unreadable means unknown
        trained_on = {data.get("source_sha256") for data in (
            record.get("data") for record in trained_run_records(model_path_of(model_path)))
            if isinstance(data, dict)} - {None}
        same_file_as_baseline = bool(baseline_train_data) and os.path.isfile(
            baseline_train_data) and os.path.getsize(baseline_train_data) == os.path.getsize(
            data_path)
        data_sha256 = (file_sha256(data_path) if trained_on or same_file_as_baseline
                       else None)
        if data_sha256 in trained_on:
            warnings.append(f"{data_path} has the contents of the file the model trained on: "
                            "its training and validation rows are scored, so these metrics "
                            "are in-sample, not held-out")
        if same_file_as_baseline and file_sha256(baseline_train_data) == data_sha256:
            warnings.append(f"the baseline is fitted on {data_path} itself "
                            "(--baseline_train_data): it scores its own training rows, so its "
                            "metrics are in-sample and not comparable with the model's; fit "
                            "it on the run's training file")
    except (OSError, ValueError, TypeError, AttributeError) as error:
        logging.info("could not check whether %s is in-sample (%s)", data_path, error)
    for warning in warnings:
        logging.warning("%s", warning)
    return warnings


def _baseline(baseline: KmerRidge | None, baseline_train_data, model,
              chunk_rows: int = DEFAULT_CHUNK_ROWS,
              skip_bad_rows: bool = False) -> KmerRidge | None:
    """`baseline`, or, without one, the k-mer ridge fitted on `baseline_train_data` (once
    the inputs, the outputs and the model have passed their checks: on a large file the
    fit is long); `chunk_rows`: rows read at a time; `skip_bad_rows`: as training's."""
    if baseline is not None or not baseline_train_data:
        return baseline
    from dream_keras.baseline import fit_kmer_ridge_file

    logging.info("fitting the k-mer ridge baseline on %s", baseline_train_data)
    baseline = fit_kmer_ridge_file(baseline_train_data, chunk_rows=chunk_rows,
                                   skip_bad_rows=skip_bad_rows)
    logging.info("baseline: %d-mer ridge, penalty factor %g", baseline.k, baseline.penalty)
    if baseline.longest_train_row > model_seq_len(model):
        logging.warning("%s holds sequences of up to %d bases: the k-mer baseline counts "
                        "k-mers over whole sequences, the model reads their last %d bases, "
                        "so the baseline sees bases the model does not", baseline_train_data,
                        baseline.longest_train_row, model_seq_len(model))
    return baseline


def make_output_dir(output_dir) -> None:
    """Create `output_dir` (checked by `check_output_files`) once there is something to
    write, so a refusal or a failed prediction leaves no empty directory behind."""
    with writing(output_dir):
        os.makedirs(output_dir, exist_ok=True)


def check_same_data(output_dir, data_path, overwrite: bool) -> None:
    """Refuse to replace the results of another data file (the `data` of the metrics.json
    an evaluation wrote there) unless `overwrite`: fold.1.txt and fold.2.txt, or x.txt and
    x.tsv, would otherwise share RUN/evaluation/<stem>/ and the second hide the first."""
    _check_same_source(output_dir, METRICS_JSON, {"data": os.path.abspath(data_path)},
                       overwrite)


def check_same_dream_labels(output_dir, dream_dir, labels_path, overwrite: bool) -> None:
    """The same for a DREAM score: refuse to replace, unless `overwrite`, the score that
    dream_score.json records against other labels or another test layout (the public
    leaderboard's labels and a ground.json share RUN/evaluation/dream_score/)."""
    _check_same_source(output_dir, DREAM_SCORE_JSON, _dream_source(dream_dir, labels_path),
                       overwrite)


def _dream_source(dream_dir, labels_path) -> dict:
    return {"dream_dir": os.path.abspath(dream_dir),
            "labels": os.path.abspath(labels_path) if labels_path else "public_leaderboard"}


def _check_same_source(output_dir, results_file, source: dict, overwrite: bool) -> None:
    """Refuse when `results_file`, written there by an evaluation, records other values
    of the keys of `source` (what the results were computed on)."""
    path = os.path.join(output_dir, results_file)
    if overwrite or results_file not in _files_we_wrote(output_dir) or not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        previous = {key: previous.get(key) for key in source}
    except (OSError, ValueError, AttributeError):
        return  # unreadable: our own file, replaced as before
    for key, value in source.items():
        if previous[key] and _comparable(previous[key]) != _comparable(value):
            raise OutputExistsError(f"{output_dir}: holds the evaluation of {previous[key]}, "
                                    f"not of {value}; choose another `output_dir` or pass "
                                    "`overwrite=True` to replace it")


def _comparable(source: str) -> str:
    return source if source == "public_leaderboard" else os.path.abspath(source)


def data_stem(data_path) -> str:
    """The results folder name of a data file: its name without a final .gz and then one
    extension (fold.1.txt.gz -> fold.1), so fold.1.txt and fold.2.txt stay apart."""
    name = os.path.basename(os.fspath(data_path))
    name = name[:-len(".gz")] if name.endswith(".gz") else name
    return os.path.splitext(name)[0] or "data"


def record_output_files(output_dir, filenames) -> None:
    """Remember `filenames` as ours, so the next evaluation may replace them."""
    names = sorted(_files_we_wrote(output_dir) | set(filenames))
    _write_json(os.path.join(output_dir, MANIFEST), {"files": names})


def _files_we_wrote(output_dir) -> set:
    path = os.path.join(output_dir, MANIFEST)
    if not os.path.isfile(path):
        return set()
    with open(path) as handle:
        try:
            return set(json.load(handle).get("files", []))
        except (ValueError, AttributeError):
            return set()


def _write_json(path, payload) -> None:
    with writing(path):
        write_json(path, payload)


def _write_text(path, text: str) -> None:
    with writing(path), replacing_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _save_figure(plot, path, predicted, measured, title) -> None:
    """Draw with `plot` into a temporary file beside `path`, then rename it into place."""
    with writing(path), replacing_open(path, "wb") as handle:
        plot(predicted, measured, handle, title)


# ---- evaluations ------------------------------------------------------------------------

def predict_labelled_file(model, scaler, data_path, *, batch_size=DEFAULT_BATCH_SIZE,
                          chunk_rows=DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                          model_name="the model", plausible: PlausibilityCheck | None = None):
    """(predicted, measured), both standardised float64 [n], for a sequence<TAB>expression
    file. A NaN or infinite prediction raises DataFormatError naming `model_name` and the
    row's line; so does an implausible one (dream_keras.plausibility), unless `plausible`
    (the check to use; default: refusing) allows it."""
    plausible = plausible or PlausibilityCheck(scaler, model_name)
    predicted, measured = [], []
    for chunk in iter_chunks(data_path, with_expression=True, chunk_rows=chunk_rows):
        try:
            values = predict_standardised(
                model, chunk.sequences, batch_size=batch_size,
                reverse_complement_average=reverse_complement_average)
        except InvalidSequenceError as error:
            raise DataFormatError(data_path, int(chunk.line_numbers[error.row]),
                                  str(error)) from None
        def line_of(row, lines=chunk.line_numbers):
            return f"{data_path}:{int(lines[row])}"
        refuse_non_finite(values, model_name, line_of)
        plausible.check(scaler.inverse_transform(values), line_of)
        predicted.append(values)
        measured.append(scaler.transform(chunk.expression))
        logging.info("evaluated %d rows", sum(map(len, predicted)))
    return (np.concatenate(predicted).astype(np.float64),
            np.concatenate(measured).astype(np.float64))


def baseline_record(baseline: KmerRidge, predicted, measured, train_data) -> dict:
    """The baseline's metrics (same names as the model's) with what it is and was fit on."""
    summary = baseline.summary()
    return {**regression_metrics(predicted, measured), **summary,
            "train_data": os.path.abspath(train_data) if train_data else None}


def predict_baseline_file(baseline: KmerRidge, scaler, data_path, *,
                          chunk_rows=DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """The baseline's predictions on a labelled file, standardised with the run's scaler."""
    return np.concatenate([
        scaler.transform(baseline.predict(chunk.sequences)).astype(np.float64)
        for chunk in iter_chunks(data_path, with_expression=True, chunk_rows=chunk_rows)])


def evaluate_file(model_path, data_path, output_dir=None, *, batch_size=DEFAULT_BATCH_SIZE,
                  chunk_rows=DEFAULT_CHUNK_ROWS, reverse_complement_average=False,
                  baseline: KmerRidge | None = None, baseline_train_data=None,
                  baseline_skip_bad_rows: bool = False, overwrite: bool = False,
                  allow_implausible: bool = False):
    """Metrics of a run on a labelled file, written as JSON, Markdown and two PNGs;
    with `baseline` (fitted on `baseline_train_data`), its metrics under "baseline";
    without one, `baseline_train_data` is fitted (after the checks; its bad rows left out
    with `baseline_skip_bad_rows`).

    Results of another data file in `output_dir` are replaced only with `overwrite`; a
    model that predicts NaN or infinity is refused before anything is written, and so is
    one predicting outside the plausible range (dream_keras.plausibility) unless
    `allow_implausible` (then scored, the warning kept in the metrics' `warnings`).
    Returns (metrics dict, output directory).
    """
    output_dir = output_dir or default_output_dir(model_path, data_stem(data_path))
    outputs = [METRICS_JSON, METRICS_MD, SCATTER_PNG, RESIDUALS_PNG]
    check_input_file(data_path)
    check_output_files(output_dir, outputs, inputs=[data_path, model_path_of(model_path),
                                                    scaler_path_of(model_path),
                                                    baseline_train_data])
    check_same_data(output_dir, data_path, overwrite)
    model, scaler = load_run(model_path)
    if reverse_complement_average:  # before the baseline fit, which may take minutes
        refuse_second_strand_average(model, model_path_of(model_path))
    warnings = in_sample_warnings(model_path, data_path, baseline_train_data)
    baseline = _baseline(baseline, baseline_train_data, model, chunk_rows,
                         baseline_skip_bad_rows)
    plausible = PlausibilityCheck(scaler, model_path_of(model_path), allow=allow_implausible)
    predicted, measured = predict_labelled_file(
        model, scaler, data_path, batch_size=batch_size, chunk_rows=chunk_rows,
        reverse_complement_average=reverse_complement_average,
        model_name=model_path_of(model_path), plausible=plausible)
    warnings = warnings + ([plausible.report()] if plausible.count else [])
    metrics = regression_metrics(predicted, measured)
    metrics.update(data=os.path.abspath(data_path),
                   model=os.path.abspath(model_path_of(model_path)),
                   reverse_complement_average=bool(reverse_complement_average),
                   scaler={"mean": scaler.mean, "std": scaler.std}, warnings=warnings)
    if baseline is not None:
        metrics["baseline"] = baseline_record(
            baseline, predict_baseline_file(baseline, scaler, data_path, chunk_rows=chunk_rows),
            measured, baseline_train_data)
    title = f"{os.path.basename(os.fspath(data_path))}"
    _start_writing(output_dir, outputs)
    _write_json(os.path.join(output_dir, METRICS_JSON), metrics)
    _write_text(os.path.join(output_dir, METRICS_MD),
                metrics_markdown(metrics, f"Evaluation on {title}"))
    _save_figure(plot_predicted_vs_measured, os.path.join(output_dir, SCATTER_PNG),
                 predicted, measured, title)
    _save_figure(plot_residuals, os.path.join(output_dir, RESIDUALS_PNG), predicted, measured,
                 title)
    return metrics, output_dir


def evaluate_dream(model_path, dream_dir, labels_path=None, output_dir=None, *,
                   batch_size=DEFAULT_BATCH_SIZE, reverse_complement_average=False,
                   baseline: KmerRidge | None = None, baseline_train_data=None,
                   partial: str = "mark", min_subset_rows: int = dream_score.MIN_SUBSET_ROWS,
                   baseline_skip_bad_rows: bool = False, overwrite: bool = False,
                   allow_implausible: bool = False):
    """The official challenge score of a run on the DREAM test layout.

    Predicts every labelled position whose sequence is known, scores it with
    `dream_score.score_predictions`, writes dream_score.json and the predictions as
    dream_predictions.json ({"<pos>": value}, the submission format). With `baseline`, its
    own score on the same positions is added under "baseline". A subset that is missing or
    has fewer than `min_subset_rows` rows makes the score partial: `partial="mark"` writes
    it marked so (complete false, the missing subsets and files named, renormalised scores
    over the weights actually scored); `partial="refuse"` stops with one line instead,
    before anything is written or the model loaded. A model that predicts NaN or infinity
    is refused, naming the first such position, before anything is written; so is one
    outside the plausible range (dream_keras.plausibility) unless `allow_implausible`
    (then scored, the warning kept in the score's `warnings`). A score of
    other labels or another layout in `output_dir` is replaced only with `overwrite`.
    Without `baseline`, `baseline_train_data` is fitted (after the checks; its bad rows
    left out with `baseline_skip_bad_rows`). Returns (score dict, output directory).
    """
    if partial not in PARTIAL_CHOICES:
        raise ConfigurationError(f"`partial` must be one of {PARTIAL_CHOICES}, got {partial!r}")
    output_dir = output_dir or default_output_dir(model_path, "dream_score")
    outputs = [DREAM_SCORE_JSON, DREAM_PREDICTIONS_JSON]
    check_output_files(output_dir, outputs, inputs=[model_path_of(model_path),
                                                    scaler_path_of(model_path), labels_path])
    test_set = dream_score.load_dream_test_set(dream_dir, labels_path)
    positions = test_set.positions_to_predict()
    if not positions:
        raise DataFormatError(dream_dir, None, "no labelled position has a known sequence")
    if partial == "refuse":
        _refuse_incomplete(dream_dir, test_set, min_subset_rows)
    check_same_dream_labels(output_dir, dream_dir, labels_path, overwrite)
    if test_set.missing_files:
        logging.warning("DREAM layout incomplete, missing: %s",
                        ", ".join(test_set.missing_files))
    model, scaler = load_run(model_path)
    if reverse_complement_average:  # before the baseline fit, which may take minutes
        refuse_second_strand_average(model, model_path_of(model_path))
    baseline = _baseline(baseline, baseline_train_data, model,
                         skip_bad_rows=baseline_skip_bad_rows)
    values = scaler.inverse_transform(predict_standardised(
        model, [test_set.sequences[p] for p in positions], batch_size=batch_size,
        reverse_complement_average=reverse_complement_average))
    def position_of(index):
        return f"DREAM test position {positions[index]}"
    refuse_non_finite(values, model_path_of(model_path), position_of)
    plausible = PlausibilityCheck(scaler, model_path_of(model_path), allow=allow_implausible)
    plausible.check(values, position_of)
    predictions = dict(zip(positions, values.tolist()))
    score = dream_score.score_predictions(predictions, test_set, min_rows=min_subset_rows)
    score.update(**_dream_source(dream_dir, labels_path),
                 model=os.path.abspath(model_path_of(model_path)),
                 reverse_complement_average=bool(reverse_complement_average))
    if plausible.count:
        score["warnings"] = [plausible.report()]
    if baseline is not None:
        baseline_values = baseline.predict([test_set.sequences[p] for p in positions])
        score["baseline"] = {
            **dream_score.score_predictions(dict(zip(positions, baseline_values.tolist())),
                                            test_set, min_rows=min_subset_rows),
            **baseline.summary(),
            "train_data": os.path.abspath(baseline_train_data) if baseline_train_data else None}
    _start_writing(output_dir, outputs)
    _write_json(os.path.join(output_dir, DREAM_SCORE_JSON), score)
    _write_json(os.path.join(output_dir, DREAM_PREDICTIONS_JSON),
                {str(p): v for p, v in predictions.items()})
    return score, output_dir


def _refuse_incomplete(dream_dir, test_set, min_subset_rows: int) -> None:
    """`partial="refuse"`: one line naming the subsets the score would leave out (missing,
    or with fewer than `min_subset_rows` rows) and the missing files."""
    left_out = dream_score.unscorable_subsets(test_set, min_subset_rows)
    if not left_out:
        return
    too_few = [f"{name} ({rows} rows)" for name, rows in left_out.items() if rows]
    files = test_set.missing_files
    raise DataFormatError(dream_dir, None, "incomplete DREAM score refused: subsets "
                          f"{', '.join(left_out)} not scored"
                          + (f"; fewer than {min_subset_rows} rows: {', '.join(too_few)}"
                             if too_few else "")
                          + (f"; missing files: {', '.join(files)}" if files else "")
                          + " (`partial='mark'` scores the rest, marked partial)")
