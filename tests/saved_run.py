"""A small trained-run directory for the evaluation/inference tests: build, save, reuse.

The suite's small model (tests/conftest.py SMALL_MODEL) keeps the tests fast; the
input/output contract (one-hot [None, 110, 4] -> standardised expression [None, 1]) is the
full model's. Tests get the saved run from the `small_run` fixture (conftest.py).
"""
import pathlib

import numpy as np

from tests.conftest import SMALL_MODEL

# tanh LSTM: an untrained swish LSTM outputs tens of standard deviations (values ~ -180 on
# the training scale), where float32 cannot resolve the 1e-5 agreement asked of every
# prediction path; tanh keeps outputs on a trained model's scale.
SAVED_RUN_MODEL = dict(SMALL_MODEL, lstm_activation="tanh")
SCALER_MEAN, SCALER_STD = 11.0, 2.5
SAVED_RUN_SEED = 0


def save_small_run(directory: pathlib.Path, seed: int = SAVED_RUN_SEED) -> pathlib.Path:
    """Write model.keras + target_scaler.json + run.json into `directory`; the model path.
    Another `seed` gives other weights."""
    import json

    import dream_keras
    from dream_keras.data.splits import TargetScaler

    import keras

    directory.mkdir(parents=True, exist_ok=True)
    # The same weights in every session: tests on this untrained model (e.g. integrated
    # gradients' completeness on a near-zero difference) must not depend on test order.
    keras.utils.set_random_seed(seed)
    model = dream_keras.build_model(**SAVED_RUN_MODEL)
    model.save(directory / "model.keras")
    TargetScaler(SCALER_MEAN, SCALER_STD).save(directory / "target_scaler.json")
    (directory / "run.json").write_text(json.dumps({"flags": {"seq_len": 110}}))
    return directory / "model.keras"


def random_sequences(count: int, seed: int, min_len: int = 60, max_len: int = 140) -> list:
    """Random ACGT strings of varied lengths (some shorter, some longer than 110)."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(n)))
            for n in rng.integers(min_len, max_len + 1, size=count)]


def reference_predictions(model_path, sequences) -> np.ndarray:
    """Training-scale predictions computed independently of dream_keras.inference."""
    import keras

    from dream_keras.data.sequences import encode, one_hot

    model = keras.models.load_model(model_path, compile=False)
    output = model(one_hot(encode(sequences, 110)), training=False)
    return keras.ops.convert_to_numpy(output).astype(np.float64).reshape(-1) * SCALER_STD \
        + SCALER_MEAN
