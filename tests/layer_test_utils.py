"""One shared check for custom layers (in the spirit of keras-hub's `run_layer_test`).

`run_layer_test` builds the layer, checks output shape and weight counts, round-trips its
config through JSON, takes one SGD step inside a model, and runs it under both mixed
precision policies. Layer tests call it once and add their own numerical checks.
"""
from __future__ import annotations

import json

import keras
import numpy as np

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def compile_mse(model: keras.Model, optimizer, jit_compile: bool = False) -> keras.Model:
    """model.compile with an MSE loss, the optimizer's variables built at once: a first
    train step that has to create them is traced twice (for the full model 15 s instead
    of 5 in graph mode; dream_keras.training builds them up front too)."""
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def set_weights_by_name(layer: keras.layers.Layer, arrays: dict) -> None:
    """Assign `arrays[name]` to the layer's weight of that short name; every weight needed."""
    weights = {w.name: w for w in layer.weights}
    missing = sorted(set(weights) - set(arrays))
    assert not missing, f"no array given for weights {missing}"
    for name, weight in weights.items():
        weight.assign(np.asarray(arrays[name]).reshape(weight.shape))


def assert_config_round_trip(layer: keras.layers.Layer) -> None:
    """get_config -> JSON -> from_config -> get_config gives the same config."""
    config = layer.get_config()
    restored = layer.__class__.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config


def _one_sgd_step_changes_weights(layer_cls, init_kwargs, input_data) -> None:
    inputs = keras.Input(shape=input_data.shape[1:])
    model = keras.Model(inputs, layer_cls(**init_kwargs)(inputs))
    compile_mse(model, keras.optimizers.SGD(0.01))
    before = [w.numpy().copy() for w in model.trainable_weights]
    targets = np.random.default_rng(1).normal(size=model.output_shape[1:])
    targets = np.broadcast_to(targets, (len(input_data),) + targets.shape).astype("float32")
    loss = model.train_on_batch(input_data, targets)
    assert np.isfinite(loss)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert any(changed), "one SGD step changed no trainable weight"


def _check_mixed_precision(layer_cls, init_kwargs, input_data, reference_output) -> None:
    for policy in MIXED_POLICIES:
        layer = layer_cls(**init_kwargs, dtype=policy)
        output = layer(input_data)
        compute_dtype = keras.DTypePolicy(policy).compute_dtype
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, policy
        assert all(w.dtype == "float32" for w in layer.weights), policy
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))))
        assert output.shape == reference_output.shape


def run_layer_test(layer_cls, init_kwargs: dict, input_data: np.ndarray,
                   expected_output_shape: tuple, expected_num_trainable_weights: int,
                   expected_num_non_trainable_weights: int = 0,
                   expected_num_params: int | None = None, run_training_check: bool = True,
                   run_mixed_precision_check: bool = True) -> keras.layers.Layer:
    """Build, call, count, round-trip, train one step and run mixed precision; return the layer."""
    layer = layer_cls(**init_kwargs)
    assert_config_round_trip(layer)
    output = layer(input_data)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert tuple(layer.compute_output_shape(input_data.shape)) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if expected_num_params is not None:
        assert layer.count_params() == expected_num_params
    assert_config_round_trip(layer)
    if run_training_check:
        _one_sgd_step_changes_weights(layer_cls, init_kwargs, input_data)
    if run_mixed_precision_check:
        _check_mixed_precision(layer_cls, init_kwargs, input_data, output)
    return layer
