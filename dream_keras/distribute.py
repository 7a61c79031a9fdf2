"""Choosing the tf.distribute strategy, splitting the CPU into logical devices, and the
trainer whose train / test / predict steps compile each replica with XLA
(docs/multi_device.md)."""
from __future__ import annotations

import json
import os

import keras
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
    # TensorFlow's rule: worker 0 is the chief only in a cluster without a chief task.
    has_chief_task = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief_task)


# ---------------------------------------------------------------------------------------
# Replicated steps with XLA inside each replica.
#
# Keras compiles its whole train step, `strategy.run` included, as one XLA program, and
# XLA cannot span replicas ("Trying to access resource .../replica_1 ... from device
# CPU:0"). Here each replica's forward and backward pass is one XLA program of its own
# (a pure function of the weight VALUES, so it touches no mirrored variable), while the
# cross-replica gradient sum, the optimizer update and the BatchNorm statistics update
# stay outside XLA in the replica context, where tf.distribute does them.

# Between replicas' dropout seeds (distribute.ReplicaTrainer._replica_seeds): a large odd
# number, so no replica's seed is another's.
_REPLICA_SEED_STRIDE = 1_000_003
XLA_PER_REPLICA = "per_replica"
XLA_WHOLE_STEP = "whole_step"
XLA_OFF = "off"


def replicated(strategy: tf.distribute.Strategy) -> bool:
    """True for the strategies whose runs fit through a `ReplicaTrainer`."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy,
                                 tf.distribute.MultiWorkerMirroredStrategy))


def xla_mode(strategy, jit_compile: bool, synchronized_batchnorm: bool) -> tuple[str, str]:
    """(mode, reason): how a run with these settings uses XLA."""
    if not jit_compile:
        return XLA_OFF, "--nojit_compile"
    if not replicated(strategy):
        return XLA_WHOLE_STEP, "one replica: Keras compiles the whole train step"
    # Under a replicated strategy Keras all-reduces synchronised BatchNorm statistics
    # even across a single replica (one GPU with --strategy=mirrored): off there too.
    if synchronized_batchnorm:
        return XLA_OFF, ("synchronised BatchNorm all-reduces its batch statistics inside "
                         "the forward pass, which a per-replica XLA program cannot do; "
                         "without --batchnorm_sync each replica compiles with XLA")
    return XLA_PER_REPLICA, "each replica's forward and backward pass is one XLA program"


def _mean_squared_error(y, y_pred, weight):
    """(weighted mean of (y - y_pred)^2 over the rows, sum of weights) in float32."""
    squared = tf.reshape(tf.square(tf.cast(y, tf.float32) - tf.cast(y_pred, tf.float32)),
                         [-1])
    weight = tf.reshape(tf.cast(weight, tf.float32), [-1])
    total = tf.reduce_sum(weight)
    return tf.math.divide_no_nan(tf.reduce_sum(squared * weight), total), total


def _unpack(data):
    x, y, *rest = data
    weight = rest[0] if rest else tf.ones(tf.shape(y)[:1], tf.float32)
    return x, y, weight


def same_on_every_worker(strategy, value: int) -> bool:
    """Whether every replica of `strategy` holds `value` (a collective: call it on all
    workers at the same point). Sums of 1, v and v^2 over replicas: n * sum(v^2) equals
    sum(v)^2 exactly when all v are equal (float64 is exact for such small integers)."""
    local = tf.constant([1.0, float(value), float(value) ** 2], tf.float64)
    total = strategy.run(
        lambda: tf.distribute.get_replica_context().all_reduce("sum", local))
    count, total, squares = strategy.experimental_local_results(total)[0].numpy()
    return count * squares == total ** 2


class ReplicaTrainer(keras.Model):
    """Fits a plain functional `network` under a replicated strategy, through Keras' own
    `fit` / `evaluate` / `predict` with `train_step` / `test_step` / `predict_step`
    overridden (the documented way to customise them).

    The loss is the MSE of the replica's rows plus the weight penalties, divided by the
    replica count before the gradient, so the summed gradient equals one device's on the
    whole global batch; it is summed (and clipped) before the optimizer sees it
    (`global_gradients`). BatchNorm moving statistics are averaged over replicas after each
    step, so every replica (and worker) holds the same model. `loss` is the mean over
    real rows (a weighted evaluation batch's padding, weight 0, left out), as `metrics`.

    The trainer owns no weights and is never saved itself: `save` writes `network`, which
    `training.compiled_model` compiles with the trainer's optimizer, so model.keras is the
    same plain functional model that a one-device run saves.
    """

    def __init__(self, network: keras.Model, metrics, *, jit_gradients: bool,
                 jit_forward: bool):
        super().__init__(name=f"{network.name}_trainer")
        self.network = network
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.row_metrics = list(metrics)
        # Without XLA they stay plain Python inside the replica function: a nested
        # tf.function cannot hold synchronised BatchNorm's all-reduce (merge_call).
        # Never autograph-converted: they have no tensor-dependent Python control flow
        # (and under the multi-worker strategy autograph once resolved `forward` to the
        # converted `gradients`).
        plain = tf.autograph.experimental.do_not_convert
        self.replica_gradients = (
            tf.function(self.gradients, jit_compile=True, autograph=False)
            if jit_gradients else plain(self.gradients))
        self.replica_forward = (tf.function(self.forward, jit_compile=True, autograph=False)
                                if jit_forward else plain(self.forward))
        self.built = True  # the network is built; the trainer adds no weights

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.row_metrics]

    def save(self, filepath, *args, **kwargs):
        """Saves the plain network (see the class docstring), never the trainer."""
        return self.network.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """The network's weights and the optimizer's state, as a one-device run writes
        them: an epoch backup then resumes on any number of devices."""
        return self.network.save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """Loads what `save_weights` writes; a backup of an earlier release, written from
        the trainer (another layout), is still read."""
        try:
            return self.network.load_weights(filepath, *args, **kwargs)
        except ValueError:
            return super().load_weights(filepath, *args, **kwargs)

    def state_mapping(self, trainable, non_trainable):
        network = self.network
        return (list(zip(network.trainable_variables, trainable))
                + list(zip(network.non_trainable_variables, non_trainable)))

    def gradients(self, trainable, non_trainable, x, y, weight, loss_scale):
        """(loss, gradients, new non-trainable values, predictions): a pure function of
        the weight values, so that XLA can compile it inside one replica."""
        network = self.network
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        non_trainable = self._replica_seeds(non_trainable, 1)
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            with keras.StatelessScope(
                    state_mapping=self.state_mapping(trainable, non_trainable)) as scope:
                y_pred = network(x, training=True)
                penalty = tf.add_n([tf.cast(p, tf.float32) for p in network.losses]
                                   or [0.0])
            mse, _ = _mean_squared_error(y, y_pred, weight)
            loss = mse + penalty
            scaled = loss * loss_scale / replicas
        gradients = tape.gradient(scaled, trainable)
        new_state = [scope.get_current_value(v) for v in network.non_trainable_variables]
        return loss, gradients, self._replica_seeds(new_state, -1), y_pred

    def _replica_seeds(self, values, sign: int) -> list:
        """Each replica draws its own random numbers (dropout masks), as the rows of one
        batch do on one device: the seed-generator states (the integer non-trainable
        variables, [seed, counter]) carry the replica's offset on the seed while its
        forward pass runs (sign 1) and lose it after (sign -1), so the stored state stays
        the same on every replica. Replica 0 draws what one device draws."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        shifted = []
        for variable, value in zip(self.network.non_trainable_variables, values):
            if variable.dtype.startswith(("int", "uint")):
                offset = tf.one_hot(0, tf.size(value), dtype=value.dtype) * tf.cast(
                    replica * _REPLICA_SEED_STRIDE, value.dtype)
                value = value + offset if sign > 0 else value - offset
            shifted.append(value)
        return shifted

    def forward(self, trainable, non_trainable, x):
        """(inference-mode predictions, weight penalty) from the weight values."""
        network = self.network
        with keras.StatelessScope(state_mapping=self.state_mapping(trainable,
                                                                   non_trainable)):
            y_pred = network(x, training=False)
            penalty = tf.add_n([tf.cast(p, tf.float32) for p in network.losses] or [0.0])
        return y_pred, penalty

    def weight_values(self):
        network = self.network
        return ([tf.convert_to_tensor(v) for v in network.trainable_variables],
                [tf.convert_to_tensor(v) for v in network.non_trainable_variables])

    def train_step(self, data):
        network = self.network
        x, y, weight = _unpack(data)
        trainable, non_trainable = self.weight_values()
        loss_scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        loss, gradients, new_state, y_pred = self.replica_gradients(
            trainable, non_trainable, x, y, weight, loss_scale)
        # BatchNorm moving statistics: the replicas' mean, in one batched all-reduce (the
        # integer state, the seed generators', is the same on every replica: see
        # _replica_seeds).
        floats = [i for i, v in enumerate(network.non_trainable_variables)
                  if v.dtype in ("float16", "bfloat16", "float32", "float64")]
        if floats:
            averaged = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.MEAN, [new_state[i] for i in floats])
            for i, value in zip(floats, averaged):
                new_state[i] = value
        for variable, value in zip(network.non_trainable_variables, new_state):
            variable.assign(value)
        self.optimizer.apply_gradients(zip(self.global_gradients(gradients, loss_scale),
                                           network.trainable_variables))
        return self.update_metrics(loss, y, y_pred, weight)

    def global_gradients(self, gradients, loss_scale):
        """The summed gradient (clipped to the optimizer's clipnorm as one device clips
        it), divided by the replica count: what each replica hands `apply_gradients`.

        Keras' optimizer clips each replica's share BEFORE its cross-replica sum, and the
        float16 loss-scale optimizer skips a step by replica 0's gradients alone: with
        each replica's own gradient, R replicas clipped R parts (another size and
        direction than one device's clip of the whole) and an overflow on replica 1
        reached the weights as NaN. Summed here, every replica holds the global
        gradient: the optimizer's own sum of the R equal shares restores it, its clip is
        then a no-op (norm <= clipnorm / R), and its finiteness check sees every replica.
        """
        context = tf.distribute.get_replica_context()
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, list(gradients))
        clipnorm = getattr(self.optimizer, "inner_optimizer", self.optimizer).clipnorm
        if clipnorm:  # on the loss-scaled gradient: the scale is undone after the clip
            total = [tf.clip_by_norm(g, clipnorm * loss_scale) for g in total]
        return [g / context.num_replicas_in_sync for g in total]

    def test_step(self, data):
        x, y, weight = _unpack(data)
        y_pred, penalty = self.replica_forward(*self.weight_values(), x)
        mse, _ = _mean_squared_error(y, y_pred, weight)
        return self.update_metrics(mse + penalty, y, y_pred, weight)

    def predict_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        return self.replica_forward(*self.weight_values(), x)[0]

    def update_metrics(self, loss, y, y_pred, weight):
        # The loss is a Mean weighted by real rows: val_loss is the mean over real rows.
        self.loss_tracker.update_state(loss, sample_weight=tf.reduce_sum(weight))
        for metric in self.row_metrics:
            metric.update_state(y, y_pred, sample_weight=weight)
        return {metric.name: metric.result() for metric in self.metrics}
