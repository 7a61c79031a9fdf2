"""Two local workers (MultiWorkerMirroredStrategy through train.py) that cannot hang: after
a kill both resume from the chief's backup, and one early-stopping decision ends both."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests import warm_fork
from tests.conftest import REPO, small_model_flags
from tests.run_helpers import history, kill_after_backup

pytestmark = pytest.mark.long(seconds=28)  # scheduled by length (tests/conftest.py)

RUN = ["--passes_per_epoch=1", "--batch_size=32", "--optimizer=adam",
       "--singleton_keep_prob=1", "--validation_fraction=0.2", "--strategy=multi_worker",
       "--steps_per_epoch=3", *small_model_flags()]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(run_dir, cache, extra, worker_1_dir=None):
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                              "index": index}}
        output_dir = worker_1_dir if index == 1 and worker_1_dir else run_dir
        processes.append(warm_fork.popen(
            [sys.executable, str(REPO / "train.py"), f"--train_data={cache}",
             f"--output_dir={output_dir}", *RUN, *extra],
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes, timeout=400, returncodes=(0, 0)):
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in processes] == list(returncodes), \
        outputs[0][1][-2000:] + outputs[1][1][-2000:]
    return [out + err for out, err in outputs]


def test_killed_workers_resume_from_the_chiefs_backup_and_stop_early_together(
        tmp_path, small_cache):  # noqa: F811
    """Both workers are killed once the chief has backed up epoch 1; restarted, both resume
    at the chief's epoch (not only the chief), and the early-stopping decision, taken on
    the chief's metrics, ends both on the same epoch: a worker that went on alone would
    wait forever in the next collective. Learning rate 0: only the BatchNorm moving
    statistics change, so val_pearson soon stops improving and patience 1 ends the run
    before epoch 5 (after 3 epochs with this seed)."""
    run_dir = tmp_path / "run"
    extra = ["--learning_rate=0", "--epochs=5", "--early_stopping_patience=1"]
    metadata = run_dir / "backup" / "epoch-000001.json"  # epoch 1 committed
    backed_up = kill_after_backup(_start_workers(run_dir, small_cache, extra), metadata)
    assert backed_up == 1
    # A worker that reads another folder (no file system shared with the chief) would
    # start afresh beside the chief's restored weights: both stop, saying why, and the
    # chief's directory is left as the kill left it.
    before = sorted(os.listdir(run_dir / "backup"))
    logs = _finish(_start_workers(run_dir, small_cache, extra, tmp_path / "elsewhere"),
                   returncodes=(1, 1))
    for log, epoch in zip(logs, (2, 1)):
        assert (f"the workers would resume at different epochs (this one at epoch {epoch}): "
                "every worker must read the chief's run directory") in log
    assert sorted(os.listdir(run_dir / "backup")) == before
    logs = _finish(_start_workers(run_dir, small_cache, extra))
    epochs = [int(row["epoch"]) for row in history(run_dir)]
    assert epochs == list(range(len(epochs))) and 2 <= len(epochs) < 5
    for log in logs:
        assert f"resuming {run_dir} at epoch {backed_up + 1}" in log
        # Both trained exactly the epochs in history.csv after the resumed one.
        assert f"Epoch {len(epochs)}/5" in log and f"Epoch {len(epochs) + 1}/5" not in log
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["num_replicas_in_sync"] == 2
    assert record["epochs_completed"] == len(epochs)
    assert record["xla"]["train_step"] in ("per_replica", "off")
    assert sorted(os.listdir(run_dir)) == sorted(
        ["history.csv", "model.keras", "run.json", "target_scaler.json", "tensorboard"])


def test_worker_0_is_the_chief_only_in_a_cluster_without_a_chief_task():
    import types

    import tensorflow as tf

    from dream_keras.distribute import is_chief

    def task(cluster, task_type, task_id):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
        return is_chief(types.SimpleNamespace(cluster_resolver=resolver))

    workers = {"worker": ["a:1", "b:1"]}
    assert task(workers, "worker", 0) and not task(workers, "worker", 1)
    with_chief = {"chief": ["c:1"], **workers}
    assert task(with_chief, "chief", 0)
    assert not task(with_chief, "worker", 0) and not task(with_chief, "worker", 1)
