"""Held-out scores of a seed ensemble: the mean of several runs' predictions.

    python experiments/small_data/ensemble_scores.py --models=RUN_A,RUN_B --data=HELDOUT.txt \
        [--reverse_complement_average]

Each run predicts on its own training scale (its target_scaler.json); the ensemble is the
mean of those expression-scale predictions. Prints one JSON line: every member's and the
ensemble's Pearson r and Spearman rho (dream_keras.metrics names).
"""
import json

import numpy as np
from absl import app, flags

from dream_keras.data.readers import read_expression_file
from dream_keras.inference import load_run, predict_sequences
from dream_keras.metrics import correlation_summary

_MODELS = flags.DEFINE_list("models", None, "Run directories or model.keras paths.")
_DATA = flags.DEFINE_string("data", None, "Labelled held-out file.")
_RC = flags.DEFINE_bool("reverse_complement_average", False, "Average both strands.")
flags.mark_flags_as_required(["models", "data"])


def main(argv):
    del argv
    sequences, measured = read_expression_file(_DATA.value)
    members = []
    for path in _MODELS.value:
        model, scaler = load_run(path)
        members.append(predict_sequences(model, scaler, sequences,
                                         reverse_complement_average=_RC.value))
    result = {"data": _DATA.value, "reverse_complement_average": _RC.value,
              "members": {path: correlation_summary(p, measured)
                          for path, p in zip(_MODELS.value, members)},
              "ensemble": correlation_summary(np.mean(members, axis=0), measured)}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
