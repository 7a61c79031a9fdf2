"""The smoke subset (`pytest -m smoke`): what a user does first, end to end, in a few
minutes. CI runs it on the oldest TensorFlow/Keras pair that setup.cfg allows (.ci/run);
the whole suite runs on the newest.

Installed package and commands, a one-epoch train.py run with the default XLA train
step, its saved model loaded by plain Keras, predict.py and evaluate.py on it.
"""
import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dream_keras
from tests.conftest import REPO, small_model_flags

# smoke: the oldest-pair subset (.ci/run); long: scheduled by length (tests/conftest.py)
pytestmark = [pytest.mark.smoke, pytest.mark.long(seconds=24)]


def _script(name, *args, cwd):
    result = subprocess.run([sys.executable, str(REPO / name), *args], cwd=cwd,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_installed_distribution_and_commands():
    assert importlib.metadata.version("dream_keras") == dream_keras.__version__
    scripts = pathlib.Path(sys.executable).parent
    for command in ("dream-train", "dream-predict", "dream-evaluate"):
        assert shutil.which(command, path=str(scripts)), f"{command} not installed"


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    from dream_keras.data import synthetic

    folder = tmp_path_factory.mktemp("smoke")
    synthetic.write_dream_file(folder / "rows.txt", 240, seed=3)
    _script("train.py", f"--train_data={folder / 'rows.txt'}", "--output_dir=run",
            "--epochs=1", "--passes_per_epoch=1", "--batch_size=32", "--jit_compile",
            "--singleton_keep_prob=1", "--validation_fraction=0.2", *small_model_flags(),
            cwd=folder)
    return folder


def test_one_epoch_trains_with_xla_and_saves_a_plain_model(one_epoch_run):
    import keras

    import dream_keras.model  # noqa: F401  (registers the package's layers)

    run = one_epoch_run / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == 1
    assert record["xla"]["train_step"] == "whole_step"
    assert record["versions"]["tensorflow"] == __import__("tensorflow").__version__
    assert np.isfinite(record["best_metrics"]["val_loss"])
    model = keras.models.load_model(run / "model.keras")  # compiled: optimizer included
    assert type(model).__name__ == "Functional"
    assert type(model.optimizer).__name__ == "TF2RMSprop"
    assert model.count_params() == record["parameters"]


def test_predict_and_evaluate_commands_on_the_run(one_epoch_run):
    rng = np.random.default_rng(4)
    sequences = ["".join(rng.choice(list("ACGT"), size=110)) for _ in range(9)]
    (one_epoch_run / "seqs.txt").write_text("\n".join(sequences) + "\n")
    _script("predict.py", "--model=run/model.keras", "--input=seqs.txt",
            "--output=predictions.tsv", cwd=one_epoch_run)
    lines = (one_epoch_run / "predictions.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines[1:]] == sequences
    from_cli = np.array([float(line.split("\t")[1]) for line in lines[1:]])
    model, scaler = dream_keras.load_run(one_epoch_run / "run")
    np.testing.assert_allclose(from_cli, dream_keras.predict_sequences(model, scaler,
                                                                       sequences), atol=1e-5)

    rows = (one_epoch_run / "rows.txt").read_text().splitlines()[:50]
    (one_epoch_run / "labelled.txt").write_text("\n".join(rows) + "\n")
    _script("evaluate.py", "--model=run/model.keras", "--data=labelled.txt",
            "--output_dir=evaluation", cwd=one_epoch_run)
    metrics = json.loads((one_epoch_run / "evaluation" / "metrics.json").read_text())
    assert metrics["n"] == 50 and -1 <= metrics["pearson"] <= 1
