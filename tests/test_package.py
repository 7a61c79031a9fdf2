"""The package boundary: a light root, a TensorFlow-free data layer, self-contained
repository files, one error type for the command lines, the seed's recipe in base.flags."""
import dataclasses
import re
import subprocess
import sys

import pytest

import dream_keras
from dream_keras.cli import runner
from dream_keras.errors import DataFormatError, DreamKerasError
from dream_keras.training_config import TrainingConfig
from tests.conftest import REPO

DATA_MODULES = ["dream_keras.data." + p.stem for p in (REPO / "dream_keras" / "data").glob("*.py")
                if p.stem != "__init__"]


def _imported_after(code: str) -> set:
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.split())


def test_root_and_data_layer_leave_tensorflow_unloaded():
    assert len(DATA_MODULES) >= 6
    imported = _imported_after("import dream_keras, dream_keras.errors\n" +
                               "\n".join(f"import {name}" for name in DATA_MODULES))
    assert set(DATA_MODULES) <= imported
    assert not {"tensorflow", "keras"} & imported


def test_public_names_resolve_lazily():
    from dream_keras.model import build_model

    assert dream_keras.build_model is build_model
    assert set(dream_keras.__all__) <= set(dir(dream_keras)) | {"__version__"}
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        dream_keras.not_a_name  # noqa: B018


def test_training_imports_private_keras_code_only_for_multi_worker():
    """In a process that had imported TensorFlow and Keras but nothing of the package (a
    warm fork, tests/warm_fork.py), the training path leaves the patch module unloaded."""
    from tests.run_helpers import run_code

    imported = set(run_code("import sys, dream_keras.training\n"
                            "print(' '.join(sys.modules))").stdout.split())
    assert {"dream_keras.training", "dream_keras.distribute"} <= imported  # it can see them
    assert "dream_keras.multi_worker_fixes" not in imported


def test_no_file_refers_to_paths_outside_the_checkout():
    """A user clones only the repository: no file may name the design folder beside it."""
    outside = re.compile(r"\.\./shared|/work/|/shared/(data|reference|design)")
    checked = [p for pattern in ("dream_keras/**/*.py", "tests/**/*.py", "flags/*",
                                 "benchmarks/*.py", "*.py", "Makefile", "setup.cfg", ".ci/*")
               for p in REPO.glob(pattern)]
    assert len(checked) > 40
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in checked
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if outside.search(line) and p.name != "test_package.py"]
    assert offenders == []


def test_cli_prints_package_errors_in_one_line_and_keeps_other_tracebacks():
    def bad_input():
        raise DataFormatError("rows.txt", 7, "letter 'X' outside ACGTN")

    with pytest.raises(SystemExit) as stopped:
        runner._guarded(bad_input, ["prog"])
    assert stopped.value.code == "error: rows.txt:7: letter 'X' outside ACGTN"

    def bug():
        raise KeyError("internal")

    with pytest.raises(KeyError):
        runner._guarded(bug, ["prog"])
    assert issubclass(DataFormatError, DreamKerasError) and issubclass(DataFormatError, ValueError)


def _flagfile(name: str) -> dict:
    values = {}
    for line in (REPO / "flags" / name).read_text().splitlines():
        if line.startswith("--"):
            key, _, value = line[2:].partition("=")
            values[key] = value
    return values


def test_base_flags_is_the_seeds_schedule_and_settings():
    base = _flagfile("base.flags")
    assert base["optimizer"] == "rmsprop_tf2" and float(base["learning_rate"]) == 1e-4
    assert float(base["layer_norm_epsilon"]) == 1e-3 and base["batch_size"] == "1024"
    assert base["epochs"] == "10" and float(base["passes_per_epoch"]) == 8
    assert "nofreeze_transformer" in base
    assert base["lr_schedule"] == "constant" and float(base["lr_warmup_epochs"]) == 0
    config = TrainingConfig(train_data="", output_dir="", batch_size=1024,
                            passes_per_epoch=float(base["passes_per_epoch"]))
    # The notebook: N_train / 128 = 4,703,150 / 128 -> 36,743 steps of 1,024 per 'epoch'.
    assert config.resolved_steps_per_epoch(4_703_150) == 36_743
    assert TrainingConfig(train_data="", output_dir="", batch_size=64,
                          passes_per_epoch=1).resolved_steps_per_epoch(1000) == 15
    assert TrainingConfig(train_data="", output_dir="", steps_per_epoch=7,
                          passes_per_epoch=8).resolved_steps_per_epoch(10**6) == 7
    # The flag defaults are the seed's recipe too.
    defaults = TrainingConfig(train_data="", output_dir="")
    assert (defaults.optimizer, defaults.passes_per_epoch) == ("rmsprop_tf2", 8.0)
    assert (defaults.lr_schedule, defaults.lr_warmup_epochs) == ("constant", 0.0)


def test_a_training_config_refuses_what_the_flags_bound(tmp_path):
    """API users get the flags' refusals as ConfigurationError: 0 passes trained 1 step per
    epoch; seq_len 0 failed deep in h5py while preparing the cache."""
    from dream_keras.data.training_data import load_training_rows
    from dream_keras.errors import ConfigurationError

    for passes in (0.0, -1.0):
        config = TrainingConfig(train_data="", output_dir="", passes_per_epoch=passes)
        with pytest.raises(ConfigurationError, match="passes_per_epoch must be > 0"):
            config.resolved_steps_per_epoch(1000)
        assert dataclasses.replace(config, steps_per_epoch=5).resolved_steps_per_epoch(10) == 5
    (tmp_path / "rows.txt").write_text("ACGT\t1.5\n")
    config = TrainingConfig(train_data=str(tmp_path / "rows.txt"), output_dir="")
    for seq_len in (0, -3):
        with pytest.raises(ConfigurationError, match=rf"seq_len must be >= 1, got {seq_len}"):
            load_training_rows(config, seq_len)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.txt"]  # no cache begun


def test_base_flags_parse_and_a_missing_file_says_where_to_get_it(tmp_path):
    from tests.run_helpers import run_script

    result = run_script("train.py", f"--flagfile={REPO / 'flags' / 'base.flags'}",
                        f"--train_data={tmp_path / 'train_sequences.txt'}",
                        f"--output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training data") and "10633252" in last
    assert str(tmp_path / "train_sequences.txt") in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    # A file of another name is the user's own: just missing, no download hint.
    result = run_script("train.py", f"--flagfile={REPO / 'flags' / 'base.flags'}",
                        f"--train_data={tmp_path / 'mine.txt'}",
                        f"--output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: training data {tmp_path / 'mine.txt'} not found")


def test_multi_worker_patches_refuse_an_untested_keras(monkeypatch):
    import keras

    from dream_keras import multi_worker_fixes
    from dream_keras.errors import ConfigurationError

    multi_worker_fixes._check_versions()  # the installed versions are the tested ones
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.raises(ConfigurationError, match="tested only with Keras 3.15-3.15.*3.99.0"):
        multi_worker_fixes._check_versions()
