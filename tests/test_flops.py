"""The FLOP counter behind the benchmarks' 'model FLOP/s' figures, against hand counts."""
import pytest

import dream_keras
from dream_keras import flops

# seq_len T=10, one conv branch k=3 (4 -> 4 filters -> 6), one block (H=1, K=2, V=6,
# 6 positional features, FFN 6 -> 12 -> 6), BiLSTM of 2 units, Dense(1).
TINY = dict(seq_len=10, conv_kernel_sizes=(3,), conv_filters=4, conv_out_filters=6,
            num_transformer_blocks=1, num_heads=1, key_size=2, value_size=6, lstm_units=2)

# Every count below is 2 x (multiply-adds), written out from the shapes.
CONV = 2 * 10 * 3 * 4 * 4 + 2 * 10 * 4 * 6                       # 960 + 480
ATTENTION = (2 * (2 * 10 * 6 * 2)    # q and k projections
             + 2 * 10 * 6 * 6        # v projection
             + 2 * 10 * 2 * 10       # content logits  q.k
             + 2 * 10 * 2 * 10       # relative logits q.r, one distance per query-key pair
             + 2 * 10 * 10 * 6       # weights x values
             + 2 * 10 * 6 * 6)       # output projection
FEED_FORWARD = 2 * 10 * 6 * 12 + 2 * 10 * 12 * 6
LSTM_BOTH_DIRECTIONS = 2 * 10 * (2 * 6 * 8 + 2 * 2 * 8)          # gates: 4 x 2 units = 8
OUTPUT = 2 * 4 * 1                                                 # BiLSTM output: 2 directions x 2 units


@pytest.fixture(scope="module")
def tiny_model():
    return dream_keras.build_model(**TINY)


def by_layer(model) -> dict:
    """{layer name: forward FLOPs per sample} of the layers with matrix products."""
    return {layer.name: count for layer in model.layers
            if (count := flops.layer_flops_per_sample(layer))}


def test_forward_flops_of_each_layer_match_hand_counts(tiny_model):
    assert by_layer(tiny_model) == {
        "multi_scale_conv": CONV,
        "transformer_0": ATTENTION + FEED_FORWARD,
        "bilstm": LSTM_BOTH_DIRECTIONS,
        "expression": OUTPUT,
    }
    assert CONV == 1440
    assert ATTENTION + FEED_FORWARD == 6800
    assert LSTM_BOTH_DIRECTIONS == 2560


def test_forward_and_training_totals(tiny_model):
    assert flops.forward_flops_per_sample(tiny_model) == 1440 + 6800 + 2560 + 8
    assert flops.training_flops_per_sample(tiny_model) == 3 * 10808


def test_relative_position_projection_is_counted_per_batch(tiny_model):
    # [2T-1, F] x [F, H*K] = [19, 6] x [6, 2], once per batch, not per sample.
    assert flops.per_batch_flops(tiny_model) == 2 * 19 * 6 * 2


def test_faithful_model_count():
    model = dream_keras.build_model()
    counts = by_layer(model)
    assert counts["multi_scale_conv"] == 2 * 110 * 4 * 192 * (15 + 20 + 25 + 30) \
        + 4 * 2 * 110 * 192 * 96
    assert counts["bilstm"] == 2 * 110 * 2 * (96 * 16 + 4 * 16)
    assert flops.forward_flops_per_sample(model) == 78_510_096
