"""Split labelled files into K cross-validation folds: FOLD_DIR/fold<i>/{train,test}.txt.

    python experiments/small_data/make_folds.py \
        --inputs=TRAIN_SAMPLE/de_boer_demo_train.txt,TRAIN_SAMPLE/camformer_demo_test.txt \
        --output_dir=runs/small_data/real_folds --folds=5 --seed=0

Rows of all inputs are pooled, validated with the package's reader, shuffled with --seed
and dealt into --folds equal parts; fold i tests on part i and trains on the rest.
"""
import os

import numpy as np
from absl import app, flags

from dream_keras.data.readers import read_expression_file
from dream_keras.data.synthetic import format_rows

_INPUTS = flags.DEFINE_list("inputs", None, "Labelled sequence<TAB>expression files to pool.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where fold<i>/ directories go.")
_FOLDS = flags.DEFINE_integer("folds", 5, "Number of folds.", lower_bound=2)
_SEED = flags.DEFINE_integer("seed", 0, "Shuffling seed.")
flags.mark_flags_as_required(["inputs", "output_dir"])


def main(argv):
    del argv
    sequences, values = [], []
    for path in _INPUTS.value:
        s, v = read_expression_file(path)
        sequences += s
        values.append(v)
    values = np.concatenate(values)
    part = np.random.default_rng(_SEED.value).permutation(len(sequences)) % _FOLDS.value
    for fold in range(_FOLDS.value):
        directory = os.path.join(_OUTPUT_DIR.value, f"fold{fold}")
        os.makedirs(directory, exist_ok=True)
        for name, rows in (("train", part != fold), ("test", part == fold)):
            index = np.flatnonzero(rows)
            with open(os.path.join(directory, f"{name}.txt"), "w") as handle:
                handle.write(format_rows([sequences[i] for i in index], values[index]))
        print(f"fold {fold}: {int((part != fold).sum())} train, {int((part == fold).sum())} test")


if __name__ == "__main__":
    app.run(main)
