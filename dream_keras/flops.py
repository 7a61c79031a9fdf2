"""Floating-point operations of the expression model, counted layer by layer.

Convention (the usual one for 'model FLOP/s' figures, e.g. MLPerf and the PaLM MFU paper):
  * a multiply-add is 2 FLOPs; only the matrix products are counted (convolutions, dense
    layers, the attention einsums, the LSTM gate products). Normalisations, activations,
    softmax, biases and the residual adds are left out: together they are under 2 % of the
    total here and they run on the vector units, not at matmul speed;
  * both LSTM directions are counted, at every one of the seq_len steps;
  * the relative-position logits count T x T query-key products per head (what the layer
    computes: q against the gathered r of each pair's distance), not the T x (2T-1)
    products of the Transformer-XL shift formulation, whose extra T - 1 columns per query
    are thrown away; counting them would flatter the model's FLOP/s;
  * the relative-position projection r = features @ r_k_kernel ([2T-1, F] x [F, H*K]) is
    computed once per batch, not per sample, so it is reported separately
    (`per_batch_flops`) and left out of the per-sample figure;
  * a training step costs TRAINING_MULTIPLIER = 3 forward passes: the backward pass
    computes two products (gradient with respect to the input and to the weights) for
    every forward product.
The benchmarks divide the resulting model FLOP/s by a measured large-matmul FLOP/s to say
how much of the machine the model uses.
"""
from __future__ import annotations

import keras

from dream_keras.layers import MultiScaleConv, RelativeMultiHeadAttention, TransformerBlock

TRAINING_MULTIPLIER = 3


def _matmul(rows: int, inner: int, columns: int) -> int:
    """FLOPs of [rows, inner] x [inner, columns]."""
    return 2 * rows * inner * columns


def multi_scale_conv_flops(layer: MultiScaleConv, seq_len: int, in_channels: int) -> int:
    """Each branch: a width-k 'same' convolution then a 1x1 projection, at every position."""
    total = 0
    for kernel_size in layer.kernel_sizes:
        total += _matmul(seq_len, kernel_size * in_channels, layer.filters)
        total += _matmul(seq_len, layer.filters, layer.out_filters)
    return total


def attention_flops(layer: RelativeMultiHeadAttention, seq_len: int, channels: int) -> int:
    """q, k, v projections, content and relative logits, weights x values, output projection."""
    heads, key, value = layer.num_heads, layer.key_size, layer.value_size
    projections = (2 * _matmul(seq_len, channels, heads * key)
                   + _matmul(seq_len, channels, heads * value))
    content_logits = heads * _matmul(seq_len, key, seq_len)
    relative_logits = heads * _matmul(seq_len, key, seq_len)  # one distance per (i, j)
    attended = heads * _matmul(seq_len, seq_len, value)
    output = _matmul(seq_len, heads * value, heads * value)
    return projections + content_logits + relative_logits + attended + output


def transformer_block_flops(layer: TransformerBlock, seq_len: int, channels: int) -> int:
    """Attention plus the two feed-forward dense layers (channels -> m*channels -> channels)."""
    hidden = layer.ffn_multiplier * channels
    return (attention_flops(layer.attention, seq_len, channels)
            + _matmul(seq_len, channels, hidden) + _matmul(seq_len, hidden, channels))


def lstm_flops(units: int, seq_len: int, in_features: int) -> int:
    """One direction: the four gates' input and recurrent products at every step."""
    return seq_len * (_matmul(1, in_features, 4 * units) + _matmul(1, units, 4 * units))


def _input_shape(layer) -> tuple:
    return tuple(layer.input.shape)


def layer_flops_per_sample(layer) -> int:
    """Forward FLOPs of one sample through `layer` (0 for layers without matrix products)."""
    if isinstance(layer, MultiScaleConv):
        _, seq_len, channels = _input_shape(layer)
        return multi_scale_conv_flops(layer, seq_len, channels)
    if isinstance(layer, TransformerBlock):
        _, seq_len, channels = _input_shape(layer)
        return transformer_block_flops(layer, seq_len, channels)
    if isinstance(layer, keras.layers.Bidirectional):
        _, seq_len, features = _input_shape(layer)
        return (lstm_flops(layer.forward_layer.units, seq_len, features)
                + lstm_flops(layer.backward_layer.units, seq_len, features))
    if isinstance(layer, keras.layers.LSTM):
        _, seq_len, features = _input_shape(layer)
        return lstm_flops(layer.units, seq_len, features)
    if isinstance(layer, keras.layers.Dense):
        shape = _input_shape(layer)
        positions = 1
        for size in shape[1:-1]:
            positions *= size
        return _matmul(positions, shape[-1], layer.units)
    return 0


def per_batch_flops(model: keras.Model) -> int:
    """FLOPs computed once per batch whatever its size: the relative-position projections."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, TransformerBlock):
            attention = layer.attention
            distances = 2 * _input_shape(layer)[1] - 1
            total += _matmul(distances, attention.num_relative_position_features,
                             attention.num_heads * attention.key_size)
    return total


def forward_flops_per_sample(model: keras.Model) -> int:
    """Forward-pass FLOPs of one sample through `model` (a build_model() functional model)."""
    return sum(layer_flops_per_sample(layer) for layer in model.layers)


def training_flops_per_sample(model: keras.Model) -> int:
    """FLOPs of one sample in a training step: forward + backward = 3 x forward."""
    return TRAINING_MULTIPLIER * forward_flops_per_sample(model)
