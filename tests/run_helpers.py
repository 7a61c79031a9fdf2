"""Helpers for tests that run the package in processes of their own: training runs, scripts,
`python -c` code (warm forks), a synthetic cache, history.csv, killing a run."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

from dream_keras.data import synthetic
from dream_keras.data.cache import prepare_cache
from tests import warm_fork
from tests.conftest import REPO, small_model_flags

# A warm-up and cosine schedule, so that the kill-and-resume tests that use it (ensemble,
# weight averaging) also show a resumed run continuing the same learning-rate curve.
SMALL_RUN = ["--epochs=2", "--passes_per_epoch=1", "--batch_size=32", "--optimizer=adam", "--learning_rate=1e-3",
             "--lr_schedule=cosine", "--lr_warmup_epochs=0.5",
             "--nojit_compile", "--singleton_keep_prob=1", "--validation_fraction=0.2",
             *small_model_flags()]


def start_script(script, *args, cwd):
    """A repository script (predict.py, evaluate.py, ...) started in `cwd` (a warm fork)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return warm_fork.popen([sys.executable, str(REPO / script), *args], cwd=cwd, env=env)


def finish(process) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_script(script, *args, cwd) -> subprocess.CompletedProcess:
    return finish(start_script(script, *args, cwd=cwd))


def run_code(code: str, *, timeout=300, cwd=REPO) -> subprocess.CompletedProcess:
    """`python -c code` in a warm fork (tests/warm_fork.py: TensorFlow and Keras imported,
    nothing of dream_keras, as a user's new interpreter is); asserts exit 0."""
    result = warm_fork.run([sys.executable, "-c", code], cwd=cwd, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def tagged_json(stdout: str, tag: str):
    """The JSON value printed after `tag` on the line of `stdout` that starts with it."""
    (line,) = [line for line in stdout.splitlines() if line.startswith(tag)]
    return json.loads(line[len(tag):])


def run_train(*args, timeout=300, env=None, check=True):
    """train.py with `args` in a process of its own (a warm fork); asserts exit 0 unless
    `check` is False."""
    result = warm_fork.run([sys.executable, str(REPO / "train.py"), *args], timeout=timeout,
                           cwd=REPO, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def synthetic_cache(tmp_path_factory, rows: int):
    """A prepared cache of `rows` synthetic rows (seed 11)."""
    folder = tmp_path_factory.mktemp("data")
    synthetic.write_dream_file(folder / "rows.txt", rows, seed=11)
    prepare_cache(folder / "rows.txt", folder / "rows.h5")
    return folder / "rows.h5"


def history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def kill_after_backup(processes, metadata, timeout=300) -> int:
    """SIGKILL `processes` once the backup at `metadata` records epoch >= 1 (or one of
    them exits, or `timeout` s pass); returns the backed-up epoch."""
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and all(p.poll() is None for p in processes):
            try:
                if json.loads(metadata.read_text())["epoch"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return json.loads(metadata.read_text())["epoch"]
