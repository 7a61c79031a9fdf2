"""build_model: team MadLab's DREAM 2022 network as one Keras functional model.

one-hot [B, seq_len, 4] -> MultiScaleConv -> transformer blocks -> BiLSTM -> Dense(1).
Every architecture hyper-parameter is a keyword argument whose default is the original's
value, so `build_model()` is the faithful model (319,657 parameters) and the training
flags are generated from this signature (see MODEL_DEFAULTS and MODEL_ARGUMENT_HELP).
"""
from __future__ import annotations

import inspect

import keras

from dream_keras import optimizers  # noqa: F401  (registers TF2RMSprop for compiled loads)
from dream_keras import streaming_metrics  # noqa: F401  (registers PearsonR, likewise)
from dream_keras import ensemble_layers  # noqa: F401  (registers the ensemble files' mean)
from dream_keras import strand_layers  # noqa: F401  (registers the ensemble files' layer)
from dream_keras.constraints import NonPositiveCellFeedback, SpectralNormCap
from dream_keras.layers import MultiScaleConv, TransformerBlock

MODEL_NAME = "dream_madlab"
ONE_HOT_CHANNELS = 4  # A, C, G, T (N is all zeros), see dream_keras.data.sequences


def build_model(
    *,
    seq_len: int = 110,
    conv_kernel_sizes: tuple = (15, 20, 25, 30),
    conv_filters: int = 192,
    conv_out_filters: int = 96,
    conv_activation: str = "swish",
    num_transformer_blocks: int = 2,
    num_heads: int = 1,
    key_size: int = 96,
    value_size: int = 96,
    attention_dropout: float = 0.0,
    positional_dropout: float = 0.0,
    ffn_multiplier: int = 2,
    ffn_activation: str = "swish",
    layer_norm_epsilon: float = 1e-3,
    lstm_units: int = 4,
    lstm_activation: str = "swish",
    lstm_recurrent_norm_cap: float = 0.0,
    lstm_nonpositive_cell_feedback: bool = False,
    l2_weight: float = 1e-3,
    freeze_transformer: bool = False,
    batchnorm_sync: bool = False,
    dtype=None,
) -> keras.Model:
    """The expression model: one-hot [B, seq_len, 4] -> standardised expression [B, 1].

    Arguments are described in MODEL_ARGUMENT_HELP. `dtype` is the dtype policy of every
    layer (e.g. "mixed_bfloat16"; None: Keras' global policy, float32 unless changed), taken
    as an argument so that a run never changes the process-wide policy. The output layer
    computes in float32 under any policy, so mixed-precision training keeps a float32 loss.
    Raises ValueError for inconsistent values (e.g. an attention width that breaks the
    residual), TypeError for an unknown argument.
    """
    conv_kernel_sizes = tuple(int(k) for k in conv_kernel_sizes)
    _check_arguments(seq_len, conv_kernel_sizes, conv_out_filters, num_heads, value_size,
                     num_transformer_blocks, lstm_units, lstm_recurrent_norm_cap)
    _check_dropout_rates(attention_dropout=attention_dropout,
                         positional_dropout=positional_dropout)
    sequence = keras.Input(shape=(seq_len, ONE_HOT_CHANNELS), name="one_hot_sequence")
    x = MultiScaleConv(filters=conv_filters, out_filters=conv_out_filters,
                       kernel_sizes=conv_kernel_sizes, activation=conv_activation,
                       kernel_initializer="he_normal", l2_weight=l2_weight,
                       batchnorm_sync=batchnorm_sync, name="multi_scale_conv",
                       dtype=dtype)(sequence)
    for index in range(num_transformer_blocks):
        x = TransformerBlock(num_heads=num_heads, key_size=key_size, value_size=value_size,
                             attention_dropout=attention_dropout,
                             positional_dropout=positional_dropout,
                             ffn_multiplier=ffn_multiplier, ffn_activation=ffn_activation,
                             layer_norm_epsilon=layer_norm_epsilon,
                             freeze_attention_and_ffn=freeze_transformer,
                             name=f"transformer_{index}", dtype=dtype)(x)
    recurrent_constraint = _recurrent_constraint(lstm_recurrent_norm_cap,
                                                 lstm_nonpositive_cell_feedback)
    bilstm = keras.layers.Bidirectional(
        keras.layers.LSTM(lstm_units, activation=lstm_activation,
                          kernel_initializer="he_normal", dtype=dtype,
                          recurrent_constraint=recurrent_constraint),
        name="bilstm", dtype=dtype)
    x = bilstm(x)
    if lstm_nonpositive_cell_feedback:
        # Keras applies constraints after each update only; project the initial kernels
        # too, so that the bound holds from the first batch (no random draw is consumed).
        # (The cap alone keeps its first batch unprojected, as its measurements ran.)
        for direction in (bilstm.forward_layer, bilstm.backward_layer):
            kernel = direction.cell.recurrent_kernel
            kernel.assign(recurrent_constraint(kernel.value))
    expression = keras.layers.Dense(
        1, kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(l2_weight) if l2_weight else None,
        dtype="float32", name="expression")(x)
    return keras.Model(sequence, expression, name=MODEL_NAME)


def _recurrent_constraint(norm_cap: float, nonpositive_cell_feedback: bool):
    if nonpositive_cell_feedback:
        return NonPositiveCellFeedback(max_norm=norm_cap)
    return SpectralNormCap(norm_cap) if norm_cap else None


def _check_arguments(seq_len, conv_kernel_sizes, conv_out_filters, num_heads, value_size,
                     num_transformer_blocks, lstm_units, lstm_recurrent_norm_cap) -> None:
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if not conv_kernel_sizes or min(conv_kernel_sizes) < 1:
        raise ValueError(f"conv_kernel_sizes must be positive widths, got {conv_kernel_sizes}")
    if num_transformer_blocks < 0:
        raise ValueError(f"num_transformer_blocks must be >= 0, got {num_transformer_blocks}")
    if num_transformer_blocks and num_heads * value_size != conv_out_filters:
        raise ValueError(
            f"num_heads * value_size ({num_heads} * {value_size} = {num_heads * value_size}) "
            f"must equal conv_out_filters ({conv_out_filters}): the attention output is added "
            "back to its input")
    if lstm_units < 1:
        raise ValueError(f"lstm_units must be positive, got {lstm_units}")
    if lstm_recurrent_norm_cap < 0:
        raise ValueError("lstm_recurrent_norm_cap must be 0 (off) or positive, got "
                         f"{lstm_recurrent_norm_cap}")


def _check_dropout_rates(**rates) -> None:
    # A rate of 1 drops everything in training, yet inference uses the whole layer.
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")


# Architecture arguments (each becomes a train.py flag); the dtype policy is not one of
# them: training derives it from --mixed_precision.
MODEL_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(build_model).parameters.items()
    if name != "dtype"
}

MODEL_ARGUMENT_HELP = {
    "seq_len": "Input length in bp; sequences are cut to their last seq_len bases or left-padded with N.",
    "conv_kernel_sizes": "Widths (bp) of the parallel convolution branches.",
    "conv_filters": "Filters of each branch's wide convolution.",
    "conv_out_filters": "Filters of each branch's 1x1 projection: the model width fed to attention.",
    "conv_activation": "Activation after each convolution's BatchNorm.",
    "num_transformer_blocks": "Number of transformer blocks after the convolutions.",
    "num_heads": "Attention heads per transformer block.",
    "key_size": "Query/key size per attention head.",
    "value_size": "Value size per attention head; num_heads * value_size must equal conv_out_filters.",
    "attention_dropout": "Dropout rate on the attention weights during training, in [0, 1).",
    "positional_dropout": "Dropout rate on the relative-position features during training, "
                          "in [0, 1).",
    "ffn_multiplier": "Feed-forward hidden width as a multiple of the model width.",
    "ffn_activation": "Activation between the two feed-forward layers.",
    "layer_norm_epsilon": "Epsilon of the transformer LayerNorms (the notebook's tf.keras LayerNormalization default 1e-3).",
    "lstm_units": "Units of each direction of the bidirectional LSTM.",
    "lstm_activation": "Activation of the LSTM cell (the original used swish).",
    "lstm_recurrent_norm_cap": "Training constraint, not the original's (off by default; "
                               "0.5 in flags/small_data.flags): after each update the LSTM's "
                               "recurrent kernels are scaled down to this largest singular "
                               "value (0: no constraint). Against the swish LSTM's exploding "
                               "state (docs/small_data.md, 'The recipe's LSTM constraints').",
    "lstm_nonpositive_cell_feedback": "Training constraint, not the original's (off by "
                                      "default; on in flags/small_data.flags): the LSTM's "
                                      "recurrent weights into its cell input are kept <= 0 "
                                      "(positive ones set to 0 at the start and after each "
                                      "update), so the swish cell can grow at most linearly "
                                      "along a sequence, never exponentially "
                                      "(docs/small_data.md, 'Stopping the runaway').",
    "l2_weight": "L2 penalty on the convolution and output kernels (0 disables it).",
    "freeze_transformer": "The notebook's bug, for comparison only: attention and feed-forward "
                          "weights frozen at their initialisation (attention adds exactly 0), "
                          "as the original effectively trained.",
    "batchnorm_sync": "BatchNorm statistics over the whole global batch when training on "
                      "several replicas (results independent of the replica count, but the "
                      "train step then runs without XLA). Off: per-replica statistics, as "
                      "the original's 8 TPU cores (128 rows each), with XLA per replica, "
                      "2x faster on 2 replicas (docs/multi_device.md).",
}


def in_float32(model: keras.Model) -> keras.Model:
    """`model` computing in float32: a run trained with --mixed_precision is saved with its
    bfloat16/float16 policy, so as loaded it predicts in that precision, and each scoring
    path (eager, compiled, exported) rounds differently (measured: up to 0.2 standardised
    units apart on a bfloat16 run). Its weights are float32 already: the same architecture
    is rebuilt under float32 policies and given them. A float32 model is returned as is."""
    config = model.get_config()
    float32 = _float32_policies(config)
    if float32 == config:  # nested models (an ensemble's members) included
        return model
    rebuilt = type(model).from_config(float32)  # Sequential too
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _float32_policies(config):
    """`config` with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            name = str((config.get("config") or {}).get("name", ""))
            if name.startswith("mixed_"):
                return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: "float32" if key == "dtype" and str(value).startswith("mixed_")
                else _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def load_model(path, *, compile: bool = False) -> keras.Model:
    """`keras.models.load_model` with this package's layers and optimizer registered
    (importing this module registers them, so after `import dream_keras.model` Keras' own
    load_model works too); compile=False by default: inference needs no optimizer."""
    return keras.models.load_model(path, compile=compile)
