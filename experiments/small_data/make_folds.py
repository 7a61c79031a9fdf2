r"""Split labelled files into K cross-validation folds: FOLD_DIR/fold<i>/{train,test}.txt.

    python experiments/small_data/make_folds.py \
        --inputs=TRAIN_SAMPLE/de_boer_demo_train.txt,TRAIN_SAMPLE/camformer_demo_test.txt \
        --output_dir=runs/small_data/real_folds --folds=5 --seed=0

Rows of all inputs are pooled, validated with the package's reader, shuffled with --seed
and dealt into --folds equal parts; fold i tests on part i and trains on the rest.
Existing fold files are refused, before anything is written, unless --overwrite; an
input is never overwritten. Each file is written atomically (whole or not at all).
"""
import os

import numpy as np
from absl import flags

from dream_keras.atomic_files import write_text
from dream_keras.cli import runner
from dream_keras.data.readers import read_expression_file
from dream_keras.data.synthetic import format_rows
from dream_keras.safe_output import check_output_path

_INPUTS = flags.DEFINE_list("inputs", None, "Labelled sequence<TAB>expression files to pool.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where fold<i>/ directories go.")
_FOLDS = flags.DEFINE_integer("folds", 5, "Number of folds.", lower_bound=2)
_SEED = flags.DEFINE_integer("seed", 0, "Shuffling seed.", lower_bound=0)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing fold files (never an "
                               "input file).")
flags.mark_flags_as_required(["inputs", "output_dir"])


def _fold_path(fold: int, name: str) -> str:
    return os.path.join(_OUTPUT_DIR.value, f"fold{fold}", f"{name}.txt")


def make_folds() -> None:
    # Every output is checked before any input is read or any file written, so a refusal
    # leaves the directory as it was.
    for fold in range(_FOLDS.value):
        for name in ("train", "test"):
            check_output_path(_fold_path(fold, name), inputs=_INPUTS.value,
                              overwrite=_OVERWRITE.value, parameter="output_dir",
                              in_directory=True)
    sequences, values = [], []
    for path in _INPUTS.value:
        s, v = read_expression_file(path)
        sequences += s
        values.append(v)
    values = np.concatenate(values)
    part = np.random.default_rng(_SEED.value).permutation(len(sequences)) % _FOLDS.value
    for fold in range(_FOLDS.value):
        for name, rows in (("train", part != fold), ("test", part == fold)):
            index = np.flatnonzero(rows)
            write_text(_fold_path(fold, name),
                       format_rows([sequences[i] for i in index], values[index]))
        print(f"fold {fold}: {int((part != fold).sum())} train, {int((part == fold).sum())} test")


if __name__ == "__main__":
    runner.run(make_folds)
