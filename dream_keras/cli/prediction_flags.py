"""absl flags that evaluate.py, predict.py and explain.py share: the model, batching, strand
averaging, and whether implausible predictions are written."""
from __future__ import annotations

import dataclasses

from absl import flags

from dream_keras.cli import runner
from dream_keras.inference import DEFAULT_BATCH_SIZE
from dream_keras.data.readers import DEFAULT_CHUNK_ROWS


@dataclasses.dataclass(frozen=True)
class PredictionFlags:
    model: flags.FlagHolder
    batch_size: flags.FlagHolder
    chunk_rows: flags.FlagHolder
    reverse_complement_average: flags.FlagHolder
    allow_implausible: flags.FlagHolder


def define_prediction_flags(*, chunk_rows_help: str,
                            reverse_complement_help: str) -> PredictionFlags:
    """Define --model (required), --batch_size, --chunk_rows, --reverse_complement_average,
    --allow_implausible."""
    holders = PredictionFlags(
        model=flags.DEFINE_string(
            "model", None, "The trained model: RUN/model.keras (or the run directory RUN); "
            "RUN/target_scaler.json must sit beside it."),
        batch_size=flags.DEFINE_integer(
            "batch_size", DEFAULT_BATCH_SIZE, "Sequences per prediction batch: the compiled "
            "model's fixed batch shape (the last batch is padded); see docs/scoring.md.",
            lower_bound=1),
        chunk_rows=flags.DEFINE_integer("chunk_rows", DEFAULT_CHUNK_ROWS, chunk_rows_help,
                                        lower_bound=1),
        reverse_complement_average=flags.DEFINE_bool(
            "reverse_complement_average", False, reverse_complement_help),
        allow_implausible=flags.DEFINE_bool(
            "allow_implausible", False, "Go on where the model predicts far outside the "
            "training targets' range (refused by default, naming the row: such a value is "
            "an exploded output, not a prediction); a warning counts such values. See "
            "docs/scoring.md, 'Implausible predictions'."),
    )
    runner.mark_required(["model"])
    return holders
