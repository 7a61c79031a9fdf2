"""A model saved by release 0.1.0's training path (tests/data/release_0_1_model.keras,
see tests/data/README.md) still loads, compiled, as a plain functional model in a new
process that had not imported the package (a warm fork, tests/warm_fork.py) and predicts what that release predicted."""
import importlib.metadata

import numpy as np
import pytest

from tests.run_helpers import run_code, tagged_json
from tests.conftest import REPO

SAVED_BY_KERAS = str(np.load(REPO / "tests" / "data" / "release_0_1_model_outputs.npz")["keras"])


def _major_minor(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".")[:2])

_SCRIPT = """
import json
import keras, numpy as np
import dream_keras.model  # registers the package's layers and optimizer
data = "{data}"
model = keras.models.load_model(data + "/release_0_1_model.keras")  # compiled load
stored = np.load(data + "/release_0_1_model_outputs.npz")
outputs = keras.ops.convert_to_numpy(model(stored["inputs"], training=False))
same_keras = str(stored["keras"]) == keras.__version__
# Not bit-equal even on the same release: oneDNN picks its kernels by the CPU's instruction
# set, so the last float32 bits differ between machines (seen: 8.9e-8 on an AVX-512/AMX
# CPU for a fixture written on another). Within a few float32 steps on the same release;
# another Keras/TF release may round further.
if same_keras:
    np.testing.assert_allclose(outputs, stored["outputs"], rtol=1e-6, atol=3e-7)
else:
    np.testing.assert_allclose(outputs, stored["outputs"], rtol=1e-5, atol=1e-6)
print("RESULT " + json.dumps({{
    "class": type(model).__name__, "optimizer": type(model.optimizer).__name__,
    "iterations": int(model.optimizer.iterations.numpy()), "same_keras": same_keras}}))
"""


# Keras reads the files of its own and older releases, not of newer ones (Keras 3.7 does
# not know the initializer arguments that 3.15 writes), so on an older Keras this is moot.
@pytest.mark.skipif(_major_minor(importlib.metadata.version("keras"))
                    < _major_minor(SAVED_BY_KERAS),
                    reason=f"the fixture was saved by Keras {SAVED_BY_KERAS}, newer than "
                    "the installed Keras")
def test_release_0_1_model_loads_and_predicts_as_it_did():
    script = _SCRIPT.format(data=REPO / "tests" / "data")
    loaded = tagged_json(run_code(script).stdout, "RESULT ")
    # Plain functional model; the optimizer state (5 steps of one epoch) came back with it.
    assert loaded["class"] == "Functional"
    assert loaded["optimizer"] == "TF2RMSprop" and loaded["iterations"] == 5
