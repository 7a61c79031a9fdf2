import numpy as np
import pytest

from dream_keras.data.splits import TargetScaler, singleton_keep_mask, split_train_validation


def test_singleton_filter_keeps_non_singletons_and_about_p_of_singletons():
    singleton = np.arange(100_000) % 2 == 0
    keep = singleton_keep_mask(singleton, 0.5, seed=3)
    assert keep[~singleton].all()
    assert abs(keep[singleton].mean() - 0.5) < 0.01
    np.testing.assert_array_equal(keep, singleton_keep_mask(singleton, 0.5, seed=3))
    assert (keep != singleton_keep_mask(singleton, 0.5, seed=4)).any()
    assert singleton_keep_mask(singleton, 1.0, seed=3).all()
    assert (singleton_keep_mask(singleton, 0.0, seed=3) == ~singleton).all()
    with pytest.raises(ValueError):
        singleton_keep_mask(singleton, 1.5, seed=0)


def test_split_is_fixed_disjoint_and_complete():
    rows = np.arange(0, 20_000, 2)
    train, validation = split_train_validation(rows, 0.02, seed=7)
    assert len(validation) == 200 and len(train) == 9800
    assert not np.intersect1d(train, validation).size
    np.testing.assert_array_equal(np.union1d(train, validation), rows)
    again = split_train_validation(rows, 0.02, seed=7)
    np.testing.assert_array_equal(again[1], validation)
    assert (split_train_validation(rows, 0.02, seed=8)[1] != validation).any()


def test_split_zero_validation_and_bad_fraction():
    train, validation = split_train_validation(np.arange(10), 0.0, seed=0)
    assert len(train) == 10 and len(validation) == 0
    with pytest.raises(ValueError):
        split_train_validation(np.arange(10), 1.0, seed=0)


def test_scaler_uses_the_rows_it_is_given(tmp_path):
    values = np.array([1.0, 2.0, 3.0, 4.0])
    scaler = TargetScaler.fit(values)
    assert scaler.mean == 2.5 and scaler.std == pytest.approx(np.std(values))
    z = scaler.transform(values)
    assert z.dtype == np.float32 and abs(z.mean()) < 1e-7 and abs(z.std() - 1) < 1e-6
    np.testing.assert_allclose(scaler.inverse_transform(z), values, atol=1e-6)
    scaler.save(tmp_path / "scaler.json")
    assert TargetScaler.load(tmp_path / "scaler.json") == scaler


def test_scaler_errors(tmp_path):
    with pytest.raises(ValueError, match="constant"):
        TargetScaler.fit([2.0, 2.0, 2.0])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        TargetScaler.load(tmp_path / "bad.json")
