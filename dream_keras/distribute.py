"""Choosing the tf.distribute strategy, and splitting the CPU into logical devices."""
from __future__ import annotations

import json
import os

import tensorflow as tf

from dream_keras.training_config import ConfigurationError

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


def split_cpu(num_devices: int) -> None:
    """Expose the CPU as `num_devices` logical devices, so replica code paths (and their
    batch splitting) can be exercised without GPUs. Must run before TF initialises."""
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as error:
        raise ConfigurationError("--cpu_devices must be applied before TensorFlow "
                                 f"initialises its devices ({error})") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """auto: MirroredStrategy over all GPUs when there are 2+, else the default strategy;
    mirrored: over all GPUs, or all logical CPUs when there is no GPU; multi_worker:
    MultiWorkerMirroredStrategy from TF_CONFIG; one_device: the first GPU, else the CPU."""
    if name not in STRATEGIES:
        raise ConfigurationError(f"unknown strategy {name!r}; choose one of "
                                 f"{', '.join(STRATEGIES)}")
    if name == "multi_worker":
        # Before anything lists logical devices: that would start the runtime, and
        # collective ops must be configured before it starts.
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
    if name == "auto" and len(gpus) < 2:
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy(gpus)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    # NCCL all-reduce exists only on GPUs; reduce through one device on CPUs.
    return tf.distribute.MirroredStrategy(
        cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigurationError("--strategy=multi_worker needs the TF_CONFIG environment "
                                 "variable (cluster worker addresses and this task's index)")
    try:
        config = json.loads(text)
        config["cluster"]["worker"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigurationError("TF_CONFIG is not valid JSON with cluster.worker and "
                                 f"task.index ({error})") from None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes the run directory (always true outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0)
