"""Rebuilds release_0_1_model.keras and release_0_1_model_outputs.npz: a model trained and
saved by dream_keras 0.1.0's training path (train.py's `train`, TF2RMSprop, one epoch on
synthetic rows), an input batch and that release's predictions for it.

    PYTHONPATH=PATH/TO/RELEASE python tests/data/make_release_model.py

Run only with the release whose saved files the tests must keep loading: the point of the
fixture is that the CURRENT code did not write it.
"""
import pathlib
import shutil
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
# The small-model settings of tests/test_distributed_workers.py, as train.py flags take them.
SMALL_MODEL = {"conv_kernel_sizes": (5,), "conv_filters": 16, "conv_out_filters": 8,
               "key_size": 8, "value_size": 8, "num_transformer_blocks": 1,
               "lstm_activation": "tanh"}


def main() -> None:
    import keras

    import dream_keras
    from dream_keras.data import synthetic
    from dream_keras.data.sequences import encode, one_hot
    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig

    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        synthetic.write_dream_file(work / "rows.txt", 200, seed=5)
        config = TrainingConfig(train_data=str(work / "rows.txt"), output_dir=str(work / "run"),
                                epochs=1, batch_size=32, passes_per_epoch=1,
                                optimizer="rmsprop_tf2", learning_rate=1e-3,
                                singleton_keep_prob=1.0, validation_fraction=0.2,
                                jit_compile=False, model=SMALL_MODEL)
        train(config)
        shutil.copy(work / "run" / "model.keras", HERE / "release_0_1_model.keras")
    rng = np.random.default_rng(7)
    sequences = ["".join(rng.choice(list("ACGT"), size=110)) for _ in range(16)]
    inputs = one_hot(encode(sequences, 110)).astype(np.float32)
    model = keras.models.load_model(HERE / "release_0_1_model.keras")
    outputs = keras.ops.convert_to_numpy(model(inputs, training=False))
    np.savez_compressed(HERE / "release_0_1_model_outputs.npz", inputs=inputs,
                        outputs=outputs, dream_keras=dream_keras.__version__,
                        keras=keras.__version__)
    print("wrote", HERE / "release_0_1_model.keras", outputs[:4, 0], file=sys.stderr)


if __name__ == "__main__":
    main()
