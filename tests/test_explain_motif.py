"""Attributions find a planted motif: a small model trained for seconds of CPU on synthetic
promoters where the GCN4 site (the synthetic generator's consensus) sets the target puts
most of its attribution on the site's 7 positions; random attributions would put 7/110."""
import numpy as np
import pytest

from dream_keras.data import synthetic
from dream_keras.data.sequences import encode, one_hot
from tests.conftest import SMALL_MODEL
from tests.layer_test_utils import compile_mse

pytestmark = pytest.mark.long(seconds=22)  # scheduled by length (tests/conftest.py)

L = 110
GCN4 = next(motif for motif in synthetic.MOTIFS if motif.name == "GCN4")
SITE = GCN4.consensus
RANDOM_SHARE = len(SITE) / L
REQUIRED_SHARE = 0.3  # ~5x what random attributions give (0.064)
# The suite's small model with two convolution widths and a tanh LSTM: the setting whose
# attribution shares were measured (ISM 0.59, integrated gradients 0.53); with one width
# and swish, integrated gradients reached only 0.21 in this budget.
MOTIF_MODEL = dict(SMALL_MODEL, conv_kernel_sizes=(3, 5), lstm_activation="tanh")


def site_rows(codes) -> np.ndarray:
    """Rows holding the site on either strand."""
    return np.union1d(synthetic.pattern_starts(codes, SITE)[0],
                      synthetic.pattern_starts(codes, GCN4.reverse_consensus)[0])


def backgrounds(rows: int, seed: int) -> list:
    """Synthetic 110-bp promoters with no GCN4 site (the generator plants some)."""
    sequences = [s for s in synthetic.generate(rows, seed)[0] if len(s) == L]
    carrying = set(site_rows(encode(sequences, L)).tolist())
    return [s for i, s in enumerate(sequences) if i not in carrying]


def planted(sequences, seed: int, fraction: float = 1.0):
    """(sequences with the site planted in `fraction` of them, start of each site or -1):
    a uniform start inside the random part, between the constant flanks."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(len(synthetic.FLANK_5PRIME),
                          L - len(synthetic.FLANK_3PRIME) - len(SITE) + 1, size=len(sequences))
    starts = np.where(rng.random(len(sequences)) < fraction, starts, -1)
    return [s if start < 0 else s[:start] + SITE + s[start + len(SITE):]
            for s, start in zip(sequences, starts)], starts


def share_on_site(scores: np.ndarray, starts: np.ndarray) -> float:
    """Mean over sequences of the share of |score| on the site's positions."""
    on_site = (np.arange(L)[None, :] >= starts[:, None]) & \
        (np.arange(L)[None, :] < starts[:, None] + len(SITE))
    magnitude = np.abs(np.nan_to_num(scores))
    return float(((magnitude * on_site).sum(1) / magnitude.sum(1)).mean())


@pytest.fixture(scope="module")
def trained():
    import keras

    import dream_keras
    from dream_keras.data.splits import TargetScaler

    sequences, _ = planted(backgrounds(500, seed=0), seed=0, fraction=0.5)
    codes = encode(sequences, L)
    target = np.zeros(len(codes), np.float32)
    target[site_rows(codes)] = 1.0
    keras.utils.set_random_seed(0)
    model = dream_keras.build_model(**MOTIF_MODEL)
    compile_mse(model, keras.optimizers.Adam(3e-3), jit_compile=True)
    scaler = TargetScaler.fit(target)
    model.fit(one_hot(codes), scaler.transform(target), epochs=20, batch_size=32, verbose=0)
    return model, scaler


def test_largest_attributions_fall_on_the_planted_site(trained):
    from dream_keras.explain import explain_sequences

    model, scaler = trained
    sequences, starts = planted(backgrounds(100, seed=1)[:20], seed=2)
    arrays = explain_sequences(model, scaler, sequences,
                               methods=("ism", "integrated_gradients"))
    scores = {"ism": arrays["ism_position"],
              "integrated_gradients": arrays["integrated_gradients"].sum(-1)}
    for method, values in scores.items():
        assert share_on_site(values, starts) >= REQUIRED_SHARE, method
        # The measure tells attributions from noise: the same values, positions shuffled.
        shuffled = np.random.default_rng(3).permuted(np.nan_to_num(values), axis=1)
        assert share_on_site(shuffled, starts) < REQUIRED_SHARE / 2, method
    difference = arrays["prediction"] - arrays["baseline_prediction"]
    total = arrays["integrated_gradients"].sum(axis=(1, 2))
    assert np.all(np.abs(total - difference) <= 0.01 * np.abs(difference) + 1e-3)
