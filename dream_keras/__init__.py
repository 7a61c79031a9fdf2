"""dream_keras: team MadLab's DREAM Challenge 2022 expression model, faithfully, in Keras 3.

`import dream_keras` registers the custom layers, so `keras.models.load_model` can read a
saved model. The data-only command lines (`python -m dream_keras.prepare`, `python -m
dream_keras.synthetic`) skip importing Keras/TensorFlow: that import alone costs ~3.5 s,
longer than preparing a million rows.
"""
import sys

from dream_keras.version import __version__

_DATA_ONLY_ENTRY_POINTS = ("dream_keras.prepare", "dream_keras.synthetic")


def _started_as_data_only_command() -> bool:
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in _DATA_ONLY_ENTRY_POINTS


if not _started_as_data_only_command():
    from dream_keras import layers  # noqa: F401  (registers the custom layers for loading)
    from dream_keras.model import MODEL_DEFAULTS, build_model  # noqa: F401
