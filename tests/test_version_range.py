"""The supported TensorFlow/Keras range: only the multi-worker path, which patches private
Keras code, refuses versions outside the ones it was tested with, in one clear error."""

from tests.run_helpers import run_code

_SCRIPT = """
import keras
import dream_keras.training  # the one-device and mirrored paths import no patch
keras.__version__ = "3.7.0"  # an older Keras inside setup.cfg's range
try:
    import dream_keras.multi_worker_fixes
except Exception as error:
    print(type(error).__name__ + ": " + str(error))
"""


def test_multi_worker_patches_refuse_an_untested_keras():
    (line,) = [line for line in run_code(_SCRIPT).stdout.splitlines()
               if line.startswith("Config")]
    assert line.startswith("ConfigurationError: --strategy=multi_worker patches private")
    assert "Keras 3.7.0 is installed" in line and "--strategy=mirrored" in line
