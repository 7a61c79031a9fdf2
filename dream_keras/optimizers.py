"""Optimizers of a run, including RMSprop exactly as the original (TF 2.x / Keras 2) computed it.

Keras 3's RMSprop divides by sqrt(v + epsilon); TF 2.x's (the notebook's) divided by
sqrt(v) + epsilon. With epsilon 1e-7 the two agree for large gradients, but Keras 3's caps
the step at lr * g / sqrt(1e-7) = lr * g * 3162 where v is tiny, while TF 2.x's allows up
to lr * g / 1e-7. `TF2RMSprop` is the faithful update (`--optimizer=rmsprop_tf2`).
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from dream_keras.layers import PACKAGE

OPTIMIZERS = ("rmsprop_tf2", "rmsprop", "adam")
LR_SCHEDULES = ("constant", "cosine")


@keras.saving.register_keras_serializable(package=PACKAGE)
class TF2RMSprop(keras.optimizers.Optimizer):
    """RMSprop as TF 2.x's (optimizer_v2) computed it:

        v   <- rho * v + (1 - rho) * g^2            (centered: minus the mean gradient^2)
        var <- var - lr * g / (sqrt(v) + epsilon)   (epsilon AFTER the root)

    With momentum TF 2.x called its fused kernels (ResourceApplyRMSProp, and the centered
    one), which put epsilon inside the root: mom <- momentum * mom + lr * g / sqrt(v +
    epsilon); var <- var - mom. So does this class (the original used no momentum).

    Built on the public optimizer API only (`build`, `add_variable_from_reference`,
    `update_step`); its arguments, config and variables (velocity, then momentum, then
    average_gradient, one per model variable) are keras.optimizers.RMSprop's, so a saved
    model's optimizer state loads either way.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, name="rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered
        # Created inside the strategy's scope (as Keras requires of optimizers): under
        # MirroredStrategy update_step receives each replica's copy of a variable.
        self.strategy = tf.distribute.get_strategy()

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, "velocity")
                           for v in variables]
        self.momentums = ([self.add_variable_from_reference(v, "momentum")
                           for v in variables] if self.momentum > 0 else [])
        self.average_gradients = ([self.add_variable_from_reference(v, "average_gradient")
                                   for v in variables] if self.centered else [])
        # update_step is handed the backend variable, or under a tf.distribute strategy
        # one replica's copy of it: index every local copy.
        self.slot_index = {}
        for index, variable in enumerate(variables):
            value = variable.value if isinstance(variable, keras.Variable) else variable
            for local in self.strategy.experimental_local_results(value):
                self.slot_index[local.ref()] = index

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        value = variable.value if isinstance(variable, keras.Variable) else variable
        index = self.slot_index[value.ref()]
        velocity = self.velocities[index]
        rho = self.rho
        self.assign(velocity, rho * velocity + (1 - rho) * ops.square(gradient))
        mean_square = velocity
        if self.centered:
            average_grad = self.average_gradients[index]
            self.assign(average_grad, rho * average_grad + (1 - rho) * gradient)
            mean_square = velocity - ops.square(average_grad)
        if self.momentum > 0:  # TF 2.x's fused kernels: epsilon inside the root here
            momentum = self.momentums[index]
            self.assign(momentum, self.momentum * momentum
                        + lr * gradient / ops.sqrt(mean_square + self.epsilon))
            self.assign_sub(variable, momentum)
        else:
            self.assign_sub(variable, lr * gradient / (ops.sqrt(mean_square) + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


def learning_rate_schedule(learning_rate: float, schedule: str = "constant",
                           total_steps: int = 0, warmup_steps: int = 0):
    """The learning rate of step t as Keras takes it (a float, or a serialisable schedule).

    constant: `learning_rate` throughout, after a linear warm-up from 0 over
    `warmup_steps` when > 0. cosine: linear warm-up from 0 to `learning_rate` over
    `warmup_steps`, then cosine decay to 0 at `total_steps` (keras.optimizers.schedules
    .CosineDecay). Schedules read the optimizer's step counter, which a resumed run
    restores, so a resumed run continues the same curve.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of "
                         f"{', '.join(LR_SCHEDULES)}")
    if warmup_steps < 0 or total_steps < 0:
        raise ValueError(f"steps must be >= 0, got total {total_steps}, warm-up {warmup_steps}")
    if schedule == "constant" and not warmup_steps:
        return learning_rate
    if schedule == "cosine" and total_steps <= warmup_steps:
        raise ValueError(f"a cosine schedule needs more steps ({total_steps}) than its "
                         f"warm-up ({warmup_steps})")
    # A constant after warm-up is a cosine decaying to alpha 1 x its target, i.e. to the
    # target itself: CosineDecay then returns warmup_target at every later step.
    decay_steps = total_steps - warmup_steps if schedule == "cosine" else 1
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=decay_steps,
        alpha=0.0 if schedule == "cosine" else 1.0,
        warmup_target=learning_rate, warmup_steps=warmup_steps)


def make_optimizer(name: str, learning_rate, clipnorm: float = 0.0,
                   loss_scaling: bool = False,
                   ema_momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """The named optimizer (see OPTIMIZERS) at `learning_rate` (a float or a schedule from
    `learning_rate_schedule`); `loss_scaling` wraps it for float16 training;
    `ema_momentum` > 0 keeps Keras' moving average of the weights (dream_keras.averaging)."""
    options = {"learning_rate": learning_rate}
    if clipnorm > 0:
        options["clipnorm"] = clipnorm
    if ema_momentum > 0:
        options.update(use_ema=True, ema_momentum=ema_momentum)
    classes = {"rmsprop_tf2": TF2RMSprop, "rmsprop": keras.optimizers.RMSprop,
               "adam": keras.optimizers.Adam}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    optimizer = classes[name](**options)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer
