"""dream_keras: team MadLab's DREAM Challenge 2022 expression model, faithfully, in Keras 3.

`import dream_keras` is light: it imports neither TensorFlow nor Keras. The public names
below resolve on first use (PEP 562), and `load_model` imports the custom layers, which
registers them with Keras, before loading a saved model:

    import dream_keras
    model = dream_keras.load_model("runs/base/model.keras")
"""
from __future__ import annotations

import importlib

from dream_keras.version import __version__

# public name -> module that defines it
_LAZY = {
    "build_model": "dream_keras.model",
    "MODEL_DEFAULTS": "dream_keras.model",
    "load_model": "dream_keras.model",
    "MultiScaleConv": "dream_keras.layers",
    "RelativeMultiHeadAttention": "dream_keras.layers",
    "TransformerBlock": "dream_keras.layers",
    "load_run": "dream_keras.inference",
    "predict_sequences": "dream_keras.inference",
    "variant_effects": "dream_keras.inference",
    "predict_file": "dream_keras.prediction_files",
    "predict_pairs_file": "dream_keras.prediction_files",
    "export_serving": "dream_keras.export",
    "TrainingConfig": "dream_keras.training_config",
    "train": "dream_keras.training",
    "train_ensemble": "dream_keras.ensemble",
    "write_ensemble": "dream_keras.ensemble",
    "DreamKerasError": "dream_keras.errors",
    "DataFormatError": "dream_keras.errors",
    "InvalidSequenceError": "dream_keras.data.sequences",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dream_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # resolve once
    return value


def __dir__():
    return sorted(__all__)
