"""Pre-training on teacher labels, augmented fine-tuning and a last unaugmented phase in
one run directory: phases in history.csv and run.json, a run killed during pre-training
or augmented fine-tuning resumes to the identical history. That a short distillation run on real rows learns is
tests/test_recipes.py's check of flags/small_data.flags."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from dream_keras import backups
from dream_keras.errors import ConfigurationError
from dream_keras.phases import augmentations, plan_phases
from dream_keras.training_config import TrainingConfig
from tests import warm_fork
from tests.conftest import REPO, small_model_flags
from tests.run_helpers import history, kill_after_backup, run_train

pytestmark = pytest.mark.long(seconds=85)  # scheduled by length (tests/conftest.py)

SMALL_MODEL_FLAGS = small_model_flags()


# Every phase, tiny: the small test model, 450 training rows, a few steps per epoch.
# The generator is auto (design on these real rows: tests/test_generator_choice.py).
PHASED_RUN = ["--teacher=ridge", "--pretrain_generator=auto", "--pretrain_epochs=2",
              "--pretrain_steps_per_epoch=6",
              "--pretrain_learning_rate=1e-3", "--epochs=2", "--steps_per_epoch=4",
              "--augment_mutation_rate=0.05", "--augment_insertion_max=5",
              "--final_unaugmented_epochs=1", "--batch_size=32", "--optimizer=adam",
              "--learning_rate=3e-4", "--clipnorm=1", "--nojit_compile",
              "--singleton_keep_prob=1", "--validation_fraction=0.25", *SMALL_MODEL_FLAGS]


@pytest.fixture(scope="module")
def real_rows(tmp_path_factory, real_train_file):
    """600 real rows (450 training, 150 validation)."""
    folder = tmp_path_factory.mktemp("real")
    lines = real_train_file.read_text().splitlines(keepends=True)[:600]
    (folder / "rows.txt").write_text("".join(lines))
    return folder / "rows.txt"


def _args(rows, run_dir):
    return [f"--train_data={rows}", f"--cache_path={rows}.h5", f"--output_dir={run_dir}",
            *PHASED_RUN]


@pytest.fixture(scope="module")
def phased_run(tmp_path_factory, real_rows):
    run_dir = tmp_path_factory.mktemp("phased") / "run"
    run_train(*_args(real_rows, run_dir), timeout=600)
    return run_dir


def test_phases_are_recorded(phased_run):
    rows = history(phased_run)
    assert [r["phase"] for r in rows] == ["pretrain", "pretrain", "finetune", "finetune",
                                          "finetune_unaugmented"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    record = json.loads((phased_run / "run.json").read_text())
    assert [(p["name"], p["first_epoch"], p["epochs"], p["steps_per_epoch"], p["data"])
            for p in record["phases"]] == [("pretrain", 1, 2, 6, "teacher"),
                                           ("finetune", 3, 2, 4, "augmented rows"),
                                           ("finetune_unaugmented", 5, 1, 4, "rows")]
    assert record["phases"][0]["learning_rate"] == 1e-3
    assert record["phases"][1]["learning_rate"] == 3e-4
    teacher = record["teachers"][0]
    assert teacher["teacher"] == "ridge" and teacher["train_rows"] == 450  # training rows only
    assert record["design"]["prefix"] == "TGCATTTTTTTCACATC"
    assert record["pretrain_generator"]["generator"] == "design"
    # model.keras is the best epoch over every phase.
    best = max(float(r["val_pearson"]) for r in rows)
    assert record["best_metrics"]["val_pearson"] == pytest.approx(best)
    assert record["status"] == "completed" and not (phased_run / "backup").exists()


@pytest.mark.parametrize("committed", [1, 2, 3], ids=["in_pretraining", "at_finetuning",
                                                     "in_augmented_finetuning"])
def test_run_killed_during_a_phase_resumes_to_identical_history(tmp_path, real_rows,
                                                                phased_run, committed):
    run_dir = tmp_path / "run"
    args = [sys.executable, str(REPO / "train.py"), *_args(real_rows, run_dir)]
    metadata = run_dir / "backup" / f"epoch-{committed:06d}.json"  # epoch committed
    process = warm_fork.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backed_up = kill_after_backup([process], metadata, timeout=600)
    # Killed in the second pre-training epoch (resumed inside that phase), in the first
    # (augmented) fine-tuning one (resumed at the phase's start), or in the second (resumed
    # inside it: its rows, shuffles and augmentations continue mid-phase).
    assert backed_up == committed
    # What the run resumes from: the committed backup (history.csv is rewritten from it
    # just after each commit, so a kill can fall between the two).
    latest = backups.latest(run_dir / "backup")
    assert latest.epoch == committed
    phases = ["pretrain", "pretrain", "finetune"]
    assert [r["phase"] for r in latest.history] == phases[:committed]
    resumed = run_train(*args[2:], timeout=600)
    assert f"resuming {run_dir} at epoch {committed + 1}" in resumed.stderr
    # In pre-training, the ridge teacher the run fitted is read back, not fitted again;
    # after it, no teacher is needed and its file is gone with backup/ at the end.
    assert ("ridge teacher read from" in resumed.stderr) == (committed < 2)
    assert not (run_dir / "backup").exists()
    # The same generated batches and teacher labels, weights, optimizer state and
    # learning rate per phase: every number of every epoch as the uninterrupted run.
    assert history(run_dir) == history(phased_run)
    # The auto generator's choice: made again in pre-training, kept from the first record
    # after it.
    choice = [json.loads((d / "run.json").read_text())["pretrain_generator"]
              for d in (run_dir, phased_run)]
    assert choice[0] == choice[1]


def test_phase_flags_are_checked():
    base = dict(train_data="x", output_dir="y")
    with pytest.raises(ConfigurationError, match="go together"):
        plan_phases(TrainingConfig(**base, teacher="ridge"), 10)
    with pytest.raises(ConfigurationError, match="go together"):
        plan_phases(TrainingConfig(**base, pretrain_epochs=2), 10)
    with pytest.raises(ConfigurationError, match="augmentation"):
        plan_phases(TrainingConfig(**base, final_unaugmented_epochs=1), 10)
    with pytest.raises(ConfigurationError, match="constant"):
        plan_phases(TrainingConfig(**base, teacher="ridge", pretrain_epochs=1,
                                   lr_schedule="cosine"), 10)
    phases = plan_phases(TrainingConfig(**base, epochs=3, augment_deletion_max=4), 10)
    assert [(p.name, p.epochs, p.data) for p in phases] == [("finetune", 3, "augmented rows")]


@pytest.mark.parametrize("setting", [dict(pretrain_steps_per_epoch=50),
                                     dict(pretrain_learning_rate=0.5),
                                     dict(pretrain_generator="mutate"),
                                     dict(pretrain_mutation_rate=0.2)])
def test_pretraining_settings_without_pretraining_are_named_in_a_warning(setting, caplog):
    """They change nothing (the run trains as without them): said, not refused, since
    `--pretrain_epochs=0 --teacher=` after flags/small_data.flags is how to turn
    pre-training off."""
    import logging

    base = dict(train_data="x", output_dir="y")
    (name, value), = setting.items()
    with caplog.at_level(logging.WARNING, logger="absl"):
        phases = plan_phases(TrainingConfig(**base, **setting), 10)
    assert [p.name for p in phases] == ["finetune"]
    assert f"have no effect: --{name}={value}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="absl"):
        mutate = {"pretrain_generator": "mutate"} if name == "pretrain_mutation_rate" else {}
        phases = plan_phases(TrainingConfig(**base, **setting, **mutate, teacher="ridge",
                                            pretrain_epochs=1), 10)
    assert [p.name for p in phases] == ["pretrain", "finetune"] and not caplog.text


@pytest.mark.parametrize("setting, said", [
    (dict(augment_probability=0.9), "--augment_probability=0.9 without an --augment_* "
                                    "magnitude: no effect"),
    (dict(augment_mutation_rate=0.1, augment_probability=0.0),
     "the --augment_* magnitudes with --augment_probability=0: no effect"),
    (dict(teacher="ridge", pretrain_epochs=1, pretrain_mutation_rate=0.3),
     "--pretrain_mutation_rate=0.3 with --pretrain_generator=design (only mutate reads "
     "it): no effect"),
])
def test_settings_that_nothing_reads_are_named_in_a_warning(setting, said, caplog):
    """Accepted (the run trains as without them), but said; an augmentation applied with
    probability 0 labels no phase 'augmented' and cannot end in unaugmented epochs."""
    import logging

    base = dict(train_data="x", output_dir="y")
    with caplog.at_level(logging.WARNING, logger="absl"):
        phases = plan_phases(TrainingConfig(**base, **setting), 10)
    assert said in caplog.text
    assert phases[-1].data == "rows"
    if "augment_mutation_rate" in setting:
        # One predicate: the pipeline applies (and infers a design for) nothing either.
        assert not augmentations(TrainingConfig(**base, **setting)).enabled
        with pytest.raises(ConfigurationError, match="augment_probability above 0"):
            plan_phases(TrainingConfig(**base, **setting, final_unaugmented_epochs=1), 10)


def _config_of_flagfile(name: str) -> TrainingConfig:
    """The TrainingConfig fields a shipped flagfile sets (model flags aside)."""
    fields = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    values = {}
    for line in (REPO / "flags" / f"{name}.flags").read_text().splitlines():
        if not line.startswith("--"):
            continue
        key, equals, value = line[2:].partition("=")
        if not equals:  # a boolean: --name or --noname
            key, value = (key[2:], False) if key.startswith("no") and key[2:] in fields \
                else (key, True)
        if key in fields and key not in ("train_data", "output_dir"):
            cast = str if fields[key] is None else type(fields[key])
            values[key] = value if isinstance(value, bool) else cast(value)
    return TrainingConfig(train_data="x", output_dir="y", **values)


def test_shipped_flagfiles_plan_their_phases():
    assert _config_of_flagfile("small_data").pretrain_steps_per_epoch == 469
    for name in ("base", "quickstart", "small_data"):
        plan_phases(_config_of_flagfile(name), 10)


def test_augmented_training_batches_keep_labels_with_their_rows():
    """Through the real pipeline: each augmented row arrives with its own row's target."""
    from dream_keras.data.augment import Augmentations
    from dream_keras.data.design import batch_rng, infer_design
    from dream_keras.data.sequences import N_CODE
    from dream_keras.dataset import training_dataset

    rng = np.random.default_rng(0)
    codes = np.concatenate([np.full((200, 5), N_CODE), np.tile([0, 1, 2, 3, 0], (200, 1)),
                            rng.integers(0, 4, (200, 90)), np.tile([3, 3, 2, 2, 1], (200, 1)),
                            np.full((200, 5), 0)], axis=1).astype(np.uint8)
    codes[:, 5:10] = [0, 1, 2, 3, 0]
    design = infer_design(codes)
    augmentations = Augmentations(mutation_rate=0.1, translocation_max=3, probability=1.0)

    def augment(batch, step, first):
        start, end = design.variable_region(batch)
        return augmentations.apply(batch, start, end, batch_rng(0, 2, step))

    targets = np.arange(200, dtype=np.float32)  # the target names the row
    dataset = training_dataset(codes, targets, batch_size=50, seed=0, augment=augment)
    for x, y in dataset:
        shown = np.where(x.numpy().sum(-1) > 0, x.numpy().argmax(-1), N_CODE)
        source = codes[y.numpy()[:, 0].astype(int)]
        assert np.array_equal(shown[:, :10], source[:, :10])      # padding and 5' flank
        assert np.array_equal(shown[:, -10:], source[:, -10:])    # 3' flank
        agreement = [max(np.mean(np.roll(a[10:100], s) == b[10:100]) for s in range(-3, 4))
                     for a, b in zip(shown, source)]
        assert min(agreement) > 0.8  # its own row, lightly mutated and rotated


def test_rows_without_a_variable_part_are_refused_naming_the_file():
    """Rows that are all flank (every window the same bases) give augmentation nothing to
    vary: a one-line error naming the training file, not a ValueError traceback."""
    from types import SimpleNamespace

    from dream_keras.data.sequences import encode
    from dream_keras.errors import DataFormatError
    from dream_keras.phases import PhaseInputs

    config = TrainingConfig(train_data="same.txt", output_dir="unused",
                            augment_mutation_rate=0.1)
    rows = SimpleNamespace(train_codes=encode(["ACGTTGCA" * 14] * 20))
    with pytest.raises(DataFormatError, match=r"^same.txt: cannot read a design off the "
                                              r"training rows \(the rows have no variable "
                                              r"bases"):
        PhaseInputs(config, rows, [], resumed_epoch=0)
