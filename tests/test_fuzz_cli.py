"""Bad input and faults through the real commands: exit code, one-line error, nothing damaged.

Every case runs a command line of train, predict, evaluate, prepare or synthetic through
that command's real `main()` (absl flag parsing, runner's error mapping); the cases of one
command share one process (tests/cli_batch.py), so TensorFlow starts once per command.
A few cases also run as separate processes of the repository scripts and console scripts
(`--help`, the quiet start, one refusal), to show the batch reads as they do.

After all cases: every file that existed before is byte-identical (or still the same kind
of node: directory, FIFO, device), and no temporary `.partial` file is left anywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import pytest

from tests import warm_fork
from tests.conftest import DREAM_DIR, REPO
from tests.saved_run import random_sequences

pytestmark = pytest.mark.long(seconds=25)  # scheduled by length (tests/conftest.py)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534
MODULES = {"predict": "dream_keras.cli.predict", "evaluate": "dream_keras.cli.evaluate",
           "train": "dream_keras.cli.train", "prepare": "dream_keras.cli.prepare",
           "synthetic": "dream_keras.cli.synthetic"}
BOM = "\ufeff"


@dataclasses.dataclass
class Case:
    name: str
    command: str
    args: list                      # "{W}" stands for the workspace directory
    code: int = 1
    message: str | None = None      # regex the single "error: ..." line must match
    check: Callable | None = None   # check(workspace, result) for what was written
    needs_non_root: bool = False    # permission cases: run as `nobody` when we are root
    prefix: str = "error:"          # how the single error line starts (absl: flag values)


def _rows(path) -> int:
    return len(pathlib.Path(path).read_text().splitlines())


def _strict_json(path) -> dict:
    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")
    return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


def _check_one_row_metrics(w, result):
    metrics = _strict_json(w / "out" / "one_row" / "metrics.json")
    assert metrics["n"] == 1 and metrics["pearson"] is None and metrics["r2"] is None
    assert "pearson" in metrics["null_reasons"] and "r2" in metrics["null_reasons"]


def _check_partial_dream(w, result):
    score = _strict_json(w / "out" / "dream_partial" / "dream_score.json")
    assert not score["complete"]
    assert {"high", "low"} <= set(score["missing_subsets"])
    assert any(path.endswith("high_exp_seqs.csv") for path in score["missing_files"])
    assert "high" not in score["weights_used"] and "low" not in score["weights_used"]
    assert "missing files:" in result["stdout"] and "high_exp_seqs.csv" in result["stdout"]


def _check_one_row_subset(w, result):
    score = _strict_json(w / "out" / "dream_one_row" / "dream_score.json")
    assert score["subsets"]["high"]["n"] == 1
    assert score["subsets"]["high"]["status"] == "too_few_rows"
    assert "high" not in score["weights_used"] and not score["complete"]


def _predicted(name, rows):
    def check(w, result):
        assert _rows(w / "out" / name) == rows + 1  # header + one line per sequence
    return check


def _implausible_metrics(w, result):
    """evaluate.py --allow_implausible: scored, the warning kept in metrics.json."""
    metrics = json.loads((w / "out" / "implausible" / "metrics.json").read_text())
    assert metrics["n"] == 400 and any("outside the plausible range" in warning
                                      for warning in metrics["warnings"]), metrics


def cases() -> list:
    run, out = "{W}/run", "{W}/out"
    model = f"--model={run}/model.keras"
    predict = [
        *[Case(f"scaler_{kind}", "predict", [f"--model={{W}}/scaler_{kind}/model.keras",
                                              "--input={W}/seqs.txt", f"--output={out}/s.tsv"],
               message=rf"target_scaler\.json(:1)?: {text}")
          for kind, text in [("std0", "target scaler std must be > 0"),
                             ("negative", "target scaler std must be > 0"),
                             ("nan", "target scaler std must be finite"),
                             ("infinity", "target scaler mean must be finite"),
                             ("missing_key", "not a target scaler: missing key.*std"),
                             ("garbage", "not a target scaler JSON"),
                             ("one_sided_range", "target scaler has minimum but not maximum"),
                             ("reversed_range", "target scaler minimum 5.0 is not below "
                                                r"its maximum 1\.0"),
                             ("text_range", "target scaler maximum must be a finite number, "
                                            "found 'x'")]],
        # Predictions (~11) far outside this scaler's training range [1000, 1001]: refused,
        # naming the row, nothing written; written with --allow_implausible (its warning:
        # test_plausibility.py).
        Case("point_range", "predict", ["--model={W}/scaler_point_range/model.keras",
                                        "--input={W}/seqs.txt", f"--output={out}/s.tsv"],
             message=r"target_scaler\.json: target scaler minimum 3\.0 is not below its "
                     r"maximum 3\.0"),
        Case("implausible_refused", "predict", ["--model={W}/scaler_far_range/model.keras",
                                                "--input={W}/seqs.txt",
                                                f"--output={out}/implausible.tsv"],
             message=r"seqs\.txt: the model predicts 1\d\.\d+ for sequence 0 \(0-based\) "
                     r"\(19 more among the 20 checked with it\): outside the plausible range "
                     r"\[999, 1002\]: the training targets' range \[1000, 1001\] widened.*"
                     r"nothing was written\. --allow_implausible writes",
             check=lambda w, r: not (w / "out" / "implausible.tsv").exists()),
        Case("implausible_allowed", "predict", ["--model={W}/scaler_far_range/model.keras",
                                                "--input={W}/seqs.txt", "--allow_implausible",
                                                f"--output={out}/implausible_allowed.tsv"],
             code=0, check=_predicted("implausible_allowed.tsv", 20)),
        Case("scaler_with_bom", "predict", ["--model={W}/scaler_bom/model.keras",
                                            "--input={W}/seqs.txt",
                                            f"--output={out}/bom_scaler.tsv"], code=0,
             check=_predicted("bom_scaler.tsv", 20)),
        Case("model_three_outputs", "predict", ["--model={W}/three_outputs/model.keras",
                                                "--input={W}/seqs.txt", f"--output={out}/" + "{NAME}.tsv"],
             message=r"not a dream_keras model: expected one input \[batch, seq_len, 4\].*"
                     r"found 1 input\(s\) \[\(None, 110, 4\)\] and 1 output\(s\) "
                     r"\[\(None, 3\)\]"),
        Case("model_other_input", "predict", ["--model={W}/other_input/model.keras",
                                              "--input={W}/seqs.txt", f"--output={out}/" + "{NAME}.tsv"],
             message=r"not a dream_keras model: .*found 1 input\(s\) \[\(None, 50, 5\)\]"),
        Case("model_truncated", "predict", ["--model={W}/truncated/model.keras",
                                            "--input={W}/seqs.txt", f"--output={out}/" + "{NAME}.tsv"],
             message=r"model\.keras: cannot load the model: not a complete Keras "
                     r"model archive \(truncated"),
        Case("model_is_fifo", "predict", ["--model={W}/fifo", "--input={W}/seqs.txt",
                                          f"--output={out}/" + "{NAME}.tsv"],
             message=r"fifo: is not a regular file"),
        Case("output_is_input", "predict", [model, "--input={W}/seqs.txt",
                                            "--output={W}/seqs.txt", "--overwrite"],
             message=r"seqs\.txt: --output is or holds the input .*seqs\.txt"),
        Case("output_is_input_via_symlink", "predict", [model, "--input={W}/seqs.txt",
                                                        "--output={W}/link_to_seqs.txt",
                                                        "--overwrite"],
             message=r"--output is or holds the input"),
        Case("output_is_directory", "predict", [model, "--input={W}/seqs.txt",
                                                "--output={W}/a_dir", "--overwrite"],
             message=r"a_dir: --output exists and is a directory, not a regular file"),
        Case("output_is_fifo", "predict", [model, "--input={W}/seqs.txt",
                                           "--output={W}/fifo", "--overwrite"],
             message=r"fifo: --output exists and is a FIFO"),
        Case("output_is_dev_full", "predict", [model, "--input={W}/seqs.txt",
                                               "--output=/dev/full", "--overwrite"],
             message=r"/dev/full: --output exists and is a device"),
        Case("output_exists", "predict", [model, "--input={W}/seqs.txt",
                                          "--output={W}/existing.tsv"],
             message=r"existing\.tsv: output exists; pass --overwrite"),
        Case("output_dir_unwritable", "predict", [model, "--input={W}/seqs.txt",
                                                  "--output={W}/read_only/x.tsv"],
             message=r"permission denied in .*read_only", needs_non_root=True),
        Case("export_over_a_file", "predict", [model, "--export={W}/existing.tsv",
                                               "--overwrite"],
             message=r"existing\.tsv: --export exists and is a regular file, not a "
                     r"directory"),
        Case("export_over_the_run", "predict", [model, "--export={W}/run", "--overwrite"],
             message=r"--export is or holds the input"),
        Case("model_empty", "predict", ["--model=", "--input={W}/seqs.txt",
                                        f"--output={out}/" + "{NAME}.tsv"],
             prefix="FATAL Flags parsing error:", message=r"--model is empty: give a path"),
        Case("export_with_format_but_no_output", "predict",
             [model, f"--export={out}/" + "{NAME}", "--format=dream_json"],
             prefix="FATAL Flags parsing error:",
             message=r"--format is the format of --output: give --input and --output"),
        Case("input_truncated_gz", "predict", [model, "--input={W}/truncated.txt.gz",
                                               f"--output={out}/" + "{NAME}.tsv"],
             message=r"truncated\.txt\.gz: cannot read( after line \d+)?: truncated gzip"),
        Case("input_garbage_gz", "predict", [model, "--input={W}/garbage.txt.gz",
                                             f"--output={out}/" + "{NAME}.tsv"],
             message=r"garbage\.txt\.gz: cannot read.*(gzip|CRC|Error -3)"),
        Case("input_is_directory", "predict", [model, "--input={W}/a_dir",
                                               f"--output={out}/" + "{NAME}.tsv"],
             message=r"a_dir: is a directory, not a file"),
        Case("input_is_fifo", "predict", [model, "--input={W}/fifo", f"--output={out}/" + "{NAME}.tsv"],
             message=r"fifo: is a FIFO \(named pipe\), not a regular file"),
        Case("input_missing", "predict", [model, "--input={W}/nothing.txt",
                                          f"--output={out}/" + "{NAME}.tsv"],
             message=r"nothing\.txt: no such file"),
        Case("input_unreadable", "predict", [model, "--input={W}/unreadable.txt",
                                             f"--output={out}/" + "{NAME}.tsv"],
             message=r"unreadable\.txt: permission denied", needs_non_root=True),
        Case("model_missing", "predict", ["--model={W}/nowhere/model.keras",
                                          "--input={W}/seqs.txt", f"--output={out}/" + "{NAME}.tsv"],
             message=r"nowhere/model\.keras: model not found"),
        Case("input_binary", "predict", [model, "--input={W}/binary.bin",
                                         f"--output={out}/" + "{NAME}.tsv"],
             message=r"binary\.bin"),
        Case("input_bad_letter", "predict", [model, "--input={W}/bad_letter.txt",
                                             f"--output={out}/" + "{NAME}.tsv"],
             message=r"bad_letter\.txt:3: letter 'X' outside ACGTN"),
        *[Case(f"bom_{kind}", "predict", [model, f"--input={{W}}/bom.{kind}",
                                          f"--output={out}/bom_{kind}.tsv"], code=0,
               check=_predicted(f"bom_{kind}.tsv", 20))
          for kind in ("csv", "tsv", "fasta", "txt", "txt.gz")],
    ]
    dream = "--dream_dir={W}/dream_"
    evaluate = [
        Case("evaluate_implausible_refused", "evaluate", [
            "--model={W}/scaler_far_range/model.keras", "--data={W}/labelled.txt",
            f"--output_dir={out}/implausible_refused"],
             message=r"scaler_far_range/model\.keras: the model predicts .* for "
                     r".*labelled\.txt:1 \(399 more among the 400 checked with it\): outside the "
                     r"plausible range",
             check=lambda w, r: not (w / "out" / "implausible_refused").exists()),
        Case("evaluate_implausible_allowed", "evaluate", [
            "--model={W}/scaler_far_range/model.keras", "--data={W}/labelled.txt",
            "--allow_implausible", f"--output_dir={out}/implausible"], code=0,
             check=_implausible_metrics),
        Case("evaluate_one_row", "evaluate", [model, "--data={W}/one_row.txt",
                                              f"--output_dir={out}/one_row"], code=0,
             check=_check_one_row_metrics),
        Case("evaluate_scaler_nan", "evaluate", ["--model={W}/scaler_nan/model.keras",
                                                 "--data={W}/labelled.txt",
                                                 f"--output_dir={out}/scaler_nan"],
             message=r"target scaler std must be finite",
             check=lambda w, r: not (w / "out" / "scaler_nan" / "metrics.json").exists()),
        Case("evaluate_truncated_gz", "evaluate", [model, "--data={W}/truncated.txt.gz",
                                                   f"--output_dir={out}/e1"],
             message=r"truncated\.txt\.gz: cannot read.*truncated gzip"),
        Case("evaluate_data_is_directory", "evaluate", [model, "--data={W}/a_dir",
                                                        f"--output_dir={out}/e2"],
             message=r"a_dir: is a directory"),
        Case("evaluate_output_dir_is_file", "evaluate", [model, "--data={W}/labelled.txt",
                                                         "--output_dir={W}/existing.tsv"],
             message=r"existing\.tsv: --output_dir exists and is not a directory"),
        Case("evaluate_output_is_input", "evaluate", [model, "--data={W}/evaldir/metrics.json",
                                                      "--output_dir={W}/evaldir"],
             message=r"metrics\.json: --output_dir file is or holds the input"),
        Case("dream_invalid_label_json", "evaluate",
             [model, dream + "ok", "--dream_labels={W}/bad_labels.json",
              f"--output_dir={out}/d1"],
             message=r"bad_labels\.json:3: invalid JSON"),
        Case("dream_nan_label", "evaluate",
             [model, dream + "ok", "--dream_labels={W}/nan_labels.json",
              f"--output_dir={out}/d1b"],
             message=r"nan_labels\.json: invalid JSON: NaN is not a label"),
        Case("dream_empty_subset_csv", "evaluate", [model, dream + "empty_csv",
                                                    f"--output_dir={out}/d2"],
             message=r"high_exp_seqs\.csv: the subset CSV is empty"),
        Case("dream_header_only_csv", "evaluate", [model, dream + "header_only",
                                                   f"--output_dir={out}/d2b"],
             message=r"low_exp_seqs\.csv: the subset CSV has a header but no rows"),
        Case("dream_bad_letter", "evaluate", [model, dream + "bad_letter",
                                              f"--output_dir={out}/d3"],
             message=r"yeast_seqs\.csv:4: letter 'X' outside ACGTN in sequence"),
        Case("dream_missing_subsets_marked", "evaluate",
             [model, dream + "missing", f"--output_dir={out}/dream_partial"], code=0,
             check=_check_partial_dream),
        Case("dream_missing_subsets_refused", "evaluate",
             [model, dream + "missing", "--dream_partial=refuse", f"--output_dir={out}/d4"],
             message=r"incomplete DREAM score refused: subsets .*high.*low.* not scored.*"
                     r"missing files: .*high_exp_seqs\.csv",
             check=lambda w, r: not (w / "out" / "d4" / "dream_score.json").exists()),
        Case("dream_one_row_subset", "evaluate",
             [model, dream + "one_row", f"--output_dir={out}/dream_one_row"], code=0,
             check=_check_one_row_subset),
    ]
    train = [
        # Refused while reading the data, after the run directory was created and locked:
        # the refusal removes the (empty) directory it created ({NAME}: checked absent).
        Case(f"train_{name}", "train", [f"--train_data={{W}}/{data}",
                                        f"--output_dir={out}/" + "{NAME}", "--epochs=1"],
             message=text)
        for name, data, text in [
            ("truncated_gz", "truncated.txt.gz", r"truncated\.txt\.gz: cannot read.*gzip"),
            ("garbage_gz", "garbage.txt.gz", r"garbage\.txt\.gz: cannot read"),
            ("data_is_directory", "a_dir", r"a_dir: --train_data: is a directory"),
            ("data_is_fifo", "fifo", r"fifo: --train_data: is a FIFO")]
    ] + [
        Case("train_output_dir_is_file", "train", ["--train_data={W}/labelled.txt",
                                                   "--output_dir={W}/existing.tsv"],
             message=r"existing\.tsv: --output_dir exists and is not a directory"),
        Case("train_unreadable_data", "train", ["--train_data={W}/unreadable.txt",
                                                f"--output_dir={out}/t_unreadable"],
             message=r"unreadable\.txt: --train_data: permission denied",
             needs_non_root=True),
        Case("train_output_dir_not_empty", "train", ["--train_data={W}/labelled.txt",
                                                     "--output_dir={W}/a_dir"],
             message=r"a_dir is not empty and is not a resumable run .* pass --overwrite"),
        *[Case(f"train_{name}_out_of_range", "train",
               ["--train_data={W}/labelled.txt", f"--output_dir={out}/t_{name}", value],
               prefix="FATAL Flags parsing error:", message=text)
          for name, value, text in [
              ("batch_size", "--batch_size=0", r"--batch_size=0: 0 is not a positive"),
              ("ema_momentum", "--ema_momentum=1.5",
               r"--ema_momentum=1\.5: 1\.5 is not a number in the range"),
              ("seed_negative", "--seed=-1",
               r"--seed=-1: -1 is not an integer in the range \[0, 4294967295\]"),
              ("seed_over_32_bits", "--seed=4294967296",
               r"--seed=4294967296: 4294967296 is not an integer in the range"),
              ("synthetic_seed", "--synthetic_seed=-1",
               r"--synthetic_seed=-1: -1 is not an integer in the range \[0, 4294967295\]"),
              ("seq_len_zero", "--seq_len=0", r"--seq_len=0: 0 is not a positive integer"),
              ("seq_len_negative", "--seq_len=-5", r"--seq_len=-5: -5 is not a positive"),
              ("passes_per_epoch", "--passes_per_epoch=0",
               r"--passes_per_epoch=0(\.0)?: --passes_per_epoch must be > 0"),
              ("validation_fraction", "--validation_fraction=0",
               r"--validation_fraction=0(\.0)?: --validation_fraction must be > 0"),
              # absl's bounds let nan through (every comparison with it is false).
              ("learning_rate_nan", "--learning_rate=nan",
               r"--learning_rate=nan: --learning_rate must be a finite number"),
              ("clipnorm_inf", "--clipnorm=inf", r"--clipnorm=inf: --clipnorm must be a "
                                                 r"finite number"),
              ("l2_weight_nan", "--l2_weight=nan", r"--l2_weight must be a finite number"),
              ("output_dir_empty", "--output_dir=",
               r"--output_dir=: --output_dir is empty: give a path"),
              ("prefetch_over_int32", "--prefetch_batches=3000000000",
               r"3000000000 is not an integer in the range \[-1, 2147483647\]")]],
        Case("train_flagfile_not_utf8", "train", ["--flagfile={W}/latin1.flags",
                                                  "--train_data={W}/labelled.txt",
                                                  f"--output_dir={out}/" + "{NAME}"],
             message=r"latin1\.flags: a --flagfile must be UTF-8 text \(invalid "),
        # A text file named .h5 would then be read as a cache and fail on every rerun.
        Case("train_synthetic_rows_into_h5", "train",
             [f"--train_data={out}/synthetic.h5", "--synthetic_rows=300",
              f"--output_dir={out}/" + "{NAME}"],
             message=r"synthetic\.h5: --synthetic_rows writes a text file, not an HDF5 cache",
             check=lambda w, r: not (w / "out" / "synthetic.h5").exists()),
        Case("train_help", "train", ["--help"], code=0,
             check=lambda w, r: _assert_help(r["stdout"], ["--train_data", "--epochs"])),
    ]
    prepare = [
        Case("prepare_truncated_gz", "prepare", ["--input={W}/truncated.txt.gz",
                                                 f"--output={out}/p1.h5"],
             message=r"truncated\.txt\.gz: cannot read.*truncated gzip"),
        Case("prepare_garbage_gz", "prepare", ["--input={W}/garbage.txt.gz",
                                               f"--output={out}/p2.h5"],
             message=r"garbage\.txt\.gz: cannot read"),
        Case("prepare_output_is_input", "prepare", ["--input={W}/labelled.txt",
                                                    "--output={W}/labelled.txt", "--overwrite"],
             message=r"--output is or holds the input"),
        Case("prepare_output_dev_full", "prepare", ["--input={W}/labelled.txt",
                                                    "--output=/dev/full", "--overwrite"],
             message=r"/dev/full: --output exists and is a device"),
        Case("prepare_header_line", "prepare", ["--input={W}/with_header.txt",
                                                f"--output={out}/p_header.h5"],
             message=r"with_header\.txt:1: letter 's' outside ACGTN in sequence 'sequence'; "
                     r"a header line\? this format has none"),
        Case("prepare_bom_training_file", "prepare", ["--input={W}/bom_labelled.txt",
                                                      f"--output={out}/bom.h5"], code=0),
        Case("prepare_input_unreadable", "prepare", ["--input={W}/unreadable.txt",
                                                     f"--output={out}/p3.h5"],
             message=r"unreadable\.txt: permission denied", needs_non_root=True),
    ]
    synthetic = [
        Case("synthetic_output_is_directory", "synthetic", ["--output={W}/a_dir", "--rows=5",
                                                            "--overwrite"],
             message=r"a_dir: --output exists and is a directory"),
        Case("synthetic_output_dev_full", "synthetic", ["--output=/dev/full", "--rows=5",
                                                        "--overwrite"],
             message=r"/dev/full: --output exists and is a device"),
        Case("synthetic_unwritable_directory", "synthetic",
             ["--output={W}/read_only/new/s.txt", "--rows=5"],
             message=r"permission denied in .*read_only", needs_non_root=True),
    ]
    return predict + evaluate + train + prepare + synthetic


def _assert_help(text: str, flags: list) -> bool:
    for flag in flags:
        assert re.search(rf"^\s+--(\[no\])?{flag[2:]}:", text, re.M), f"{flag} not in help"
    assert "(default:" in text and "--helpfull" in text
    assert "--tf_" not in text and "--alsologtostderr" not in text  # package flags only
    return True


# ---- the workspace ----------------------------------------------------------------------

def _labelled_lines(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [f"{s}\t{v:.3f}" for s, v in zip(random_sequences(count, seed, 100, 110),
                                            rng.uniform(0, 17, count))]


def _write_dream_layouts(w: pathlib.Path) -> None:
    def layout(name, edit=None):
        target = w / f"dream_{name}"
        (target / "test_subsets").mkdir(parents=True)
        shutil.copytree(DREAM_DIR / "public_leaderboard", target / "public_leaderboard")
        for csv in (DREAM_DIR / "test_subsets").glob("*.csv"):
            lines = csv.read_text().splitlines()[:21]  # header + 20 rows
            (target / "test_subsets" / csv.name).write_text("\n".join(lines) + "\n")
        if edit:
            edit(target / "test_subsets")

    layout("ok")
    layout("empty_csv", lambda d: (d / "high_exp_seqs.csv").write_text(""))
    layout("header_only", lambda d: (d / "low_exp_seqs.csv").write_text(
        (d / "low_exp_seqs.csv").read_text().splitlines()[0] + "\n"))

    def bad_letter(d):
        path = d / "yeast_seqs.csv"
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        fields = lines[3].split(",")
        column = header.index("sequence")
        fields[column] = "X" + fields[column][1:]
        lines[3] = ",".join(fields)
        path.write_text("\n".join(lines) + "\n")

    layout("bad_letter", bad_letter)

    def two_missing(d):
        (d / "high_exp_seqs.csv").unlink()
        (d / "low_exp_seqs.csv").unlink()

    layout("missing", two_missing)
    layout("one_row", lambda d: (d / "high_exp_seqs.csv").write_text(
        "\n".join((d / "high_exp_seqs.csv").read_text().splitlines()[:2]) + "\n"))
    (w / "bad_labels.json").write_text('{\n  "1": 2.0,\n  "2": oops\n}\n')
    (w / "nan_labels.json").write_text('{"1": NaN}\n')


def _write_models(w: pathlib.Path, small_run: pathlib.Path) -> None:
    import keras

    (w / "run").mkdir()
    for name in ("model.keras", "target_scaler.json", "run.json"):  # the suite's saved run
        shutil.copy(small_run.parent / name, w / "run" / name)
    scaler_texts = {"std0": '{"mean": 1.0, "std": 0}', "negative": '{"mean": 1.0, "std": -2}',
                    "nan": '{"mean": 1.0, "std": NaN}', "infinity": '{"mean": Infinity, "std": 1}',
                    "missing_key": '{"mean": 1.0}', "garbage": "mean=1 std=2",
                    "bom": BOM + '{"mean": 11.0, "std": 2.5}',
                    "one_sided_range": '{"mean": 1.0, "std": 2, "minimum": 0}',
                    "reversed_range": '{"mean": 1.0, "std": 2, "minimum": 5, "maximum": 1}',
                    "text_range": '{"mean": 1.0, "std": 2, "minimum": 0, "maximum": "x"}',
                    "point_range": '{"mean": 1.0, "std": 2, "minimum": 3, "maximum": 3}',
                    "far_range": '{"mean": 11.0, "std": 2.5, "minimum": 1000, '
                                 '"maximum": 1001}'}
    for kind, text in scaler_texts.items():
        (w / f"scaler_{kind}").mkdir()
        os.link(w / "run" / "model.keras", w / f"scaler_{kind}" / "model.keras")
        (w / f"scaler_{kind}" / "target_scaler.json").write_text(text)
    for name, shape, units in [("three_outputs", (110, 4), 3), ("other_input", (50, 5), 1)]:
        inputs = keras.Input(shape)
        outputs = keras.layers.Dense(units)(keras.layers.Flatten()(inputs))
        (w / name).mkdir()
        keras.Model(inputs, outputs).save(w / name / "model.keras")
        shutil.copy(w / "run" / "target_scaler.json", w / name)
    (w / "truncated").mkdir()
    data = (w / "run" / "model.keras").read_bytes()
    (w / "truncated" / "model.keras").write_bytes(data[: len(data) // 2])
    shutil.copy(w / "run" / "target_scaler.json", w / "truncated")


def _write_inputs(w: pathlib.Path) -> None:
    sequences = random_sequences(20, 0, 100, 110)
    (w / "seqs.txt").write_text("\n".join(sequences) + "\n")
    (w / "link_to_seqs.txt").symlink_to(w / "seqs.txt")
    (w / "bom.txt").write_text(BOM + "\n".join(sequences) + "\n")
    (w / "bom.csv").write_text(BOM + "id,sequence\n" + "".join(
        f"s{i},{s}\n" for i, s in enumerate(sequences)))
    (w / "bom.tsv").write_text(BOM + "sequence\tid\n" + "".join(
        f"{s}\ts{i}\n" for i, s in enumerate(sequences)))
    (w / "bom.fasta").write_text(BOM + "".join(f">s{i}\n{s[:50]}\n{s[50:]}\n"
                                               for i, s in enumerate(sequences)))
    (w / "bom.txt.gz").write_bytes(gzip.compress((BOM + "\n".join(sequences)).encode()))
    labelled = _labelled_lines(400, 1)
    (w / "labelled.txt").write_text("\n".join(labelled) + "\n")
    (w / "bom_labelled.txt").write_text(BOM + "\n".join(labelled) + "\n")
    (w / "with_header.txt").write_text("sequence\texpression\n" + "\n".join(labelled) + "\n")
    (w / "one_row.txt").write_text(labelled[0] + "\n")
    (w / "binary.bin").write_bytes(b"\x80\x81\xfe\xff" * 100)
    (w / "bad_letter.txt").write_text("\n".join(sequences[:2] + ["ACGTX"] + sequences[2:]))
    whole = gzip.compress(("\n".join(labelled) + "\n").encode())
    (w / "truncated.txt.gz").write_bytes(whole[: len(whole) // 2])
    (w / "garbage.txt.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 8)
    (w / "latin1.flags").write_bytes("--epochs=1\n# caf\u00e9\n".encode("latin-1"))
    (w / "existing.tsv").write_text("a file the user keeps\n")
    (w / "a_dir").mkdir()
    (w / "a_dir" / "keep.txt").write_text("inside a directory\n")
    (w / "evaldir").mkdir()
    (w / "evaldir" / "metrics.json").write_text("\n".join(labelled[:5]) + "\n")
    (w / "evaldir" / ".dream_keras_evaluation.json").write_text('{"files": ["metrics.json"]}')
    os.mkfifo(w / "fifo")
    (w / "unreadable.txt").write_text("\n".join(labelled) + "\n")
    (w / "unreadable.txt").chmod(0)
    (w / "read_only").mkdir()
    (w / "read_only").chmod(0o555)
    (w / "out").mkdir()


def _snapshot(w: pathlib.Path) -> dict:
    """path -> (kind, sha256 of a regular file's bytes); FIFOs are never opened."""
    entries = {}
    for path in sorted(w.rglob("*")):
        if path.is_relative_to(w / "out"):
            continue
        mode = path.lstat().st_mode
        digest = None
        if stat.S_ISREG(mode) and os.access(path, os.R_OK):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        entries[str(path)] = (stat.S_IFMT(mode), digest)
    entries["/dev/full"] = (stat.S_IFMT(os.lstat("/dev/full").st_mode), None)
    return entries


@pytest.fixture(scope="module")
def workspace(small_run):
    # Not under pytest's (owner-only) temporary directory: as root, the permission cases
    # run as `nobody`, who must reach the workspace.
    w = pathlib.Path(tempfile.mkdtemp(prefix="dream_keras_fuzz_"))
    w.chmod(0o755)
    _write_inputs(w)
    _write_models(w, small_run)
    _write_dream_layouts(w)
    before = _snapshot(w)
    yield w
    after = _snapshot(w)
    (w / "unreadable.txt").chmod(0o644)
    (w / "read_only").chmod(0o755)
    changed = sorted(path for path in before if after.get(path) != before[path])
    leftovers = [str(p) for p in w.rglob("*.partial*")]
    shutil.rmtree(w, ignore_errors=True)
    assert not changed, f"inputs or pre-existing files changed: {changed}"
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _run_batch(workspace, command: str, batch: list, as_nobody: bool) -> list:
    scratch = workspace / "out" / f"batch_{command}_{int(as_nobody)}"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    spec = {"module": MODULES[command], "program": f"dream-{command}",
            "cases": [[arg.replace("{W}", str(workspace)).replace("{NAME}", case.name)
                       for arg in case.args] for case in batch]}
    (scratch / "cases.json").write_text(json.dumps(spec))
    command_line = [sys.executable, str(REPO / "tests" / "cli_batch.py"),
                    str(scratch / "cases.json"), str(scratch / "results.json")]
    if as_nobody:  # a fresh interpreter that runs as another user
        completed = subprocess.run(
            command_line, cwd=scratch, capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(scratch)},
            user=NOBODY, group=NOBODY, extra_groups=[])
    else:
        completed = warm_fork.run(command_line, cwd=scratch, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((scratch / "results.json").read_text())


def _nobody_can_run_python() -> bool:
    try:
        return subprocess.run([sys.executable, "-c", "pass"], user=NOBODY, group=NOBODY,
                              extra_groups=[], cwd="/", timeout=60).returncode == 0
    except OSError:  # e.g. the interpreter lives under root's home
        return False


@functools.lru_cache(maxsize=None)
def _permission_cases_runnable() -> bool:
    return not IS_ROOT or _nobody_can_run_python()


@pytest.fixture(scope="module")
def results(workspace):
    """Run every case, one process per command (as root, the permission cases in another,
    as `nobody`: permissions do not bind root); {case name: result}."""
    (workspace / "out").chmod(0o777)
    by_name = {}
    for command in MODULES:
        for as_nobody in (False, True):
            batch = [case for case in cases() if case.command == command
                     and (case.needs_non_root and IS_ROOT) == as_nobody
                     and (not case.needs_non_root or _permission_cases_runnable())]
            if batch:
                outcomes = _run_batch(workspace, command, batch, as_nobody)
                by_name.update({case.name: outcome for case, outcome in zip(batch, outcomes)})
    return by_name


def _own_outputs(case, workspace) -> list:
    """The paths a case names after itself ({NAME}) in an output flag: no other case
    writes them, so each must be absent after a refusal."""
    return [pathlib.Path(arg.split("=", 1)[1].replace("{W}", str(workspace))
                         .replace("{NAME}", case.name))
            for arg in case.args if "{NAME}" in arg
            and arg.startswith(("--output=", "--output_dir=", "--export="))]


def test_refused_cases_name_their_own_outputs():
    refused = {case.name: _own_outputs(case, pathlib.Path("/w")) for case in cases()
               if case.code != 0}
    assert refused["model_missing"] == [pathlib.Path("/w/out/model_missing.tsv")]
    assert sum(bool(paths) for paths in refused.values()) >= 10


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.name)
def test_case(case, results, workspace):
    if case.needs_non_root and not _permission_cases_runnable():
        pytest.skip("running as root, and `nobody` cannot run this Python interpreter: "
                    "permissions cannot be tested")
    result = results[case.name]
    shown = f"stdout:\n{result['stdout'][-1500:]}\nstderr:\n{result['stderr'][-3000:]}"
    assert "Traceback" not in result["stderr"], shown
    assert result["code"] == case.code, shown
    if case.code != 0:
        errors = [line for line in result["stderr"].splitlines()
                  if line.startswith(case.prefix)]
        assert len(errors) == 1, shown
        assert re.search(case.message, errors[0]), f"{errors[0]!r} !~ {case.message!r}"
        for path in _own_outputs(case, workspace):  # a refusal writes nothing
            assert not path.exists(), f"{path} written by a refused command\n{shown}"
    if case.check is not None:
        assert case.check(workspace, result) is not False, shown


# ---- separate processes: the scripts and console scripts as a user runs them -------------

def _console_script(name: str) -> list:
    script = pathlib.Path(sys.executable).parent / name
    if not script.exists():
        pytest.skip(f"{name} is not installed beside {sys.executable}")
    return [str(script)]


def _run(command: list, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=environment)


@pytest.mark.parametrize("command,flags", [
    ([sys.executable, "predict.py"], ["--input", "--export", "--batch_size", "--overwrite"]),
    (["dream-prepare"], ["--input", "--output", "--seq_len", "--skip_bad_rows"]),
    (["dream-synthetic"], ["--output", "--rows", "--seed"]),
    (["dream-evaluate"], ["--data", "--dream_dir", "--dream_partial", "--model"]),
], ids=["predict.py", "dream-prepare", "dream-synthetic", "dream-evaluate"])
def test_help_lists_the_commands_flags_and_exits_0(command, flags):
    if not command[0].startswith("/"):
        command = _console_script(command[0])
    completed = _run(command + ["--help"])
    assert completed.returncode == 0, completed.stderr
    _assert_help(completed.stdout, flags)
    # TensorFlow's start-up lines (oneDNN, cuda drivers, CPU features) are quiet by default.
    assert not re.search(r"^[IW]\d{4} |absl::InitializeLog", completed.stderr, re.M), \
        completed.stderr


def test_a_refusal_reads_the_same_from_the_real_script(workspace):
    completed = _run([sys.executable, "predict.py", f"--model={workspace}/run",
                      f"--input={workspace}/seqs.txt", f"--output={workspace}/seqs.txt",
                      "--overwrite", "--verbosity=1"])
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "is or holds the input" in last
    # --verbosity=1 brings TensorFlow's start-up logging back.
    assert re.search(r"^I\d{4} ", completed.stderr, re.M), completed.stderr[:2000]


def test_full_help_exits_0_and_help_into_a_closed_pipe_is_no_error(monkeypatch, capsys):
    """--helpfull prints absl's whole listing (absl itself ends it with status 1), and help
    piped into a reader that stops early (`| head`) ends quietly, not with a traceback."""
    from dream_keras.cli import runner

    monkeypatch.setattr(sys, "argv", ["command", "--helpfull"])
    with pytest.raises(SystemExit) as exit_status:
        runner.run(lambda: None)
    assert exit_status.value.code == 0 and "only_check_args" in capsys.readouterr().out
    script = ("import sys, time; sys.argv = ['x', '-h']; time.sleep(0.5); "
              "from dream_keras.cli import runner; runner.run(lambda: None)")
    reader = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # the reader goes away before the help is written
    assert reader.wait(timeout=60) == 0
    assert "Traceback" not in reader.stderr.read()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM],
                         ids=["ctrl_c", "sigterm"])
def test_an_interrupted_command_says_so_in_one_line_and_leaves_no_partial_file(
        signal_number, tmp_path):
    """Ctrl-C or a scheduler's SIGTERM in the middle of writing: one line instead of a
    traceback, no half-written output and no temporary file, and the process ends by the
    signal (it exited 130, so a shell loop went on to its next command)."""
    output = tmp_path / "synthetic.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "dream_keras.cli.synthetic", f"--output={output}",
         "--rows=50000000", "--chunk_rows=1000"], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        # As a terminal would deliver it, even when this test runs with SIGINT ignored
        # (a background job of a script), which a child would inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):  # wait until it is writing its temporary file
            if any(name.startswith(".partial-") for name in os.listdir(tmp_path)):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the command never started writing")
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    # Ended by the signal itself, after its cleanup: a shell loop around it stops too.
    assert process.returncode == -signal_number, stderr[-2000:]
    assert "Traceback" not in stderr
    assert re.search(r"^interrupted \((Ctrl-C|SIGTERM)\): outputs are whole or absent; "
                     r"rerun the command to write them$", stderr.splitlines()[-1]), \
        stderr[-2000:]
    assert os.listdir(tmp_path) == []
