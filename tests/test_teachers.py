"""Teachers label generated batches on the run's target scale: the ridge's batch labels
equal KmerRidge.predict, model teachers are mapped through both runs' scalers, and the
generated stream is a pure function of the step (a resumed run sees the same batches)."""
import numpy as np
import pytest

from dream_keras.baseline import fit_kmer_ridge
from dream_keras.data.design import SequenceGenerator, infer_design
from dream_keras.data.readers import iter_chunks
from dream_keras.data.sequences import decode, encode
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError
from dream_keras.teachers import ModelTeacher, RidgeTeacher, parse_teachers
from tests.saved_run import reference_predictions, save_small_run


@pytest.fixture(scope="module")
def real_rows(real_train_file):
    sequences, values = [], []
    for chunk in iter_chunks(real_train_file, with_expression=True):
        sequences += chunk.sequences
        values.append(chunk.expression)
    return sequences[:800], np.concatenate(values)[:800]


@pytest.fixture(scope="module")
def ridge_teacher(real_rows):
    sequences, values = real_rows
    scaler = TargetScaler.fit(values)
    return RidgeTeacher.fit(encode(sequences), scaler.transform(values), ks=(3, 4)), scaler


def test_ridge_batch_labels_equal_kmer_ridge_predict(real_rows, ridge_teacher):
    teacher, _ = ridge_teacher
    design = infer_design(encode(real_rows[0]))
    generated = SequenceGenerator(design).batch(0, 1, 0, 256)
    strings = [s.lstrip("N") for s in decode(generated)]
    expected = teacher.ridge.predict(strings)
    assert np.allclose(teacher.labels(generated), expected, rtol=1e-5, atol=1e-5)
    # Also on real rows, some shorter than 110 (N padding counts nothing) or longer.
    codes = encode(real_rows[0][:300])
    assert np.allclose(teacher.labels(codes), teacher.ridge.predict(decode(codes)),
                       rtol=1e-5, atol=1e-5)


def test_ridge_teacher_is_on_the_runs_scale(real_rows, ridge_teacher):
    """Fitted on standardised targets = the raw-scale ridge standardised (equivariance)."""
    teacher, scaler = ridge_teacher
    sequences, values = real_rows
    # The teacher sees what the model sees: each row's last 110 bases (a few are longer).
    sequences = [s.lstrip("N") for s in decode(encode(sequences))]
    raw = fit_kmer_ridge(sequences, values, ks=(teacher.ridge.k,),
                         penalties=(teacher.ridge.penalty,))
    codes = encode(sequences[:200])
    assert np.allclose(teacher.labels(codes), scaler.transform(raw.predict(sequences[:200])),
                       atol=1e-4)


def test_teacher_flag_is_checked(tmp_path):
    assert parse_teachers("ridge") == (True, [])
    with pytest.raises(ConfigurationError, match="neither"):
        parse_teachers(f"ridge,{tmp_path / 'missing.keras'}")
    with pytest.raises(ConfigurationError, match="empty"):
        parse_teachers(" , ")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_bytes(b"")  # only its place is checked here
    with pytest.raises(ConfigurationError, match="target_scaler"):
        parse_teachers(str(tmp_path / "run"))
    (tmp_path / "run" / "target_scaler.json").write_text("{}")
    assert parse_teachers(f"{tmp_path / 'run'},ridge") == (True, [str(tmp_path / "run" /
                                                                      "model.keras")])
    with pytest.raises(ConfigurationError, match="twice"):
        parse_teachers("ridge,ridge")


def test_model_and_ridge_teachers_average_on_the_runs_scale(tmp_path, real_rows,
                                                            ridge_teacher):
    from dream_keras.dataset import generated_dataset

    first = save_small_run(tmp_path / "a")
    second = save_small_run(tmp_path / "b")  # another random initialisation
    run_scaler = TargetScaler(10.0, 2.0)
    models = ModelTeacher([str(first), str(second)], run_scaler)
    ridge, _ = ridge_teacher
    generator = SequenceGenerator(infer_design(encode(real_rows[0])))

    def generate(step):
        return generator.batch(5, 1, step, 32)

    dataset = generated_dataset(generate, ridge.labels, batch_size=32, seq_len=110,
                                start_step=3, model_teacher=models, teacher_count=3)
    x, y = next(iter(dataset))
    codes = generate(3)
    strings = [s.lstrip("N") for s in decode(codes)]
    raw = [reference_predictions(path, strings) for path in (first, second)]  # raw scale
    expected = (ridge.labels(codes) + sum(run_scaler.transform(r) for r in raw)) / 3
    assert y.shape == (32, 1)
    assert np.allclose(y.numpy()[:, 0], expected, atol=1e-4)
    assert np.array_equal(x.numpy().argmax(-1)[x.numpy().sum(-1) > 0],
                          codes[codes < 4])
    # A stream started at step 3 holds what a stream from step 0 holds at step 3.
    from_start = generated_dataset(generate, ridge.labels, batch_size=32, seq_len=110,
                                   model_teacher=models, teacher_count=3)
    _, y_again = list(from_start.take(4))[3]
    assert np.array_equal(y_again.numpy(), y.numpy())
