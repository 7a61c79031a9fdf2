"""Custom layers: reference numbers for the attention, parameter counts, initialisers."""
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from dream_keras.layers import (MultiScaleConv, RelativeMultiHeadAttention, TransformerBlock,
                                sonnet_linear_initializer)
from dream_keras.positional import (relative_distance_index, relative_position_features,
                                    relative_shift)
from tests.conftest import TEST_DATA
from tests.layer_test_utils import assert_config_round_trip, run_layer_test, set_weights_by_name

REFERENCE = np.load(TEST_DATA / "enformer_attention.npz")
ATTENTION_CASES = ("case_h1_k96_v96_T110", "case_h1_k96_v96_T110_soft", "case_h2_k8_v48_T16")
WEIGHT_NAMES = ("q_kernel", "k_kernel", "v_kernel", "r_k_kernel", "r_w_bias", "r_r_bias",
                "output_kernel", "output_bias")


def _reference_case(case):
    return {name.split("/", 1)[1]: REFERENCE[name] for name in REFERENCE.files
            if name.startswith(case + "/")}


@pytest.mark.parametrize("seq_len,num_features", [(110, 96), (16, 12)])
def test_positional_features_match_reference(seq_len, num_features):
    expected = REFERENCE[f"pos_features_T{seq_len}_F{num_features}"]
    features = relative_position_features(seq_len, num_features)
    assert features.shape == expected.shape == (2 * seq_len - 1, num_features)
    np.testing.assert_allclose(features, expected, atol=1e-3, rtol=0)
    # Only the gamma family is limited by the reference's float32 lgamma.
    n = num_features // 6
    non_gamma = np.r_[0:2 * n, 3 * n:5 * n]
    np.testing.assert_allclose(features[:, non_gamma], expected[:, non_gamma], atol=1e-6, rtol=0)


def test_positional_features_reject_a_count_not_divisible_by_six():
    with pytest.raises(ValueError, match="multiple of 6"):
        relative_position_features(16, 10)


def test_relative_shift_matches_reference():
    shifted = keras.ops.convert_to_numpy(relative_shift(REFERENCE["relative_shift_input"]))
    np.testing.assert_array_equal(shifted, REFERENCE["relative_shift_output"])


def test_distance_index_picks_what_the_relative_shift_picks():
    # The layer gathers r by distance instead of shifting logits: on the reference's
    # [2, 1, 5, 9] example, taking each query row's columns by the index is the shift.
    logits = REFERENCE["relative_shift_input"]
    index = relative_distance_index(5)
    gathered = np.take_along_axis(logits, np.broadcast_to(index, logits.shape[:2] + (5, 5)),
                                  axis=-1)
    np.testing.assert_array_equal(gathered, REFERENCE["relative_shift_output"])
    assert index[0].tolist() == [4, 5, 6, 7, 8] and index[:, 0].tolist() == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_reproduces_reference_outputs(case):
    arrays = _reference_case(case)
    num_heads, key_size, value_size, num_features = (int(v) for v in arrays["config"])
    layer = RelativeMultiHeadAttention(num_heads, key_size, value_size, num_features)
    layer.build(arrays["inputs"].shape)
    assert {w.name: tuple(w.shape) for w in layer.weights} == {
        name: arrays[name].shape for name in WEIGHT_NAMES}
    set_weights_by_name(layer, arrays)
    outputs = keras.ops.convert_to_numpy(layer(arrays["inputs"]))
    np.testing.assert_allclose(outputs, arrays["outputs"], atol=1e-4, rtol=0)
    # Prediction runs the model under XLA: the compiled layer must match the reference too.
    compiled = tf.function(lambda x: layer(x), jit_compile=True)
    np.testing.assert_allclose(compiled(arrays["inputs"]).numpy(), arrays["outputs"],
                               atol=1e-4, rtol=0)


def test_models_saved_before_the_gathered_position_logits_still_load_and_agree(tmp_path):
    # attention_v1_model.keras was saved by the shift-based layer (commit 37f859f) with
    # random attention weights (two heads); its outputs on fixed inputs were stored with it.
    from dream_keras.model import load_model

    stored = np.load(TEST_DATA / "attention_v1_model_outputs.npz")
    model = load_model(TEST_DATA / "attention_v1_model.keras")
    outputs = keras.ops.convert_to_numpy(model(stored["inputs"], training=False))
    np.testing.assert_allclose(outputs, stored["outputs"], atol=1e-5, rtol=0)
    attention = model.get_layer("transformer_0").attention
    assert [w.name for w in attention.weights] == list(WEIGHT_NAMES)
    # The attention matters to these outputs (so the test would catch a wrong position term).
    attention.output_kernel.assign(np.zeros(attention.output_kernel.shape, np.float32))
    changed = keras.ops.convert_to_numpy(model(stored["inputs"], training=False))
    assert np.abs(changed - stored["outputs"]).max() > 0.05
    # And the current code saves and reloads it unchanged.
    model.save(tmp_path / "resaved.keras")
    reloaded = load_model(tmp_path / "resaved.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(stored["inputs"], training=False)), changed,
        atol=1e-6, rtol=0)


@pytest.mark.parametrize("policy,tolerance", [("mixed_float16", 2e-3), ("mixed_bfloat16", 1e-2)])
def test_attention_under_mixed_precision_stays_near_reference(policy, tolerance):
    """Soft case (outputs up to 0.87): float16 keeps ~3 digits, bfloat16 ~2."""
    arrays = _reference_case("case_h1_k96_v96_T110_soft")
    layer = RelativeMultiHeadAttention(1, 96, 96, dtype=policy)
    layer.build(arrays["inputs"].shape)
    set_weights_by_name(layer, arrays)
    outputs = layer(arrays["inputs"])
    assert keras.backend.standardize_dtype(outputs.dtype) == keras.DTypePolicy(policy).compute_dtype
    outputs = keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32"))
    np.testing.assert_allclose(outputs, arrays["outputs"], atol=tolerance, rtol=0)


def test_attention_without_relative_term_misses_reference():
    """Guard on the tolerance: zeroing the position path must break the 1e-4 match."""
    arrays = dict(_reference_case("case_h1_k96_v96_T110"))
    arrays["r_k_kernel"] = np.zeros_like(arrays["r_k_kernel"])
    arrays["r_r_bias"] = np.zeros_like(arrays["r_r_bias"])
    layer = RelativeMultiHeadAttention(1, 96, 96)
    layer.build(arrays["inputs"].shape)
    set_weights_by_name(layer, arrays)
    outputs = keras.ops.convert_to_numpy(layer(arrays["inputs"]))
    assert np.abs(outputs - arrays["outputs"]).max() > 1e-2


def test_attention_layer_contract():
    inputs = np.random.default_rng(0).normal(size=(2, 12, 12)).astype("float32")
    layer = run_layer_test(
        RelativeMultiHeadAttention,
        dict(num_heads=2, key_size=4, value_size=6, attention_dropout=0.1, positional_dropout=0.1),
        inputs, expected_output_shape=(2, 12, 12), expected_num_trainable_weights=8,
        # q, k: 12 x 8 each; v: 12 x 12; r_k: F=6 x 8; two [1, 2, 1, 4] biases; output 12 x 12 + 12.
        expected_num_params=2 * 96 + 144 + 48 + 2 * 8 + 156)
    assert layer.num_relative_position_features == 6
    # zero_initialize: a fresh layer adds exactly nothing to the residual stream.
    assert np.all(keras.ops.convert_to_numpy(layer(inputs)) == 0.0)


def test_attention_initialisers_follow_enformer():
    layer = RelativeMultiHeadAttention(num_heads=4, key_size=64, value_size=64,
                                       zero_initialize=False)
    layer.build((None, 110, 256))
    weights = {w.name: w.numpy() for w in layer.weights}
    # VarianceScaling(2.0, fan_in): std sqrt(2 / 256) for the [256, 256] projections.
    for name in ("q_kernel", "k_kernel", "v_kernel"):
        assert weights[name].std() == pytest.approx(math.sqrt(2 / 256), rel=0.03)
    # r_k_kernel's fan-in is F = 60; a [1, H, 1, K] bias has fan-in H.
    assert weights["r_k_kernel"].std() == pytest.approx(math.sqrt(2 / 60), rel=0.05)
    assert weights["r_w_bias"].std() == pytest.approx(math.sqrt(2 / 4), rel=0.1)
    assert np.all(weights["output_bias"] == 0)
    default = RelativeMultiHeadAttention()
    default.build((None, 110, 96))
    assert np.all(default.output_kernel.numpy() == 0)


def test_a_seeded_initializer_starts_each_weight_differently_and_reproducibly():
    """Each weight gets seed + its place in the layer: q, k and v (and the convolutions
    of one shape) do not start equal, and the same seed builds the same layer."""
    def attention_kernels():
        layer = RelativeMultiHeadAttention(
            1, 8, 8, kernel_initializer=keras.initializers.VarianceScaling(2.0, seed=1))
        layer.build((None, 10, 8))
        return [layer.q_kernel.numpy(), layer.k_kernel.numpy(), layer.v_kernel.numpy()]

    q, k, v = attention_kernels()
    assert not np.array_equal(q, k) and not np.array_equal(q, v) and not np.array_equal(k, v)
    np.testing.assert_array_equal(attention_kernels()[0], q)
    conv = MultiScaleConv(filters=8, out_filters=4, kernel_sizes=(3, 5),
                          kernel_initializer=keras.initializers.HeNormal(seed=1))
    conv.build((None, 10, 4))
    first, second = (c.kernel.numpy() for c in conv.narrow_convs)
    assert not np.array_equal(first, second)


def test_attention_needs_a_static_sequence_length():
    with pytest.raises(ValueError, match="sequence length"):
        RelativeMultiHeadAttention().build((None, None, 96))


def test_attention_softmax_stays_float32_under_float16():
    """Logits of 1e3 overflow float16's exp; the layer's float32 softmax must not."""
    layer = RelativeMultiHeadAttention(1, 8, 8, zero_initialize=False, dtype="mixed_float16")
    inputs = np.random.default_rng(0).normal(size=(2, 10, 8)).astype("float32") * 30.0
    outputs = keras.ops.convert_to_numpy(keras.ops.cast(layer(inputs), "float32"))
    assert np.all(np.isfinite(outputs))


def test_multi_scale_conv_contract_and_counts():
    inputs = np.eye(4, dtype="float32")[np.random.default_rng(0).integers(0, 4, (3, 110))]
    layer = run_layer_test(
        MultiScaleConv, {}, inputs, expected_output_shape=(3, 110, 96),
        expected_num_trainable_weights=4 * 8, expected_num_non_trainable_weights=4 * 4,
        expected_num_params=148_608)
    non_trainable = sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights)
    assert non_trainable == 2_304
    assert len(layer.losses) == 8  # one L2 penalty per convolution kernel


def test_multi_scale_conv_sums_its_branches():
    """One branch of width 1 with identity-like weights: output = swish(BN(swish(BN(x))))."""
    layer = MultiScaleConv(filters=4, out_filters=4, kernel_sizes=(1, 3), l2_weight=0.0)
    inputs = np.random.default_rng(0).normal(size=(2, 7, 4)).astype("float32")
    layer.build(inputs.shape)
    for conv in layer.narrow_convs:
        conv.kernel.assign(np.eye(4, dtype="float32")[None])
    for index, conv in enumerate(layer.wide_convs):
        kernel = np.zeros(conv.kernel.shape, "float32")
        kernel[conv.kernel.shape[0] // 2] = np.eye(4) * (index + 1)
        conv.kernel.assign(kernel)
    swish = lambda x: x / (1 + np.exp(-x))  # noqa: E731
    bn = 1 / math.sqrt(1 + 1e-3)  # inference BatchNorm with fresh statistics
    expected = sum(swish(bn * swish(bn * scale * inputs)) for scale in (1, 2))
    outputs = keras.ops.convert_to_numpy(layer(inputs, training=False))
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_transformer_block_contract_and_counts():
    inputs = np.random.default_rng(0).normal(size=(2, 110, 96)).astype("float32")
    block = run_layer_test(TransformerBlock, {}, inputs, expected_output_shape=(2, 110, 96),
                           expected_num_trainable_weights=8 + 4 + 4, expected_num_params=83_904)
    parts = (block.attention_norm, block.attention, block.ffn_norm, block.ffn_expand,
             block.ffn_project)
    per_part = {layer.name: layer.count_params() for layer in parts}
    assert per_part == {"attention_norm": 192, "attention": 4 * 9_216 + 2 * 96 + 9_312,
                        "ffn_norm": 192, "ffn_expand": 18_624, "ffn_project": 18_528}


def test_transformer_block_residual_width_is_checked():
    with pytest.raises(ValueError, match="num_heads \\* value_size"):
        TransformerBlock(num_heads=2, value_size=96).build((None, 110, 96))


def test_feed_forward_starts_like_sonnet_linear():
    """Sonnet: N(0, 1/sqrt(fan_in)) cut at 2 stddev (std 0.88/sqrt(fan_in)), zero bias.

    Keras' VarianceScaling(1.0, 'fan_in', 'truncated_normal') would give std 1/sqrt(fan_in).
    """
    block = TransformerBlock(num_heads=2, key_size=32, value_size=128, ffn_multiplier=2)
    block.build((None, 20, 256))
    for dense, fan_in in ((block.ffn_expand, 256), (block.ffn_project, 512)):
        kernel = dense.kernel.numpy()
        assert kernel.std() == pytest.approx(0.8796 / math.sqrt(fan_in), rel=0.02)
        assert np.abs(kernel).max() <= 2 / math.sqrt(fan_in) + 1e-6
        assert np.all(dense.bias.numpy() == 0)
    config = json.loads(json.dumps(keras.initializers.serialize(sonnet_linear_initializer(100))))
    assert config["config"]["stddev"] == pytest.approx(0.1)


def test_nested_configs_round_trip_after_build():
    for layer in (MultiScaleConv(kernel_sizes=(3, 5), activation="relu", l2_weight=0.0),
                  TransformerBlock(num_heads=2, key_size=8, value_size=6, ffn_multiplier=3)):
        layer.build((None, 12, 12 if isinstance(layer, TransformerBlock) else 4))
        assert_config_round_trip(layer)
