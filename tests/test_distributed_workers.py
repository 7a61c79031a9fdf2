"""Two local workers (MultiWorkerMirroredStrategy through train.py) that cannot hang: one
early-stopping decision for both, and after a kill both resume from the chief's backup."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.test_training import _free_ports, history, small_cache  # noqa: F401 (fixture)

SMALL_MODEL_FLAGS = ["--conv_kernel_sizes=5", "--conv_filters=16", "--conv_out_filters=8",
                     "--key_size=8", "--value_size=8", "--num_transformer_blocks=1"]
RUN = ["--passes_per_epoch=1", "--batch_size=32", "--optimizer=adam",
       "--singleton_keep_prob=1", "--validation_fraction=0.2", "--strategy=multi_worker",
       "--steps_per_epoch=3", *SMALL_MODEL_FLAGS]


def _start_workers(run_dir, cache, extra):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                              "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), f"--train_data={cache}",
             f"--output_dir={run_dir}", *RUN, *extra],
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes, timeout=400):
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in processes] == [0, 0], \
        outputs[0][1][-2000:] + outputs[1][1][-2000:]
    return [err for _, err in outputs]


def test_early_stopping_stops_both_workers_on_the_same_epoch(tmp_path, small_cache):  # noqa: F811
    # Learning rate 0: val_pearson never improves after epoch 1, so patience 1 stops the
    # run after epoch 2 of 5; a worker that went on alone would wait forever.
    logs = _finish(_start_workers(tmp_path / "run", small_cache,
                                  ["--learning_rate=0", "--epochs=5",
                                   "--early_stopping_patience=1"]))
    assert [int(row["epoch"]) for row in history(tmp_path / "run")] == [0, 1]
    for log in logs:
        assert "Epoch 2/5" in log and "Epoch 3/5" not in log
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "completed" and record["num_replicas_in_sync"] == 2
    assert record["xla"]["train_step"] in ("per_replica", "off")
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        ["history.csv", "model.keras", "run.json", "target_scaler.json", "tensorboard"])


def test_killed_workers_both_resume_from_the_chiefs_backup(tmp_path, small_cache):  # noqa: F811
    extra = ["--learning_rate=1e-3", "--epochs=3"]
    metadata = tmp_path / "run" / "backup" / "training_metadata.json"
    processes = _start_workers(tmp_path / "run", small_cache, extra)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and all(p.poll() is None for p in processes):
            try:
                if json.loads(metadata.read_text())["epoch"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        for p in processes:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    backed_up = json.loads(metadata.read_text())["epoch"]
    assert 1 <= backed_up < 3
    logs = _finish(_start_workers(tmp_path / "run", small_cache, extra))
    for log in logs:  # both workers, not only the chief, resume at the chief's epoch
        assert f"resuming {tmp_path / 'run'} at epoch {backed_up + 1}" in log
    assert [int(row["epoch"]) for row in history(tmp_path / "run")] == [0, 1, 2]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == 3
