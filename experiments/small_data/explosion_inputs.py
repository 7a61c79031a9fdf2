"""On which inputs do trained runs explode? Counts implausible predictions
(dream_keras.plausibility, NaN included) of each run on real held-out sequences, as they
are and with a run of one letter (N, or a homopolymer) written over them:

    python experiments/small_data/explosion_inputs.py --sequences=FOLD/test.txt \\
        --runs=RUN1,RUN2,ENSEMBLE_DIR,... [--count=200 --letters=N,A,T \\
        --run_lengths=10,20,30,50 --start=40]

The first --count sequences of exactly 110 bases without N are used; a variant replaces
bases start .. start+length-1 by the letter. Each cell: implausible predictions of the
forward strand / of the strand average (predict.py --reverse_complement_average), out of
--count. What it showed (docs/scoring.md, "Implausible predictions"): no run explodes on
the sequences as they are, and several do on 30-50-base A or T tracts.
"""
import numpy as np
from absl import app, flags, logging

from dream_keras.data.readers import read_expression_file
from dream_keras.inference import load_run, predict_sequences
from dream_keras.plausibility import implausible_mask

_SEQUENCES = flags.DEFINE_string("sequences", None, "Labelled sequence<TAB>expression file.")
_RUNS = flags.DEFINE_list("runs", None, "Run directories (or ensemble directories).")
_COUNT = flags.DEFINE_integer("count", 200, "Sequences to use.", lower_bound=1)
_LETTERS = flags.DEFINE_list("letters", ["N", "A", "T"], "Letters of the inserted runs.")
_LENGTHS = flags.DEFINE_list("run_lengths", ["10", "20", "30", "50"], "Run lengths.")
_START = flags.DEFINE_integer("start", 40, "0-based first base of the run.", lower_bound=0)
flags.mark_flags_as_required(["sequences", "runs"])


def variants(sequences: list, letters, lengths, start: int) -> dict:
    found = {"as they are": sequences}
    for letter in letters:
        for length in lengths:
            found[f"{letter} x {length}"] = [s[:start] + letter * length + s[start + length:]
                                             for s in sequences]
    return found


def implausible_counts(run: str, inputs: dict) -> list:
    model, scaler = load_run(run)
    counts = []
    for sequences in inputs.values():
        cell = []
        for both in (False, True):
            values = predict_sequences(model, scaler, sequences, reverse_complement_average=both)
            cell.append(int(implausible_mask(values, scaler).sum() + np.isnan(values).sum()))
        counts.append(cell)
    return counts


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # the API warns for each implausible batch
    sequences, _ = read_expression_file(_SEQUENCES.value)
    chosen = [s for s in sequences if len(s) == 110 and "N" not in s][:_COUNT.value]
    inputs = variants(chosen, _LETTERS.value, [int(n) for n in _LENGTHS.value], _START.value)
    print(f"{len(chosen)} sequences; implausible forward / strand-averaged")
    print("| run | " + " | ".join(inputs) + " |")
    print("|---|" + "---|" * len(inputs))
    for run in _RUNS.value:
        cells = implausible_counts(run, inputs)
        print(f"| {run} | " + " | ".join(f"{a} / {b}" for a, b in cells) + " |", flush=True)


if __name__ == "__main__":
    app.run(main)
