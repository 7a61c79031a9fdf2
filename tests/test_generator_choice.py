"""--pretrain_generator=auto: designed sequences where they make the ridge teacher's labels
vary (real DREAM rows: random promoters), mutated training rows where they do not (the
package's synthetic data, whose signal sits in planted motifs); the choice is a function
of the rows and the seed, recorded, and the generator it builds is the chosen one's. That
a whole run records it and resumes with it: tests/test_phases.py (its phased run is auto)."""
import dataclasses
import logging

import numpy as np
import pytest

from dream_keras.data import synthetic
from dream_keras.data.training_data import load_training_rows
from dream_keras.errors import ConfigurationError
from dream_keras.phases import (AUTO_DESIGN_SPREAD, PhaseInputs, changed_generator,
                                choose_generator, plan_phases, pretraining_codes,
                                pretraining_generator)
from dream_keras.teachers import RidgeTeacher
from dream_keras.training_config import TrainingConfig

pytestmark = pytest.mark.long(seconds=25)  # scheduled by length (tests/conftest.py)

SEQ_LEN = 110


def _rows(path, seed=0):
    config = TrainingConfig(train_data=str(path), output_dir="unused", seed=seed,
                            singleton_keep_prob=1.0, validation_fraction=0.1)
    return config, load_training_rows(config, SEQ_LEN)


@pytest.fixture(scope="module")
def real_file(tmp_path_factory, real_train_file):
    path = tmp_path_factory.mktemp("real") / "rows.txt"
    path.write_text("".join(real_train_file.read_text().splitlines(keepends=True)[:400]))
    return path


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "rows.txt"
    synthetic.write_dream_file(path, 2000, seed=0)
    return path


def _choice(path, seed=0):
    config, rows = _rows(path, seed)
    from dream_keras.data.design import infer_design

    ridge = RidgeTeacher.fit(rows.train_codes, rows.train_targets)
    return choose_generator(config, infer_design(rows.train_codes), rows.train_codes, ridge)


def test_auto_chooses_design_on_real_rows_and_mutate_on_planted_motifs(real_file,
                                                                       synthetic_file):
    real, planted = _choice(real_file), _choice(synthetic_file)
    assert real["generator"] == "design" and real["design_label_spread"] > AUTO_DESIGN_SPREAD
    assert planted["generator"] == "mutate"
    assert 0 < planted["design_label_spread"] < AUTO_DESIGN_SPREAD
    assert real["requested"] == "auto" and real["design_from"] == AUTO_DESIGN_SPREAD
    assert _choice(real_file) == real  # a function of the rows and the seed


def test_auto_builds_the_chosen_generator_and_records_it(synthetic_file):
    config, rows = _rows(synthetic_file)
    auto = dataclasses.replace(config, teacher="ridge", pretrain_epochs=1,
                               pretrain_generator="auto", batch_size=16)
    phases = plan_phases(auto, 10)
    inputs = PhaseInputs(auto, rows, phases, resumed_epoch=0)
    assert inputs.summary()["pretrain_generator"]["generator"] == "mutate"
    explicit = pretraining_generator(auto, inputs.design, rows.train_codes, "mutate")
    for step in (0, 5):
        np.testing.assert_array_equal(pretraining_codes(inputs.generator, auto, step),
                                      pretraining_codes(explicit, auto, step))
    # Resumed past pre-training: no teacher is fitted, nothing is drawn or chosen again
    # (training.py keeps the first record's choice in run.json).
    later = PhaseInputs(auto, rows, phases, resumed_epoch=phases[0].end_epoch)
    assert later.generator is None and "pretrain_generator" not in later.summary()


def test_a_resumed_run_that_would_choose_otherwise_is_refused():
    """training.py refuses the resume with this message (a package whose rule changed
    between start and resume would switch generators mid-phase)."""
    design, mutate = {"generator": "design"}, {"generator": "mutate"}
    assert changed_generator(design, dict(design, design_label_spread=0.7)) is None
    assert changed_generator(None, mutate) is None and changed_generator(design, None) is None
    assert changed_generator(design, mutate) == ("--pretrain_generator=auto chose mutate now "
                                                 "and design when the run started")


def test_auto_needs_the_ridge_and_may_read_the_mutation_rate(caplog):
    base = dict(train_data="x", output_dir="y", pretrain_epochs=1, pretrain_generator="auto")
    with pytest.raises(ConfigurationError, match="auto chooses by the ridge"):
        plan_phases(TrainingConfig(**base, teacher="runs/teacher"), 10)
    with caplog.at_level(logging.WARNING, logger="absl"):
        plan_phases(TrainingConfig(**base, teacher="ridge, runs/teacher",
                                   pretrain_mutation_rate=0.2), 10)
    assert "no effect" not in caplog.text  # auto may choose mutate, which reads it


def test_an_ensemble_of_members_that_chose_different_generators_is_named():
    from dream_keras.ensemble import mixed_generators, pretrained_on

    def record(requested, chosen=None, epochs=6):
        return {"identity": {"pretrain_epochs": epochs, "pretrain_generator": requested},
                **({"pretrain_generator": {"generator": chosen}} if chosen else {})}

    agree = [record("auto", "design"), record("design"), None]
    assert [pretrained_on(r) for r in agree] == ["design", "design", None]
    assert mixed_generators(["a", "b", "c"], agree) is None
    assert pretrained_on(record("auto", "mutate", epochs=0)) is None  # no pre-training
    warning = mixed_generators(["runs/s0", "runs/s1"],
                               [record("auto", "design"), record("auto", "mutate")])
    assert "runs/s0: design; runs/s1: mutate" in warning
