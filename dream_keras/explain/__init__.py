"""Why a trained run predicts what it does: in-silico mutagenesis, gradient x input,
integrated gradients, sequence logos and TF-MoDISco inputs (docs/explain.md)."""
from dream_keras.explain.core import METHODS, explain_encoded, explain_run, explain_sequences  # noqa: F401
