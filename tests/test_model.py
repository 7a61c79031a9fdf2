"""The assembled model: sizes, trainability of every weight, saving, XLA, precision, fitting."""
import textwrap

import keras
import numpy as np
import pytest

import dream_keras
from dream_keras.metrics import pearson_r
from dream_keras.model import MODEL_ARGUMENT_HELP, MODEL_DEFAULTS, build_model
from tests.conftest import SMALL_MODEL
from tests.layer_test_utils import compile_mse
from tests.run_helpers import run_code

pytestmark = pytest.mark.long(seconds=44)  # scheduled by length (tests/conftest.py)

ATTENTION_WEIGHTS = ("q_kernel", "k_kernel", "v_kernel", "r_k_kernel", "r_w_bias", "r_r_bias")
ATTENTION_OUTPUT = ("output_kernel", "output_bias")


def random_one_hot(rows, seq_len=110, seed=0):
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype="float32")[rng.integers(0, 4, size=(rows, seq_len))]


def activate_attention(model, seed=0):
    """Give the zero-initialised attention outputs random weights so attention matters."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if weight.name == "output_kernel":
            weight.assign(rng.normal(0, 0.1, size=weight.shape).astype("float32"))


def test_parameter_counts_match_the_original():
    model = build_model()
    assert model.name == "dream_madlab"
    assert model.count_params() == 319_657
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2_304
    assert all(w.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")
               for w in model.non_trainable_weights)
    per_part = {layer.name: layer.count_params() for layer in model.layers}
    assert per_part == {"one_hot_sequence": 0, "multi_scale_conv": 148_608,
                        "transformer_0": 83_904, "transformer_1": 83_904, "bilstm": 3_232,
                        "expression": 9}
    assert model.input_shape == (None, 110, 4) and model.output_shape == (None, 1)


def test_defaults_are_the_originals_and_every_argument_has_help():
    # The notebook's architecture, written out (not re-derived from build_model).
    assert MODEL_DEFAULTS == {
        "seq_len": 110, "conv_kernel_sizes": (15, 20, 25, 30), "conv_filters": 192,
        "conv_out_filters": 96, "conv_activation": "swish", "num_transformer_blocks": 2,
        "num_heads": 1, "key_size": 96, "value_size": 96, "attention_dropout": 0.0,
        "positional_dropout": 0.0, "ffn_multiplier": 2, "ffn_activation": "swish",
        "layer_norm_epsilon": 1e-3,  # tf.keras LayerNormalization()'s default
        "lstm_units": 4, "lstm_activation": "swish",
        "lstm_recurrent_norm_cap": 0.0,  # not the original's: off by default
        "lstm_nonpositive_cell_feedback": False,  # likewise
        "l2_weight": 1e-3,
        "freeze_transformer": False, "batchnorm_sync": False}
    assert set(MODEL_ARGUMENT_HELP) == set(MODEL_DEFAULTS)
    with pytest.raises(TypeError):
        build_model(110)  # keyword-only: a positional value cannot land on the wrong argument
    assert dream_keras.build_model is build_model


def test_arguments_change_the_architecture_and_are_validated():
    small = build_model(seq_len=40, conv_kernel_sizes=[5, 9], conv_filters=8,
                        conv_out_filters=12, num_transformer_blocks=1, num_heads=2,
                        key_size=4, value_size=6, lstm_units=3, l2_weight=0.0)
    assert small.input_shape == (None, 40, 4)
    assert [layer.name for layer in small.layers][2:4] == ["transformer_0", "bilstm"]
    assert small(random_one_hot(2, 40)).shape == (2, 1)
    with pytest.raises(TypeError, match="num_layers"):
        build_model(num_layers=3)
    with pytest.raises(ValueError, match="conv_out_filters"):
        build_model(num_heads=2)


@pytest.mark.parametrize("name", ["attention_dropout", "positional_dropout"])
@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, float("nan")])
def test_dropout_rates_outside_0_to_1_are_refused(name, rate):
    """A rate of 1 dropped the whole attention in training, yet inference used it."""
    with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\), got"):
        build_model(**{name: rate})


def _snapshot(model):
    return {w.path: w.numpy().copy() for w in model.trainable_weights}


def _changed(before, model):
    return {w.path for w in model.trainable_weights if not np.array_equal(before[w.path], w.numpy())}


def test_training_reaches_every_weight_including_attention():
    """The original's defect: attention and feed-forward weights never trained. Not here."""
    keras.utils.set_random_seed(0)
    model = build_model()
    compile_mse(model, keras.optimizers.Adam(1e-3))
    x = random_one_hot(32)
    y = np.random.default_rng(1).normal(size=(32, 1)).astype("float32")
    initial = _snapshot(model)
    model.train_on_batch(x, y)
    after_one = _changed(initial, model)
    # The zero output projection blocks every gradient behind it on step one.
    for block in ("transformer_0", "transformer_1"):
        frozen = {f"{block}/attention/{n}" for n in ATTENTION_WEIGHTS}
        frozen |= {f"{block}/attention_norm/gamma", f"{block}/attention_norm/beta"}
        assert frozen.isdisjoint(after_one)
        assert {f"{block}/attention/{n}" for n in ATTENTION_OUTPUT} <= after_one
        assert {f"{block}/ffn_expand/kernel", f"{block}/ffn_project/kernel"} <= after_one
    for _ in range(2):
        model.train_on_batch(x, y)
    assert _changed(initial, model) == set(initial), "weights that 3 steps never moved"


def test_freeze_transformer_reproduces_the_notebooks_effective_network():
    """--freeze_transformer: the original's untrained attention and feed-forward weights.
    Its Keras summary counted 152,617 parameters: ours minus the 167,040 frozen ones."""
    keras.utils.set_random_seed(0)
    model = build_model(freeze_transformer=True)
    assert model.count_params() == 319_657
    frozen = [w for w in model.non_trainable_weights
              if w.path.rsplit("/", 1)[-1] not in ("moving_mean", "moving_variance")]
    assert sum(int(np.prod(w.shape)) for w in frozen) == 167_040
    assert model.count_params() - 167_040 == 152_617
    assert {w.path.split("/")[1] for w in frozen} == {"attention", "ffn_expand", "ffn_project"}
    compile_mse(model, keras.optimizers.Adam(1e-3))
    x = random_one_hot(32)
    y = np.random.default_rng(1).normal(size=(32, 1)).astype("float32")
    initial = {w.path: w.numpy().copy() for w in model.weights}
    for _ in range(3):
        model.train_on_batch(x, y)
    moved = {w.path for w in model.weights if not np.array_equal(initial[w.path], w.numpy())}
    assert not moved & {w.path for w in frozen}
    assert "transformer_0/ffn_norm/gamma" in moved
    assert any(path.startswith("multi_scale_conv/") for path in moved)
    block = model.get_layer("transformer_0")
    block_input = keras.Model(model.input, model.get_layer("multi_scale_conv").output)(x)
    attention_out = block.attention(block.attention_norm(block_input))
    assert np.all(keras.ops.convert_to_numpy(attention_out) == 0.0)


def test_one_step_agrees_with_and_without_xla():
    """The small model: the faithful model's layers and code paths, at a fraction of
    the XLA compile time (this test is about XLA, not about the model's sizes)."""
    keras.utils.set_random_seed(0)
    x = random_one_hot(16)
    y = np.random.default_rng(2).normal(size=(16, 1)).astype("float32")
    graph, xla = build_model(**SMALL_MODEL), build_model(**SMALL_MODEL)
    activate_attention(graph)
    xla.set_weights(graph.get_weights())
    # Adam bounds each step by the learning rate whatever the loss (an untrained swish
    # LSTM can output ~300), so the two runs stay comparable.
    compile_mse(graph, keras.optimizers.Adam(1e-4))
    compile_mse(xla, keras.optimizers.Adam(1e-4), jit_compile=True)
    losses = [(graph.train_on_batch(x, y), xla.train_on_batch(x, y)) for _ in range(3)]
    for graph_loss, xla_loss in losses:
        assert np.isfinite(graph_loss) and xla_loss == pytest.approx(graph_loss, rel=1e-3)
    assert losses[-1][0] < losses[0][0]
    for a, b in zip(graph.trainable_weights, xla.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=3e-4, rtol=0)


def _transformer_features(model, x):
    features = keras.Model(model.input, model.get_layer("transformer_1").output)(x)
    return keras.ops.convert_to_numpy(keras.ops.cast(features, "float32"))


# Tolerances relative to the largest value. The model starts as it trains (attention
# output zero): with random attention outputs, Enformer's sharp initial attention (logits
# ~20) turns float16 rounding into several per cent; test_layers checks the attention
# itself under mixed precision on the reference's soft case instead.
@pytest.mark.parametrize("policy,feature_tolerance,output_tolerance",
                         [("mixed_float16", 0.005, 0.01), ("mixed_bfloat16", 0.02, 0.05)])
def test_mixed_precision_output_is_float32_and_close(policy, feature_tolerance, output_tolerance):
    keras.utils.set_random_seed(0)
    x = random_one_hot(16)
    model = build_model(dtype=policy)  # the policy is an argument: nothing global changes
    assert keras.config.dtype_policy().name == "float32"
    reference_model = build_model()     # built after, in the same process: still float32
    reference = reference_model.predict(x, verbose=0)
    model.set_weights(reference_model.get_weights())
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    for layer in model.layers[1:-1]:
        assert layer.compute_dtype == compute_dtype, layer.name
    assert all(layer.compute_dtype == "float32" for layer in reference_model.layers[1:])
    inner = model.get_layer("transformer_0").attention
    assert inner.compute_dtype == compute_dtype and inner.variable_dtype == "float32"
    output = model(x, training=False)
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    expected_features = _transformer_features(reference_model, x)
    feature_error = np.abs(_transformer_features(model, x) - expected_features).max()
    assert feature_error <= feature_tolerance * np.abs(expected_features).max()
    output = keras.ops.convert_to_numpy(output)
    assert np.abs(output - reference).max() <= output_tolerance * np.abs(reference).max()
    assert pearson_r(output, reference) > 0.999


def test_saved_model_reloads_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model()
    activate_attention(model)
    x = random_one_hot(8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "model.keras")
    # A process that has imported TensorFlow and Keras but nothing of dream_keras (a warm
    # fork, tests/warm_fork.py), as a user's new interpreter is when it loads a model.
    stdout = run_code(textwrap.dedent(f"""
        import numpy as np, keras
        import dream_keras
        x = np.load({str(tmp_path / 'x.npy')!r})
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        model = dream_keras.load_model({str(tmp_path / 'model.keras')!r})
        print(model.count_params(), float(np.abs(model.predict(x, verbose=0) - expected).max()))
        import dream_keras.model  # registers the layers for keras' own load_model
        model = keras.models.load_model({str(tmp_path / 'model.keras')!r})
        print(float(np.abs(model.predict(x, verbose=0) - expected).max()))
    """)).stdout
    count, difference, plain_keras_difference = stdout.split()
    assert int(count) == 319_657
    assert float(difference) == 0.0 and float(plain_keras_difference) == 0.0


def test_overfits_random_labels():
    """Capacity check: 128 random sequences with random labels are memorised (r > 0.8)."""
    keras.utils.set_random_seed(0)
    x = random_one_hot(128, seed=3)
    y = np.random.default_rng(4).normal(size=(128, 1)).astype("float32")
    model = build_model()
    compile_mse(model, keras.optimizers.Adam(1e-3))
    r = float("nan")
    for _ in range(8):  # at most 40 epochs, checked every 5 (r 0.86 after 15 here)
        model.fit(x, y, batch_size=32, epochs=5, verbose=0)
        r = pearson_r(model.predict(x, verbose=0), y)
        if r > 0.8:
            break
    assert r > 0.8
