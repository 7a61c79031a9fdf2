"""What explaining borrows from the scoring path, imported in one place.

ISM must score mutants exactly as `predict.py` scores sequences (same compiled forward,
same encoding, same un-scaling), so it reuses those functions rather than copying them.
"""
from dream_keras.inference import (DEFAULT_BATCH_SIZE, compiled_forward,  # noqa: F401
                                   encode_strands, load_run, model_seq_len, padded_batch_size,
                                   predict_codes, scoring_model, sequence_list,
                                   WeakModel)
