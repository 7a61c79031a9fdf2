"""Teachers label generated batches on the run's target scale: the ridge's batch labels
equal KmerRidge.predict, model teachers are mapped through both runs' scalers, and the
generated stream is a pure function of the step (a resumed run sees the same batches)."""
import shutil

import numpy as np
import pytest

from dream_keras.baseline import DEFAULT_FIT_CHUNK_ROWS, fit_kmer_ridge
from dream_keras.data.design import SequenceGenerator, infer_design
from dream_keras.data.readers import iter_chunks
from dream_keras.data.sequences import decode, encode
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError
from dream_keras.teachers import ModelTeacher, RidgeTeacher, parse_teachers
from tests.saved_run import reference_predictions, save_small_run

pytestmark = pytest.mark.long(seconds=30)  # scheduled by length (tests/conftest.py)


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
    # More rows than one labelling chunk (DEFAULT_FIT_CHUNK_ROWS): the same labels, in order.
    rows = DEFAULT_FIT_CHUNK_ROWS + 300
    copies = rows // len(generated) + 1
    np.testing.assert_array_equal(teacher.labels(np.tile(generated, (copies, 1))[:rows]),
                                  np.tile(teacher.labels(generated), copies)[:rows])


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
    (tmp_path / "link").symlink_to(tmp_path / "run")
    for twice in (f"{tmp_path / 'run'},{tmp_path / 'run' / '.' / 'model.keras'}",
                  f"{tmp_path / 'run'},{tmp_path / 'link'}"):  # one file, named two ways
        with pytest.raises(ConfigurationError, match="twice"):
            parse_teachers(twice)


def test_a_model_teacher_that_trained_on_the_validation_rows_is_named(tmp_path):
    """A teacher trained on this run's file with another split (seed) has seen some of its
    validation rows; a run, or an ensemble whose member, did so is named. Another file,
    or the same split, is not."""
    import json

    from dream_keras.teachers import teachers_seeing_validation_rows

    def run(name, source, split):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps(
            {"data": {"source_sha256": source, "split_sha256": split}}))
        return tmp_path / name

    data = {"source_sha256": "file", "split_sha256": "mine"}
    same, other_split, other_file = (run("same", "file", "mine"), run("seed1", "file", "x"),
                                     run("other", "elsewhere", "x"))
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    (ensemble / "ensemble.json").write_text(json.dumps(
        {"members": [{"run": str(same)}, {"run": str(other_split)}]}))
    paths = [str(d / "model.keras") for d in (same, other_split, other_file, ensemble)]
    assert teachers_seeing_validation_rows(paths, data) == [paths[1], paths[3]]
    assert teachers_seeing_validation_rows(paths, {}) == []  # nothing known of the run


def test_a_damaged_teacher_model_is_one_line_naming_the_file(tmp_path):
    from dream_keras.data.splits import TargetScaler
    from dream_keras.errors import DataFormatError
    from dream_keras.teachers import ModelTeacher

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_text("garbage")  # not a .keras archive
    TargetScaler(11.0, 2.5).save(tmp_path / "run" / "target_scaler.json")
    with pytest.raises(DataFormatError) as refused:
        ModelTeacher([str(tmp_path / "run" / "model.keras")], TargetScaler(11.0, 2.5))
    assert str(refused.value).startswith(f"{tmp_path / 'run' / 'model.keras'}: ")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_model_and_ridge_teachers_average_on_the_runs_scale(tmp_path, real_rows,
                                                            ridge_teacher, jit_compile):
    from dream_keras.dataset import generated_dataset

    first = save_small_run(tmp_path / "a")
    second = save_small_run(tmp_path / "b", seed=1)  # another random initialisation
    run_scaler = TargetScaler(10.0, 2.0)
    models = ModelTeacher([str(first), str(second)], run_scaler, seq_len=110,
                          jit_compile=jit_compile)
    with pytest.raises(ConfigurationError, match="reads sequences of 110 bases, this run 100"):
        ModelTeacher([str(first)], run_scaler, seq_len=100)  # before anything is labelled
    ridge, _ = ridge_teacher
    generator = SequenceGenerator(infer_design(encode(real_rows[0])))

    def generate(step):
        return generator.batch(5, 1, step, 32)

    dataset = generated_dataset(generate, ridge.labels, batch_size=32, seq_len=110,
                                start_step=3, model_teacher=models)
    x, y = next(iter(dataset))
    codes = generate(3)
    strings = [s.lstrip("N") for s in decode(codes)]
    raw = [reference_predictions(path, strings) for path in (first, second)]  # raw scale
    expected = (ridge.labels(codes) + sum(run_scaler.transform(r) for r in raw)) / 3
    assert y.shape == (32, 1)
    assert np.allclose(y.numpy()[:, 0], expected, atol=1e-4)
    # The two models differ (each counts, not one twice).
    assert np.abs(raw[0] - raw[1]).max() > 1e-2
    assert np.array_equal(x.numpy().argmax(-1)[x.numpy().sum(-1) > 0],
                          codes[codes < 4])
    # A stream started at step 3 holds what a stream from step 0 holds at step 3.
    from_start = generated_dataset(generate, ridge.labels, batch_size=32, seq_len=110,
                                   model_teacher=models)
    _, y_again = list(from_start.take(4))[3]
    assert np.array_equal(y_again.numpy(), y.numpy())


def test_an_ensemble_file_teaches_the_mean_of_its_members(tmp_path):
    """An ensemble.py file as --teacher: its members' mean, mapped to the run's scale."""
    from dream_keras.data.sequences import one_hot
    from dream_keras.ensemble import write_ensemble
    from tests.saved_run import random_sequences

    members = [save_small_run(tmp_path / "a"), save_small_run(tmp_path / "b", seed=1)]
    write_ensemble([m.parent for m in members], tmp_path / "ens")
    _, paths = parse_teachers(str(tmp_path / "ens"))  # the run directory names its model
    run_scaler = TargetScaler(10.0, 2.0)
    teacher = ModelTeacher(paths, run_scaler, seq_len=110)
    sequences = random_sequences(16, 3, 110, 110)
    labels = teacher.labels(one_hot(encode(sequences, 110))).numpy()[:, 0]
    raw = [reference_predictions(m, sequences) for m in members]
    assert np.abs(raw[0] - raw[1]).max() > 1e-2  # the members differ
    assert np.allclose(labels, run_scaler.transform((raw[0] + raw[1]) / 2), atol=1e-5)


def test_an_implausible_teacher_label_is_left_out_of_the_mean(tmp_path):
    """A teacher whose labels land far outside this run's training range (its scaler's
    mean 1e6 away, as a model exploding on an input) counts for nothing where another
    teacher is plausible (here: the ridge's labels, or a plausible model); alone, it labels
    at the range's edge, not at 1e6."""
    import tensorflow as tf

    from dream_keras.data.sequences import one_hot
    from dream_keras.plausibility import standardised_plausible_range
    from tests.saved_run import random_sequences

    model = save_small_run(tmp_path / "a")
    far = tmp_path / "far"
    shutil.copytree(model.parent, far)
    TargetScaler(1e6, 2.5).save(far / "target_scaler.json")
    run_scaler = TargetScaler(10.0, 2.0, 0.0, 20.0)
    x = one_hot(encode(random_sequences(8, 3, 110, 110), 110))
    high = standardised_plausible_range(run_scaler)[1]  # (40 - 10) / 2 = 15
    alone = ModelTeacher([str(far / "model.keras")], run_scaler).labels(x).numpy()
    np.testing.assert_allclose(alone, high, rtol=1e-6)
    ridge = tf.constant(np.linspace(-1, 1, 8, dtype=np.float32)[:, None])
    with_ridge = ModelTeacher([str(far / "model.keras")], run_scaler).labels(x, ridge)
    np.testing.assert_allclose(with_ridge.numpy(), ridge.numpy(), rtol=1e-6)
    plausible = ModelTeacher([str(model)], run_scaler).labels(x).numpy()
    assert np.all(np.abs(plausible) < high)
    both = ModelTeacher([str(model), str(far / "model.keras")], run_scaler).labels(x)
    np.testing.assert_allclose(both.numpy(), plausible, rtol=1e-6)


def test_a_run_resumed_with_a_changed_teacher_model_is_refused(tmp_path, small_run,
                                                              small_cache):
    """The run records each teacher model's and scaler's sha256 in its first run.json
    (before anything can kill it), and a resumed run whose teacher files changed stops
    with the directory untouched: it would pre-train on other labels."""
    import json
    import shutil

    import keras

    from dream_keras.data.cache import file_sha256
    from dream_keras.errors import RunDirectoryError
    from dream_keras.training import train
    from dream_keras.training_config import TrainingConfig
    from tests.conftest import SMALL_MODEL

    teacher = tmp_path / "teacher"
    shutil.copytree(small_run.parent, teacher)

    class Killed(Exception):
        pass

    class KillAtFirstBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise Killed

    config = TrainingConfig(
        train_data=str(small_cache), output_dir=str(tmp_path / "run"), epochs=1,
        batch_size=32, passes_per_epoch=1, optimizer="adam", learning_rate=1e-3,
        jit_compile=False, singleton_keep_prob=1.0, validation_fraction=0.2,
        model=SMALL_MODEL, teacher=str(teacher / "model.keras"), pretrain_epochs=1,
        pretrain_steps_per_epoch=2)
    with pytest.raises(Killed):
        train(config, extra_callbacks=[KillAtFirstBatch()])
    started = (tmp_path / "run" / "run.json").read_text()
    (recorded,) = json.loads(started)["teachers"]
    assert recorded["model_sha256"] == file_sha256(teacher / "model.keras")
    assert recorded["scaler_sha256"] == file_sha256(teacher / "target_scaler.json")

    TargetScaler(1.0, 2.0).save(teacher / "target_scaler.json")  # the teacher retrained
    with pytest.raises(RunDirectoryError, match=r"cannot resume: the teacher .*model\.keras "
                                                r"changed \(scaler file sha256"):
        train(config)
    assert (tmp_path / "run" / "run.json").read_text() == started


def test_the_ridge_teachers_summary_gives_the_chosen_candidates_scores():
    """5-bp rows hold no 6-mer: k=6 scores NaN and comes first; the summary must report
    the chosen k's own leave-one-out scores, not the first row of the grid."""
    rng = np.random.default_rng(0)
    codes = encode(["".join(rng.choice(list("ACGT"), 5)) for _ in range(200)], 5)
    teacher = RidgeTeacher.fit(codes, rng.normal(size=200), ks=(6, 3))
    summary = teacher.summary()
    chosen = [row for row in teacher.ridge.cv
              if (row["k"], row["penalty"]) == (summary["k"], summary["penalty"])]
    assert summary["k"] == 3 and np.isfinite(summary["cv_mse"])
    assert summary["cv_mse"] == chosen[0]["cv_mse"] == min(
        row["cv_mse"] for row in teacher.ridge.cv if np.isfinite(row["cv_mse"]))
    assert RidgeTeacher.fit(codes, rng.normal(size=200), ks=(3, 3)).summary()["k"] == 3


def test_the_runs_own_model_is_refused_as_its_teacher(tmp_path):
    from dream_keras.teachers import refuse_own_model_as_teacher

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    for teacher in (f"ridge,{run}", str(run / "model.keras"), f"{tmp_path}/./run"):
        with pytest.raises(ConfigurationError, match="this run's own model.keras"):
            refuse_own_model_as_teacher(teacher, run)
    refuse_own_model_as_teacher(f"ridge,{run}", tmp_path / "another_run")
    refuse_own_model_as_teacher("ridge", run)


_OTHER_DEVICE_SCRIPT = """
import json
import numpy as np
from dream_keras.distribute import split_cpu
split_cpu(2)
import tensorflow as tf
from dream_keras.data.design import SequenceGenerator, infer_design
from dream_keras.data.sequences import encode, one_hot
from dream_keras.data.splits import TargetScaler
from dream_keras.dataset import generated_dataset
from dream_keras.teachers import ModelTeacher
from tests.saved_run import random_sequences
scaler = TargetScaler(10.0, 2.0)
with tf.device("/CPU:1"):  # where a GPU host puts a loaded model's weights: not CPU:0
    elsewhere = ModelTeacher(["{model}"], scaler, seq_len=110, jit_compile=True)
here = ModelTeacher(["{model}"], scaler, seq_len=110, jit_compile=True)
codes = encode(random_sequences(64, 5, 110, 110), 110)
generator = SequenceGenerator(infer_design(codes))
def labels(teacher):
    dataset = generated_dataset(lambda step: generator.batch(1, 1, step, 32), None,
                                batch_size=32, seq_len=110, model_teacher=teacher)
    return next(iter(dataset))[1].numpy()[:, 0]
print("RESULTS " + json.dumps({{"elsewhere_jit": elsewhere.jit_compile,
                                "here_jit": here.jit_compile,
                                "difference": float(np.abs(labels(elsewhere) - labels(here)).max())}}))
"""


def test_a_teacher_whose_weights_are_on_another_device_labels_without_xla(tmp_path):
    """XLA in the input pipeline (CPU:0) cannot read weights held on another device, as a
    GPU host holds a loaded model's: such a teacher runs without XLA, with the same
    labels, instead of failing at the first pre-training batch."""
    from tests.run_helpers import run_code, tagged_json

    model = save_small_run(tmp_path / "teacher")
    found = tagged_json(run_code(_OTHER_DEVICE_SCRIPT.format(model=model)).stdout, "RESULTS ")
    assert found["here_jit"] is True and found["elsewhere_jit"] is False
    assert found["difference"] < 1e-5


def test_a_saved_ridge_teacher_is_read_back_only_for_the_rows_it_was_fitted_on(
        real_rows, ridge_teacher, tmp_path, caplog, monkeypatch):
    """A run resumed in pre-training reads the ridge the run fitted (backup/) instead of
    fitting it again: the same coefficients, labels and summary; a file fitted on other
    rows, or damaged, is refitted, with a warning."""
    from dream_keras import teachers as teachers_module
    from dream_keras.teachers import make_teachers, ridge_fingerprint

    teacher, scaler = ridge_teacher
    codes = encode(real_rows[0])
    targets = scaler.transform(real_rows[1])
    fingerprint = ridge_fingerprint(codes, targets)
    path = tmp_path / "backup" / "teacher_ridge.npz"
    teacher.save(path, fingerprint)
    loaded = RidgeTeacher.load(path, fingerprint)
    assert loaded.ridge.k == teacher.ridge.k and loaded.ridge.penalty == teacher.ridge.penalty
    assert np.array_equal(loaded.ridge.coef, teacher.ridge.coef)
    assert loaded.ridge.intercept == teacher.ridge.intercept
    assert loaded.summary() == teacher.summary()
    assert np.array_equal(loaded.labels(codes[:100]), teacher.labels(codes[:100]))
    # make_teachers reads it instead of fitting (a fit would raise here) ...
    monkeypatch.setattr(teachers_module.RidgeTeacher, "fit",
                        classmethod(lambda *args, **kwargs: pytest.fail("refitted")))
    made = make_teachers("ridge", codes, targets, scaler, saved_ridge=path)
    assert np.array_equal(made.ridge.ridge.coef, teacher.ridge.coef)
    assert made.ridge_fingerprint == fingerprint
    # ... but not for other rows (one target changed), nor from a damaged file.
    other = targets.copy()
    other[5] += 1e-6
    assert ridge_fingerprint(codes, other) != fingerprint
    assert ridge_fingerprint(codes[:, ::-1], targets) != fingerprint
    assert ridge_fingerprint(codes, targets, ks=(3,)) != fingerprint
    caplog.set_level("INFO")
    assert RidgeTeacher.load(path, ridge_fingerprint(codes, other)) is None
    assert "fitted on other rows or settings" in caplog.text
    path.write_bytes(path.read_bytes()[:100])
    assert RidgeTeacher.load(path, fingerprint) is None
    assert "is unreadable" in caplog.text
    # Files that read but do not hold a ridge of this k: refitted too, never a crash.
    for coef, meta in ((teacher.ridge.coef[:-1], None), (teacher.ridge.coef, "[]")):
        teacher.save(path, fingerprint)
        with np.load(path) as saved:
            meta = meta or str(saved["meta"])
        with open(path, "wb") as handle:
            np.savez(handle, coef=coef, meta=np.array(meta))
        caplog.clear()
        assert RidgeTeacher.load(path, fingerprint) is None
        assert "is unreadable" in caplog.text
    assert RidgeTeacher.load(tmp_path / "absent.npz", fingerprint) is None


def test_fitting_the_ridge_teacher_is_announced_and_its_choice_logged(real_rows, caplog):
    """The fit can take minutes on a large file: it is announced, and its choice logged."""
    from dream_keras.teachers import make_teachers

    sequences, values = real_rows
    scaler = TargetScaler.fit(values[:300])
    caplog.set_level("INFO")
    made = make_teachers("ridge", encode(sequences[:300]), scaler.transform(values[:300]),
                         scaler)
    chosen = made.ridge.summary()
    assert "fitting the ridge teacher on the 300 training rows" in caplog.text
    assert (f"ridge teacher: {chosen['k']}-mer counts, penalty {chosen['penalty']:g}, "
            f"leave-one-out r {chosen['cv_pearson']:.3f}") in caplog.text
