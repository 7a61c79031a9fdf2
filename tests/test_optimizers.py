"""RMSprop as the original's TF 2.x computed it, against a hand-computed update."""
import keras
import numpy as np
import pytest

from dream_keras.optimizers import TF2RMSprop, learning_rate_schedule, make_optimizer


def _steps(optimizer, start, gradients):
    variable = keras.Variable(np.array(start, dtype="float32"))
    for gradient in gradients:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(
            np.array(gradient, dtype="float32")), variable)])
    return variable.numpy()


def _by_hand(start, gradients, lr, rho=0.9, eps=1e-7):
    value, velocity = np.array(start, np.float64), np.zeros(len(start))
    for gradient in gradients:
        gradient = np.array(gradient, np.float64)
        velocity = rho * velocity + (1 - rho) * gradient ** 2
        value = value - lr * gradient / (np.sqrt(velocity) + eps)  # epsilon AFTER the root
    return value


def test_update_matches_tf2_formula_for_large_and_tiny_gradients():
    gradients = [[0.5, 1e-6, -2e-5], [0.25, 3e-6, -1e-5], [-0.1, 2e-6, 4e-5]]
    start = [1.0, 1.0, 1.0]
    result = _steps(TF2RMSprop(learning_rate=1e-2), start, gradients)
    np.testing.assert_allclose(result, _by_hand(start, gradients, 1e-2), rtol=0, atol=2e-6)


@pytest.mark.parametrize("centered", [False, True])
def test_with_momentum_matches_tf2s_fused_kernels(centered):
    """TF 2.x ran RMSprop with momentum through ResourceApply(Centered)RMSProp, which TF
    still ships: the same steps must come out (epsilon inside the root there)."""
    import tensorflow as tf

    gradients = [[0.5, 1e-6, -2e-5, 3.0], [0.25, 3e-6, -1e-5, -1.0], [-0.1, 2e-6, 4e-5, 2.0]]
    start = [1.0, 1.0, 1.0, 1.0]
    ours = _steps(TF2RMSprop(learning_rate=1e-2, momentum=0.9, centered=centered), start,
                  gradients)
    var, ms, mom, mg = (tf.Variable(np.array(v, np.float32)) for v in
                        (start, [0.0] * 4, [0.0] * 4, [0.0] * 4))
    options = dict(lr=1e-2, rho=0.9, momentum=0.9, epsilon=1e-7)
    for gradient in gradients:
        gradient = np.array(gradient, np.float32)
        if centered:
            tf.raw_ops.ResourceApplyCenteredRMSProp(var=var.handle, mg=mg.handle,
                                                    ms=ms.handle, mom=mom.handle,
                                                    grad=gradient, **options)
        else:
            tf.raw_ops.ResourceApplyRMSProp(var=var.handle, ms=ms.handle, mom=mom.handle,
                                            grad=gradient, **options)
    np.testing.assert_allclose(ours, var.numpy(), rtol=0, atol=1e-6)


def test_differs_from_keras3_where_the_gradient_is_tiny():
    """Keras 3 adds epsilon inside the root, which caps tiny-gradient steps."""
    tiny = [[1e-6]]
    faithful = -_steps(TF2RMSprop(learning_rate=1e-3), [0.0], tiny)[0]
    keras3 = -_steps(keras.optimizers.RMSprop(learning_rate=1e-3), [0.0], tiny)[0]
    # TF 2.x: 1e-3 * 1e-6 / (sqrt(1e-13) + 1e-7) = 2.4e-3; Keras 3: / sqrt(1e-13 + 1e-7) = 3.2e-6.
    assert faithful == pytest.approx(1e-3 * 1e-6 / (np.sqrt(0.1 * 1e-12) + 1e-7), rel=1e-3)
    assert keras3 == pytest.approx(1e-3 * 1e-6 / np.sqrt(0.1 * 1e-12 + 1e-7), rel=1e-3)
    assert faithful > 100 * keras3


def test_make_optimizer_names_and_options():
    optimizer = make_optimizer("rmsprop_tf2", 1e-4, clipnorm=1.0)
    assert isinstance(optimizer, TF2RMSprop) and optimizer.clipnorm == 1.0
    assert optimizer.rho == pytest.approx(0.9) and optimizer.epsilon == pytest.approx(1e-7)
    assert type(make_optimizer("rmsprop", 1e-4)) is keras.optimizers.RMSprop
    assert isinstance(make_optimizer("adam", 1e-4, loss_scaling=True),
                      keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", 1e-4)


def test_serialises_with_the_model_config():
    config = keras.optimizers.serialize(TF2RMSprop(learning_rate=3e-4))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, TF2RMSprop)
    assert float(restored.learning_rate) == pytest.approx(3e-4)


def _rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_constant_schedule_without_warmup_is_the_plain_rate():
    assert learning_rate_schedule(3e-4) == 3e-4
    assert learning_rate_schedule(3e-4, "constant", total_steps=100) == 3e-4


def test_warmup_then_constant():
    schedule = learning_rate_schedule(1e-3, "constant", total_steps=100, warmup_steps=10)
    np.testing.assert_allclose(_rates(schedule, [0, 5, 10, 50, 100, 10_000]),
                               [0, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3], rtol=1e-6, atol=1e-12)


def test_warmup_then_cosine_to_zero_at_the_last_step():
    schedule = learning_rate_schedule(1e-3, "cosine", total_steps=110, warmup_steps=10)
    steps = np.array([0, 5, 10, 35, 60, 85, 110, 200])
    decay = 0.5 * (1 + np.cos(np.pi * np.clip(steps - 10, 0, 100) / 100)) * 1e-3
    expected = np.where(steps < 10, steps / 10 * 1e-3, decay)
    np.testing.assert_allclose(_rates(schedule, steps), expected, rtol=1e-5, atol=1e-9)


def test_schedule_errors_and_round_trip_inside_an_optimizer():
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        learning_rate_schedule(1e-3, "step")
    with pytest.raises(ValueError, match="more steps"):
        learning_rate_schedule(1e-3, "cosine", total_steps=10, warmup_steps=10)
    schedule = learning_rate_schedule(1e-3, "cosine", total_steps=50, warmup_steps=5)
    restored = keras.optimizers.deserialize(
        keras.optimizers.serialize(make_optimizer("rmsprop", schedule, clipnorm=1.0)))
    for step in (0, 3, 30):  # the optimizer's rate follows its step counter
        restored.iterations.assign(step)
        assert float(restored.learning_rate) == pytest.approx(float(schedule(step)), rel=1e-6)
