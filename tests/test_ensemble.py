"""One-file ensembles: the in-model reverse strand, the mean of the members (to 1e-6, on
the training scale, members with different scalers), a load in a new process that had not
imported the package, predict.py / evaluate.py / --export, refusals, and the
dream-ensemble command killed and resumed."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import warm_fork
from tests.conftest import REPO
from tests.layer_test_utils import assert_config_round_trip
from tests.conftest import SMALL_MODEL
from tests.run_helpers import (SMALL_RUN, history, kill_after_backup, run_code, run_script,
                               synthetic_cache, tagged_json)
from tests.saved_run import random_sequences

pytestmark = pytest.mark.long(seconds=72)  # scheduled by length (tests/conftest.py)

SCALERS = [(11.0, 2.5), (11.3, 2.2), (10.8, 2.9)]  # members of one file, different seeds
SOURCE = "ab" * 32


def save_member(directory, seed, scaler, source=SOURCE, diverged=()):
    """A run directory: a small model initialised with `seed`, its scaler, a run.json
    (whose diverged_epochs are `diverged`)."""
    import keras

    import dream_keras
    from dream_keras.data.splits import TargetScaler

    directory.mkdir(parents=True)
    keras.utils.set_random_seed(seed)
    dream_keras.build_model(**SMALL_MODEL).save(directory / "model.keras")
    TargetScaler(*scaler).save(directory / "target_scaler.json")
    if source is not None:
        (directory / "run.json").write_text(json.dumps(
            {"seed": seed, "status": "completed", "diverged_epochs": list(diverged),
             "rolled_back_epochs": list(diverged)[:1],
             "data": {"source_sha256": source, "train_data": f"train{source[:2]}.txt"}}))
    return directory


def training_scale(model_path, sequences, *, both_strands=False) -> np.ndarray:
    """A run's predictions on its training scale, computed here from the model and the
    package's encoding only (the reverse strand as the reverse-complemented string)."""
    import keras

    from dream_keras.data.sequences import encode, one_hot

    model = keras.models.load_model(model_path / "model.keras", compile=False)
    scaler = json.loads((model_path / "target_scaler.json").read_text())
    reverse = [s.translate(str.maketrans("ACGT", "TGCA"))[::-1] for s in sequences]
    strands = [sequences] + ([reverse] if both_strands else [])
    outputs = [keras.ops.convert_to_numpy(model(one_hot(encode(s, 110)), training=False))
               for s in strands]
    return np.mean(outputs, axis=0).reshape(-1).astype(np.float64) * scaler["std"] + \
        scaler["mean"]


def _fresh_process_outputs(model_path, sequences) -> np.ndarray:
    """The file's outputs in a new process that had not imported dream_keras (a warm fork,
    tests/warm_fork.py): keras.models.load_model after `import dream_keras.model`, as a
    user would load it."""
    script = (f"import json, keras, numpy as np, dream_keras.model\n"
              f"from dream_keras.data.sequences import encode, one_hot\n"
              f"model = keras.models.load_model({str(model_path)!r})\n"
              f"out = model(one_hot(encode({sequences!r}, 110)), training=False)\n"
              f"print('RESULT', json.dumps([type(model).__name__, "
              f"np.asarray(out).reshape(-1).tolist()]))\n")
    kind, outputs = tagged_json(run_code(script).stdout, "RESULT ")
    assert kind == "Functional"
    return np.array(outputs)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    return [save_member(folder / f"seed_{k}", k, scaler, diverged=[2, 3] if k == 1 else [])
            for k, scaler in enumerate(SCALERS)]


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(40, seed=5, min_len=70, max_len=110)  # none longer than 110


def test_reverse_strand_layer_is_the_packages_encoding_of_the_other_strand():
    from dream_keras.data.sequences import (encode, one_hot,
                                            reverse_complement_right_aligned)
    from dream_keras.strand_layers import ReverseComplementWindow

    sequences = random_sequences(30, seed=2, min_len=5, max_len=110)
    sequences[3] = "ACGNNTTGA" + sequences[3]  # an N inside a sequence stays a base
    sequences[4] = "N" * 20  # all padding
    codes = encode(sequences, 110)
    layer_output = np.asarray(ReverseComplementWindow()(one_hot(codes)))
    np.testing.assert_array_equal(layer_output,
                                  one_hot(reverse_complement_right_aligned(codes)))
    clean = [i for i, s in enumerate(sequences) if "N" not in s]
    np.testing.assert_array_equal(layer_output[clean], one_hot(encode(
        [sequences[i].translate(str.maketrans("ACGT", "TGCA"))[::-1] for i in clean], 110)))
    assert_config_round_trip(ReverseComplementWindow(name="strand"))


@pytest.mark.parametrize("both_strands", [False, True])
def test_ensemble_is_the_mean_of_its_members_and_loads_in_a_fresh_process(
        tmp_path, members, sequences, both_strands):
    from dream_keras.ensemble import write_ensemble
    from dream_keras.inference import load_run, predict_sequences

    record = write_ensemble(members, tmp_path / "ens", both_strands=both_strands)
    assert record["members"][1]["seed"] == 1 and record["both_strands"] == both_strands
    expected = np.mean([training_scale(m, sequences, both_strands=both_strands)
                        for m in members], axis=0)
    got = training_scale(tmp_path / "ens", sequences)  # the file alone holds the strands
    scale = SCALERS[0][1]
    assert np.abs(got - expected).max() <= 1e-6 * scale
    # The members differ, so a wrong combination could not pass.
    assert np.abs(training_scale(members[0], sequences) - expected).max() > 1e-2
    model, scaler = load_run(tmp_path / "ens")
    if not both_strands:  # predict.py below scores a two-strand file by the same path
        np.testing.assert_allclose(predict_sequences(model, scaler, sequences,
                                                     jit_compile=False), expected, atol=1e-5)
    else:  # once: the two-strand file holds every layer the other one does
        fresh = _fresh_process_outputs(tmp_path / "ens" / "model.keras", sequences)
        assert np.abs(fresh * scaler.std + scaler.mean - expected).max() <= 1e-6 * scale


def test_predict_evaluate_and_export_use_the_ensemble(tmp_path, members, sequences,
                                                      real_train_file, dream_dir):
    import tensorflow as tf

    result = run_script("ensemble.py", f"--members={members[0]},{members[1]}",
                        "--output_dir=ens", "--ensemble_strands", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ensemble of 2 members" in result.stdout
    # A member whose training diverged is named (its run.json lists the epochs).
    assert result.stdout.rstrip().endswith("training DIVERGED in member(s) of seed 1 (their "
                                           "run.json: diverged_epochs)")
    members_record = json.loads((tmp_path / "ens" / "ensemble.json").read_text())["members"]
    assert [m["diverged_epochs"] for m in members_record] == [[], [2, 3]]
    assert [m["rolled_back_epochs"] for m in members_record] == [[], [2]]
    expected = np.mean([training_scale(m, sequences, both_strands=True)
                        for m in members[:2]], axis=0)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(sequences)))
    result = run_script("predict.py", "--model=ens", f"--input={fasta}", "--output=out.tsv",
                        "--export=served", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "out.tsv").read_text().splitlines()[1:]
    np.testing.assert_allclose([float(l.split("\t")[-1]) for l in lines], expected, atol=1e-5)
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(tf.constant(sequences))["expression"].numpy(),
                               expected, atol=1e-4)
    # The file averages the strands inside: a second average outside (not harmless for a
    # sequence ending in N), and the file as a member of another ensemble, are refused.
    from dream_keras.cli.runner import flag_spelling
    from dream_keras.ensemble import write_ensemble
    from dream_keras.errors import ConfigurationError
    from dream_keras.explain.core import explain_sequences
    from dream_keras.inference import load_run, predict_sequences

    model, scaler = load_run(tmp_path / "ens")
    for refused in (predict_sequences, explain_sequences):
        with pytest.raises(ConfigurationError, match="already averages both strands") as error:
            refused(model, scaler, sequences[:3], reverse_complement_average=True)
    assert "leave out --reverse_complement_average," in flag_spelling(str(error.value))
    # evaluate refuses it before fitting the baseline (minutes on a large training file).
    from dream_keras import evaluation

    labelled = tmp_path / "labelled.txt"
    labelled.write_text("".join(f"{s}\t{i}.5\n" for i, s in enumerate(sequences[:4])))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "_baseline", lambda *a, **k: pytest.fail("fitted first"))
        for evaluate, data in ((evaluation.evaluate_file, {"data_path": labelled}),
                               (evaluation.evaluate_dream, {"dream_dir": dream_dir})):
            # Named by its file, as the user gave it (the model's own name says nothing).
            with pytest.raises(ConfigurationError, match=r"^\S*ens.model\.keras: the model "
                                                         "already averages both strands"):
                evaluate(model_path=tmp_path / "ens", reverse_complement_average=True,
                         baseline_train_data=real_train_file, **data,
                         output_dir=tmp_path / "evaluated")
    # explain.py runs as a process: dream_keras.cli.explain defines absl flags that would
    # clash with train.py's in this test process.
    result = run_script("explain.py", "--model=ens", f"--input={fasta}", "--output_dir=expl",
                        "--reverse_complement_average", "--methods=gradient_x_input",
                        cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "expl").exists()
    assert re.search(r"error: \S*ens.model\.keras: the model already averages both strands",
                     result.stderr), result.stderr[-2000:]
    from dream_keras.cli.commands import run_prediction

    with pytest.raises(ConfigurationError, match=r"^\S*ens.model\.keras: the model"):
        run_prediction(tmp_path / "ens", input_path=labelled, reverse_complement_average=True,
                       output_path=tmp_path / "predicted.tsv")
    from dream_keras.export import serving_function

    with pytest.raises(ConfigurationError, match="already averages both strands"):
        serving_function(model, scaler, reverse_complement_average=True)  # --export
    with pytest.raises(ConfigurationError, match=r"ens: an ensemble, not a run; list its "
                                                 r"members"):
        write_ensemble([tmp_path / "ens", members[0]], tmp_path / "nested")
    copied = tmp_path / "copied"  # the file away from its ensemble.json says what it is
    copied.mkdir()
    for name in ("model.keras", "target_scaler.json"):
        shutil.copy(tmp_path / "ens" / name, copied / name)
    with pytest.raises(ConfigurationError, match=r"copied.model\.keras: an ensemble file, "
                                                 r"not a run"):
        write_ensemble([copied, members[0]], tmp_path / "nested")
    damaged = tmp_path / "damaged"
    shutil.copytree(members[0], damaged)
    (damaged / "run.json").write_text("{bad")  # read as "no record" before
    with pytest.raises(ConfigurationError, match=r"damaged.run\.json: not readable as a run "
                                                 r"record"):
        write_ensemble([damaged, members[1]], tmp_path / "with_damaged")
    data = tmp_path / "labelled.txt"
    data.write_text("\n".join(real_train_file.read_text().splitlines()[:100]) + "\n")
    result = run_script("evaluate.py", "--model=ens/model.keras", f"--data={data}",
                        "--output_dir=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 100


def test_members_of_different_data_or_scales_are_refused(tmp_path, members):
    from dream_keras.ensemble import write_ensemble
    from dream_keras.errors import ConfigurationError, OutputExistsError

    other = save_member(tmp_path / "other", 7, SCALERS[0], source="cd" * 32)
    with pytest.raises(ConfigurationError, match="different data"):
        write_ensemble([members[0], other], tmp_path / "a")
    bare = [save_member(tmp_path / f"bare_{k}", k, SCALERS[k], source=None) for k in (0, 1)]
    with pytest.raises(ConfigurationError, match="target scaler"):
        write_ensemble(bare, tmp_path / "b")
    same_scaler = save_member(tmp_path / "bare_same", 3, SCALERS[0], source=None)
    write_ensemble([bare[0], same_scaler], tmp_path / "c")  # equal scalers: accepted
    with pytest.raises(OutputExistsError):
        write_ensemble([bare[0], same_scaler], tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "model.keras").exists()


def _edit_record(run, **changes):
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, **changes}))
    return run


def test_members_listed_twice_unfinished_or_of_other_teachers_are_refused(tmp_path, members):
    from dream_keras.ensemble import write_ensemble
    from dream_keras.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="the same run as"):
        write_ensemble([members[0], members[0] / "model.keras"], tmp_path / "a")
    killed = _edit_record(save_member(tmp_path / "killed", 5, SCALERS[0]), status="running")
    with pytest.raises(ConfigurationError, match="status 'running' \\(killed or still"):
        write_ensemble([members[0], killed], tmp_path / "b")

    def taught_by(name, model_sha):
        return _edit_record(save_member(tmp_path / name, 6, SCALERS[0]), teachers=[
            {"teacher": "ridge"},
            {"teacher": "model", "path": "/t/model.keras", "model_sha256": model_sha,
             "scaler_sha256": "s"}])

    with pytest.raises(ConfigurationError, match="labels of different teacher models"):
        write_ensemble([taught_by("t1", "one"), taught_by("t2", "two")], tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_failed_rewrite_leaves_no_model_beside_an_old_scaler(tmp_path, members,
                                                              monkeypatch):
    """The old model.keras goes before the new scaler is written, the new model last."""
    from dream_keras.data.splits import TargetScaler
    from dream_keras.ensemble import write_ensemble
    from dream_keras.file_errors import FileAccessError

    write_ensemble(members[:2], tmp_path / "ens")

    def disk_full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TargetScaler, "save", disk_full)
    with pytest.raises(FileAccessError) as refused:  # one line naming the file
        write_ensemble(members[2:], tmp_path / "ens", overwrite=True)
    assert str(refused.value).startswith(f"{tmp_path / 'ens' / 'target_scaler.json'}: ")
    assert not (tmp_path / "ens" / "model.keras").exists()
    # ... and no temporary model is left behind.
    assert sorted(os.listdir(tmp_path / "ens")) == ["ensemble.json", "target_scaler.json"]


def test_a_symlinked_model_file_is_written_through(tmp_path, members):
    from dream_keras.ensemble import write_ensemble

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "ens.keras").write_text("the old ensemble")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "model.keras").symlink_to(tmp_path / "store" / "ens.keras")
    write_ensemble(members[:2], tmp_path / "ens", overwrite=True)
    assert (tmp_path / "ens" / "model.keras").is_symlink()
    assert (tmp_path / "store" / "ens.keras").read_bytes()[:2] == b"PK"  # a .keras zip


def test_the_ensemble_command_refuses_seeds_out_of_range_and_changed_teachers(
        tmp_path, small_cache, small_run):
    """Checked before any member trains: seeds past 2**32 - 1, and a finished member
    whose teacher files changed since (it would be averaged with members taught anew)."""
    from dream_keras.ensemble import ENSEMBLE_FILE, member_dir, train_ensemble
    from dream_keras.errors import ConfigurationError, RunDirectoryError
    from dream_keras.training_config import TrainingConfig

    config = TrainingConfig(train_data=str(small_cache), output_dir=str(tmp_path / "ens"),
                            teacher=str(small_run), pretrain_epochs=1, seed=2**32 - 1)
    with pytest.raises(ConfigurationError, match="reaches seed 4294967296"):
        train_ensemble(config, 2)
    assert not (tmp_path / "ens").exists()
    config = TrainingConfig(train_data=str(small_cache), output_dir=str(tmp_path / "ens"),
                            teacher=str(small_run), pretrain_epochs=1)
    identity = {"training": config.run_identity(), "members": 2, "both_strands": False}
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / ENSEMBLE_FILE).write_text(json.dumps(
        {"status": "running", "identity": identity}))  # a killed ensemble command
    first = tmp_path / "ens" / "members" / "seed_0"
    first.mkdir(parents=True)
    member = dataclasses.replace(config, output_dir=member_dir(str(tmp_path / "ens"), 0),
                                 seed=0, overwrite=False)
    (first / "run.json").write_text(json.dumps({
        "status": "completed", "identity": member.run_identity(),
        "teachers": [{"teacher": "model", "path": str(small_run),
                      "model_sha256": "an older model", "scaler_sha256": "x"}]}))
    with pytest.raises(RunDirectoryError, match="seed_0: the teacher .* changed"):
        train_ensemble(config, 2)


def test_a_refused_overwrite_leaves_the_previous_ensemble_and_its_members(tmp_path,
                                                                           small_cache,
                                                                           monkeypatch):
    """--overwrite replaces a member only once its run has passed its checks: contradictory
    settings leave the previous ensemble's model, scaler, record and members as they
    were."""
    from dream_keras.ensemble import train_ensemble
    from dream_keras.errors import ConfigurationError
    from dream_keras.training_config import TrainingConfig

    ensemble = tmp_path / "ens"
    previous = {"model.keras": "the old ensemble", "target_scaler.json": "{}",
                "ensemble.json": json.dumps({"status": "completed", "members": [
                    {"run": str(ensemble / "members" / "seed_0"), "seed": 0}]}),
                "members/seed_0/model.keras": "member 0", "members/seed_0/run.json": "{}",
                "members/seed_7/model.keras": "member 7"}
    for name, text in previous.items():
        (ensemble / name).parent.mkdir(parents=True, exist_ok=True)
        (ensemble / name).write_text(text)
    config = TrainingConfig(train_data=str(small_cache), output_dir=str(ensemble),
                            teacher="ridge", pretrain_epochs=0, batch_size=32, overwrite=True)
    with pytest.raises(ConfigurationError, match="--teacher and --pretrain_epochs go"):
        train_ensemble(config, 2)
    assert all((ensemble / name).read_text() == text for name, text in previous.items())
    # A start that passes replaces them: its member (seed 0) trained anew, seed 7 gone;
    # also when that start was killed and the command is rerun without --overwrite.
    from dream_keras import training

    config = TrainingConfig(train_data=str(small_cache), output_dir=str(ensemble),
                            batch_size=32, epochs=1, steps_per_epoch=2, jit_compile=False,
                            model=dict(SMALL_MODEL), overwrite=True)

    import keras

    real_train = training.train

    class Kill(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise KeyboardInterrupt("killed in member 0")

    def killed(member, extra_callbacks=()):  # once member 0 has passed its checks
        return real_train(member, extra_callbacks=[*extra_callbacks, Kill()])

    monkeypatch.setattr(training, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(config, 1)
    monkeypatch.undo()
    record = train_ensemble(dataclasses.replace(config, overwrite=False), 1)
    assert [member["seed"] for member in record["members"]] == [0]
    assert os.listdir(ensemble / "members") == ["seed_0"]
    assert json.loads((ensemble / "members" / "seed_0" / "run.json").read_text())[
        "status"] == "completed"


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    return synthetic_cache(tmp_path_factory, 320)


def test_ensemble_command_killed_in_a_member_resumes_it_and_skips_finished_ones(
        tmp_path, small_cache):
    command = [sys.executable, str(REPO / "ensemble.py"), f"--train_data={small_cache}",
               "--ensemble_members=2", *SMALL_RUN, "--epochs=3"]
    whole = warm_fork.run([*command, f"--output_dir={tmp_path / 'whole'}"],
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = tmp_path / "run"
    process = warm_fork.popen([*command, f"--output_dir={run}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    backed_up = kill_after_backup([process],
                                  run / "members" / "seed_1" / "backup" / "epoch-000001.json",
                                  timeout=600)
    assert 1 <= backed_up < 3
    assert json.loads((run / "ensemble.json").read_text())["status"] == "running"
    resumed = warm_fork.run([*command, f"--output_dir={run}"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "member seed 0 already trained" in resumed.stderr
    assert f"resuming {run / 'members' / 'seed_1'} at epoch {backed_up + 1}" in resumed.stderr
    for seed in (0, 1):
        assert history(run / "members" / f"seed_{seed}") == \
            history(tmp_path / "whole" / "members" / f"seed_{seed}")
    record = json.loads((run / "ensemble.json").read_text())
    assert record["status"] == "completed" and record["seeds"] == [0, 1]
    sequences = random_sequences(20, seed=9, min_len=80, max_len=110)
    np.testing.assert_allclose(training_scale(run, sequences),
                               training_scale(tmp_path / "whole", sequences), atol=1e-6)
    again = warm_fork.run([*command, f"--output_dir={run}"], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode != 0 and "already holds a finished ensemble" in again.stderr


def test_combining_runs_refuses_the_training_flags_it_would_ignore(tmp_path, members):
    result = run_script("ensemble.py", f"--members={members[0]},{members[1]}",
                        "--output_dir=ens", "--epochs=7", "--seed=3",
                        "--ensemble_members=5", cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "ens").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --ensemble_members, --epochs, --seed: training flags, which --members "
        "(combining runs already trained) does not use; leave them out")


def test_a_finished_member_is_not_skipped_when_the_training_file_changed(tmp_path):
    """Edited between a kill and the rerun, the file no longer holds what the finished
    members trained on: the rerun says so before training anything (it used to skip them
    and refuse the mix only after training the rest). A cache given as --train_data is
    compared by the checksum of the text it was prepared from, as run.json records."""
    from dream_keras.data import synthetic
    from dream_keras.data.cache import file_sha256, prepare_cache
    from dream_keras.ensemble import _SourceCheck
    from dream_keras.training_config import TrainingConfig

    text = tmp_path / "rows.txt"
    synthetic.write_dream_file(text, 50, seed=1)
    prepare_cache(text, tmp_path / "rows.h5")
    record = {"data": {"source_sha256": file_sha256(text)}}
    for train_data in (text, tmp_path / "rows.h5"):
        config = TrainingConfig(train_data=str(train_data), output_dir="unused")
        assert _SourceCheck().changed_data(record, config) is None
    text.write_text(text.read_text().replace("\t", "\t1", 1))
    change = _SourceCheck().changed_data(record, TrainingConfig(train_data=str(text),
                                                                output_dir="unused"))
    assert change == (f"{text} has changed (its contents differ from those this member "
                      "trained on)")
