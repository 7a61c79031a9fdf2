"""The model's custom Keras 3 layers: multi-scale convolution, relative attention, transformer.

Every layer takes all its hyper-parameters in `__init__`, creates its weights and sub-layers
in `build()` (so `keras.models.load_model` can rebuild them before loading weights), computes
with `keras.ops`, and is registered under the package name 'dream_keras'. Sub-layers inherit
the parent's dtype policy, so `mixed_float16` / `mixed_bfloat16` reach every matmul.
"""
from __future__ import annotations

import itertools
import math

import keras
from keras import ops

from dream_keras.positional import (COMPONENTS_PER_BASIS, relative_distance_index,
                                    relative_position_features)

PACKAGE = "dream_keras"
# Sonnet's truncated normal draws from N(0, s) cut at 2s, so its standard deviation is
# 0.8796 s. Keras' VarianceScaling divides s by this factor to undo the cut; Sonnet's
# `Linear` default does not, so VarianceScaling(1.0, 'fan_in') would start 14 % too wide.
TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978


def fresh_initializer(initializer, index: int = 0):
    """A new instance of `initializer`, so that two weights never share one unseeded object;
    a seeded one gets seed + `index` (the weight's place in its layer), so that weights of
    one shape do not all start equal (q = k = v)."""
    initializer = keras.initializers.get(initializer)
    config = initializer.get_config()
    if isinstance(config.get("seed"), int):
        config["seed"] += index
    return initializer.__class__.from_config(config)


def sonnet_linear_initializer(fan_in: int) -> keras.initializers.Initializer:
    """Sonnet `Linear`'s default kernel init: truncated normal, pre-cut stddev 1/sqrt(fan_in)."""
    return keras.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(fan_in))


def enformer_variance_scaling() -> keras.initializers.Initializer:
    """Enformer's attention init: VarianceScaling(2.0), fan-in, truncated normal."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="truncated_normal")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiScaleConv(keras.layers.Layer):
    """Parallel convolution branches of different widths, summed: [B, T, 4] -> [B, T, out].

    Each branch is Conv1D(filters, k, 'same') -> BatchNorm -> activation -> Conv1D(out, 1)
    -> BatchNorm -> activation; kernels carry an L2 penalty. Widths 15..30 bp let the
    branches see motifs and motif pairs at several scales before attention mixes them.
    `batchnorm_sync`: under a tf.distribute strategy, batch statistics over the whole
    global batch (all replicas) instead of each replica's share.
    """

    def __init__(self, filters=192, out_filters=96, kernel_sizes=(15, 20, 25, 30),
                 activation="swish", kernel_initializer="he_normal", l2_weight=1e-3,
                 batchnorm_sync=False, **kwargs):
        super().__init__(**kwargs)
        if not kernel_sizes:
            raise ValueError("kernel_sizes must name at least one convolution width")
        self.filters = int(filters)
        self.out_filters = int(out_filters)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.l2_weight = float(l2_weight)
        self.batchnorm_sync = bool(batchnorm_sync)

    def _conv(self, filters, kernel_size, name):
        return keras.layers.Conv1D(
            filters, kernel_size, padding="same", name=name, dtype=self.dtype_policy,
            kernel_initializer=fresh_initializer(self.kernel_initializer, next(self._draws)),
            kernel_regularizer=keras.regularizers.L2(self.l2_weight) if self.l2_weight else None)

    def _norm(self, name):
        return keras.layers.BatchNormalization(name=name, dtype=self.dtype_policy,
                                               synchronized=self.batchnorm_sync)

    def build(self, input_shape):
        wide_shape = tuple(input_shape[:-1]) + (self.filters,)
        self._draws = itertools.count()  # each conv's place, for seeded initializers
        self.wide_convs, self.wide_norms, self.narrow_convs, self.narrow_norms = [], [], [], []
        for k in self.kernel_sizes:
            wide_conv, wide_norm = self._conv(self.filters, k, f"conv{k}"), self._norm(f"conv{k}_norm")
            narrow_conv = self._conv(self.out_filters, 1, f"conv{k}_project")
            narrow_norm = self._norm(f"conv{k}_project_norm")
            wide_conv.build(input_shape)
            wide_norm.build(wide_shape)
            narrow_conv.build(wide_shape)
            narrow_norm.build(tuple(input_shape[:-1]) + (self.out_filters,))
            self.wide_convs.append(wide_conv)
            self.wide_norms.append(wide_norm)
            self.narrow_convs.append(narrow_conv)
            self.narrow_norms.append(narrow_norm)

    def call(self, inputs, training=None):
        branches = []
        for wide_conv, wide_norm, narrow_conv, narrow_norm in zip(
                self.wide_convs, self.wide_norms, self.narrow_convs, self.narrow_norms):
            x = self.activation(wide_norm(wide_conv(inputs), training=training))
            branches.append(self.activation(narrow_norm(narrow_conv(x), training=training)))
        return ops.sum(ops.stack(branches, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_filters,)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "out_filters": self.out_filters,
            "kernel_sizes": list(self.kernel_sizes),
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "l2_weight": self.l2_weight,
            "batchnorm_sync": self.batchnorm_sync,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class RelativeMultiHeadAttention(keras.layers.Layer):
    """Enformer's multi-head self-attention with relative positions: [B, T, C] -> [B, T, H*V].

    Logits are content (q + r_w_bias)·k plus position (q + r_r_bias)·r, r being the
    projected relative-position features of every distance (Transformer-XL). The output
    projection starts at zero (`zero_initialize`) so a fresh block is the identity map.
    Weight names and shapes follow the reference cases in tests/data/ (see its README).
    """

    def __init__(self, num_heads=1, key_size=96, value_size=96, num_relative_position_features=None,
                 attention_dropout=0.0, positional_dropout=0.0, scale_queries=True,
                 zero_initialize=True, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_size = int(key_size)
        self.value_size = int(value_size)
        if num_relative_position_features is None:
            # Enformer's default: as many as fit in the value size per head, multiple of 6.
            num_relative_position_features = (value_size // COMPONENTS_PER_BASIS) * COMPONENTS_PER_BASIS
        self.num_relative_position_features = int(num_relative_position_features)
        self.attention_dropout = float(attention_dropout)
        self.positional_dropout = float(positional_dropout)
        self.scale_queries = bool(scale_queries)
        self.zero_initialize = bool(zero_initialize)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or enformer_variance_scaling())
        self.attention_dropout_layer = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.positional_dropout_layer = keras.layers.Dropout(self.positional_dropout, dtype=self.dtype_policy)

    def _weight(self, name, shape, initializer):
        return self.add_weight(name=name, shape=shape, initializer=initializer, trainable=True)

    def build(self, input_shape):
        seq_len, channels = input_shape[-2], input_shape[-1]
        if seq_len is None or channels is None:
            raise ValueError(
                "RelativeMultiHeadAttention needs the sequence length and channels at build "
                f"time (its positional features depend on them), got input shape {input_shape}")
        heads_k, heads_v = self.num_heads * self.key_size, self.num_heads * self.value_size
        draws = itertools.count()
        init = lambda: fresh_initializer(self.kernel_initializer, next(draws))  # noqa: E731
        self.q_kernel = self._weight("q_kernel", (channels, heads_k), init())
        self.k_kernel = self._weight("k_kernel", (channels, heads_k), init())
        self.v_kernel = self._weight("v_kernel", (channels, heads_v), init())
        self.r_k_kernel = self._weight("r_k_kernel", (self.num_relative_position_features, heads_k), init())
        bias_shape = (1, self.num_heads, 1, self.key_size)
        self.r_w_bias = self._weight("r_w_bias", bias_shape, init())
        self.r_r_bias = self._weight("r_r_bias", bias_shape, init())
        self.output_kernel = self._weight(
            "output_kernel", (heads_v, heads_v), "zeros" if self.zero_initialize else init())
        self.output_bias = self._weight("output_bias", (heads_v,), "zeros")
        # A constant, not a weight: it is a function of (T, F) alone and must not be counted.
        self.positional_features = relative_position_features(
            int(seq_len), self.num_relative_position_features)
        self.distance_index = relative_distance_index(int(seq_len))  # [T, T], also a constant

    def _split_heads(self, x, size):
        """[B, T, H*size] -> [B, H, T, size]; head h owns columns h*size .. (h+1)*size - 1."""
        x = ops.reshape(x, (-1, x.shape[1], self.num_heads, size))
        return ops.transpose(x, (0, 2, 1, 3))

    def _relative_logits(self, queries, r):
        """Position logits [B, H, T, T]: queries [B, H, T, K] (r_r_bias added) against r
        [2T-1, H, K], the projection for each distance; entry (i, j) uses distance j - i.

        r is the same for every sequence, so it is gathered once per batch into a [T, T, H, K]
        query-by-key table and contracted with the queries directly: the same products as
        Transformer-XL's [B, H, T, 2T-1] logits followed by the relative shift, without the
        T-1 unused distances per query or moving that tensor through pad/reshape/slice
        (~20 % of the attention's time on CPU; benchmarks/step_breakdown_bench.py).
        einsum, not a batched matmul against a broadcast r: the gradient of a batched matmul
        whose batch dimension broadcasts segfaults with oneDNN on CPU in graph mode.
        """
        r_pairs = ops.take(r, self.distance_index, axis=0)  # [T, T, H, K]
        return ops.einsum("bhik,ijhk->bhij", queries, r_pairs)

    def call(self, inputs, training=None):
        q = self._split_heads(ops.matmul(inputs, self.q_kernel), self.key_size)
        k = self._split_heads(ops.matmul(inputs, self.k_kernel), self.key_size)
        v = self._split_heads(ops.matmul(inputs, self.v_kernel), self.value_size)
        if self.scale_queries:
            q = q * ops.cast(self.key_size ** -0.5, q.dtype)
        content_logits = ops.einsum("bhik,bhjk->bhij", q + self.r_w_bias, k)

        features = ops.cast(self.positional_features, self.compute_dtype)
        features = self.positional_dropout_layer(features, training=training)
        r = ops.reshape(ops.matmul(features, self.r_k_kernel),
                        (-1, self.num_heads, self.key_size))  # [2T-1, H, K]
        relative_logits = self._relative_logits(q + self.r_r_bias, r)

        # Softmax in float32: float16 logits of a sharp attention map would overflow in exp.
        logits = ops.cast(content_logits + relative_logits, "float32")
        weights = ops.cast(ops.softmax(logits, axis=-1), self.compute_dtype)
        weights = self.attention_dropout_layer(weights, training=training)
        attended = ops.transpose(ops.einsum("bhij,bhjv->bhiv", weights, v), (0, 2, 1, 3))
        attended = ops.reshape(attended, (-1, inputs.shape[1], self.num_heads * self.value_size))
        return ops.matmul(attended, self.output_kernel) + self.output_bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_heads * self.value_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "num_relative_position_features": self.num_relative_position_features,
            "attention_dropout": self.attention_dropout,
            "positional_dropout": self.positional_dropout,
            "scale_queries": self.scale_queries,
            "zero_initialize": self.zero_initialize,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerBlock(keras.layers.Layer):
    """Enformer's pre-norm transformer block: [B, T, C] -> [B, T, C].

    x = x + MHA(LayerNorm(x)); x = x + Dense(C)(activation(Dense(m*C)(LayerNorm(x)))).
    The dense layers start like Sonnet's `Linear` (see `sonnet_linear_initializer`); the
    LayerNorms are `keras.layers.LayerNormalization` at its default epsilon 1e-3, as the
    notebook's `tf.keras.layers.LayerNormalization()`.

    `freeze_attention_and_ffn=True` reproduces the original's defect for comparison only:
    its attention and feed-forward weights were never trained, so (with the zero-initialised
    output projection) the attention adds exactly 0 and the feed-forward layers stay at their
    random initialisation; the LayerNorms (Keras layers there too) remain trainable.
    """

    def __init__(self, num_heads=1, key_size=96, value_size=96, num_relative_position_features=None,
                 attention_dropout=0.0, positional_dropout=0.0, ffn_multiplier=2,
                 ffn_activation="swish", layer_norm_epsilon=1e-3, zero_initialize=True,
                 freeze_attention_and_ffn=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_size = int(key_size)
        self.value_size = int(value_size)
        self.num_relative_position_features = num_relative_position_features
        self.attention_dropout = float(attention_dropout)
        self.positional_dropout = float(positional_dropout)
        self.ffn_multiplier = int(ffn_multiplier)
        self.ffn_activation = keras.activations.get(ffn_activation)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.zero_initialize = bool(zero_initialize)
        self.freeze_attention_and_ffn = bool(freeze_attention_and_ffn)
        if self.freeze_attention_and_ffn and not self.zero_initialize:
            raise ValueError("freeze_attention_and_ffn reproduces the original, whose frozen "
                             "attention output was exactly 0: it needs zero_initialize=True")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels != self.num_heads * self.value_size:
            raise ValueError(
                f"TransformerBlock: the residual needs num_heads * value_size "
                f"({self.num_heads} * {self.value_size}) to equal the input channels ({channels})")
        hidden = self.ffn_multiplier * channels
        policy = self.dtype_policy
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", dtype=policy)
        self.attention = RelativeMultiHeadAttention(
            num_heads=self.num_heads, key_size=self.key_size, value_size=self.value_size,
            num_relative_position_features=self.num_relative_position_features,
            attention_dropout=self.attention_dropout, positional_dropout=self.positional_dropout,
            zero_initialize=self.zero_initialize, name="attention", dtype=policy)
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="ffn_norm", dtype=policy)
        self.ffn_expand = keras.layers.Dense(
            hidden, kernel_initializer=sonnet_linear_initializer(channels), name="ffn_expand",
            dtype=policy)
        self.ffn_project = keras.layers.Dense(
            channels, kernel_initializer=sonnet_linear_initializer(hidden), name="ffn_project",
            dtype=policy)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_expand.build(input_shape)
        self.ffn_project.build(tuple(input_shape[:-1]) + (hidden,))
        if self.freeze_attention_and_ffn:
            # The LayerNorms stay trainable: they were Keras layers in the notebook (counted
            # in its 152,617 parameters); the attention's one gets a zero gradient anyway.
            for layer in (self.attention, self.ffn_expand, self.ffn_project):
                layer.trainable = False

    def call(self, inputs, training=None):
        x = inputs + self.attention(self.attention_norm(inputs), training=training)
        hidden = self.ffn_activation(self.ffn_expand(self.ffn_norm(x)))
        return x + self.ffn_project(hidden)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "num_relative_position_features": self.num_relative_position_features,
            "attention_dropout": self.attention_dropout,
            "positional_dropout": self.positional_dropout,
            "ffn_multiplier": self.ffn_multiplier,
            "ffn_activation": keras.activations.serialize(self.ffn_activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "zero_initialize": self.zero_initialize,
            "freeze_attention_and_ffn": self.freeze_attention_and_ffn,
        }

