"""One-file ensembles: N trained runs in ONE .keras model whose output is their mean.

The mean leaves out a member whose output for a sequence is implausible (far outside the
training targets: dream_keras.plausibility; ensemble_layers.PlausibleMean), so one member
exploding on a rare input does not carry the ensemble with it; while every member is
plausible it is exactly the mean.

The file is a plain functional Keras model of registered layers (one-hot [None, L, 4] ->
standardised expression [None, 1]), saved with a `target_scaler.json` beside it, so
predict.py, evaluate.py, --export and keras.models.load_model use it like any run. Each
member is a nested copy of its run's model; with `both_strands` every member also sees
the reverse strand (strand_layers.ReverseComplementWindow) and the file averages all
2 x N outputs.

Members trained with different seeds hold slightly different target scalers (the
validation split, and so the training rows' mean and std, follow the seed). The file
averages them on the TRAINING scale: member k's output passes through a Rescaling layer,
y -> (y * std_k + mean_k - mean) / std, onto the scale of the ensemble's scaler (the
first member's), so the ensemble's prediction is exactly the mean of its members'
predictions. Runs trained on different data (run.json's source checksum), or, without
run records, with different scalers, are refused.

Cost: training is N runs; every prediction runs N models (2 x N with both strands).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import keras
import numpy as np
from absl import logging

from dream_keras import atomic_files
from dream_keras import run_directory as rundir
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import (ConfigurationError, DreamKerasError, OutputExistsError,
                                RunDirectoryError)
from dream_keras.file_errors import writing
from dream_keras.ensemble_layers import PlausibleMean
from dream_keras.plausibility import standardised_plausible_range
from dream_keras.strand_layers import ReverseComplementWindow
from dream_keras.teachers import changed_teachers, model_teacher_checksums
from dream_keras.training_config import MAX_SEED

ENSEMBLE_FILE = rundir.ENSEMBLE_FILE
MEMBERS_DIR = "members"
ENSEMBLE_MODEL_NAME = "dream_ensemble"  # the model.keras of an ensemble knows what it is
FINISHED = ("completed", "stopped_on_nan")


def member_dir(output_dir, seed: int) -> str:
    return os.path.join(output_dir, MEMBERS_DIR, f"seed_{seed}")


def ensemble_model(members: list[keras.Model], scalers: list[TargetScaler], *,
                   both_strands: bool = False) -> tuple[keras.Model, TargetScaler]:
    """(model, scaler): the mean of `members` (on the training scale), optionally over
    both strands. The members are renamed member_0, member_1, ... and nested as they are."""
    if not members or len(members) != len(scalers):
        raise ValueError(f"need one scaler per member, got {len(members)} models and "
                         f"{len(scalers)} scalers")
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ConfigurationError(f"the members take different inputs {sorted(shapes)}; an "
                                 "ensemble needs one sequence length")
    scaler = _ensemble_scaler(scalers)  # the first member's scale
    inputs = keras.Input(shape=shapes.pop(), name="one_hot")
    strands = [inputs]
    if both_strands:
        strands.append(ReverseComplementWindow(name="reverse_strand")(inputs))
    outputs = []
    for index, (member, member_scaler) in enumerate(zip(members, scalers)):
        member.name = f"member_{index}"
        rescale = None
        if (member_scaler.mean, member_scaler.std) != (scaler.mean, scaler.std):
            rescale = keras.layers.Rescaling(
                scale=member_scaler.std / scaler.std,
                offset=(member_scaler.mean - scaler.mean) / scaler.std,
                name=f"member_{index}_onto_ensemble_scale")
        for strand in strands:
            output = member(strand)
            outputs.append(rescale(output) if rescale is not None else output)
    low, high = standardised_plausible_range(scaler)
    mean = PlausibleMean(low, high, name="mean")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name=ENSEMBLE_MODEL_NAME), scaler


def _ensemble_scaler(scalers: list[TargetScaler]) -> TargetScaler:
    """The first member's scaler (the scale the file predicts in), with the range of all
    members' training targets where every member recorded one."""
    first = scalers[0]
    if any(scaler.minimum is None or scaler.maximum is None for scaler in scalers):
        return dataclasses.replace(first, minimum=None, maximum=None)
    return dataclasses.replace(first, minimum=min(scaler.minimum for scaler in scalers),
                               maximum=max(scaler.maximum for scaler in scalers))


def check_same_training_data(run_dirs: list[str], records: list[dict | None],
                             scalers: list[TargetScaler]) -> None:
    """Refuse members that predict on different scales: different training data
    (run.json's source checksum), or, where a run has no record of its data, a
    different target scaler."""
    teachers = {json.dumps(_model_teachers(record), sort_keys=True) for record in records
                if record is not None}
    if len(teachers) > 1:
        raise ConfigurationError("the members were pre-trained on the labels of different "
                                 "teacher models (their run.json teacher checksums differ: "
                                 f"{'; '.join(sorted(teachers))}); an ensemble averages runs "
                                 "of one recipe")
    sources = [((record or {}).get("data") or {}).get("source_sha256") for record in records]
    if all(sources):
        if len(set(sources)) > 1:
            listed = "; ".join(f"{run}: {((record or {}).get('data') or {}).get('train_data')}"
                               for run, record in zip(run_dirs, records))
            raise ConfigurationError("the members were trained on different data (their "
                                     f"run.json checksums differ: {listed}); an ensemble "
                                     "averages runs of the same training file")
        return
    first = scalers[0]
    for run, scaler in zip(run_dirs[1:], scalers[1:]):
        if (scaler.mean, scaler.std) != (first.mean, first.std):
            raise ConfigurationError(
                f"{run}: target scaler (mean {scaler.mean}, std {scaler.std}) differs from "
                f"{run_dirs[0]}'s (mean {first.mean}, std {first.std}) and the runs have no "
                "run.json recording their training data, so they cannot be shown to "
                "predict the same scale")


def _model_teachers(record: dict) -> list:
    return [(t.get("path"), t.get("model_sha256"), t.get("scaler_sha256"))
            for t in record.get("teachers") or [] if t.get("teacher") == "model"]


def _check_members(run_dirs: list[str], records: list[dict | None]) -> None:
    """Refuse a run listed twice (one model counted twice), an ensemble (its members would
    weigh less, or twice when also listed), a damaged run.json (nothing could be checked),
    or a run that did not finish (killed or still training: its model.keras is some
    epoch's, not the run's)."""
    seen = {}
    for run in run_dirs:
        if os.path.isfile(os.path.join(run, ENSEMBLE_FILE)):
            raise ConfigurationError(f"{run}: an ensemble, not a run; list its members (its "
                                     "members/seed_<seed> runs) instead")
        real = os.path.realpath(run)
        if real in seen:
            raise ConfigurationError(f"{run}: the same run as {seen[real]}; list each "
                                     "member once")
        seen[real] = run
    for run, record in zip(run_dirs, records):
        if record is None and os.path.lexists(os.path.join(run, rundir.RUN_FILE)):
            raise ConfigurationError(f"{os.path.join(run, rundir.RUN_FILE)}: not readable as "
                                     "a run record (damaged?); without it the member's data, "
                                     "status and teachers cannot be checked")
        if (record or {}).get("status", FINISHED[0]) not in FINISHED:
            raise ConfigurationError(
                f"{run}: its run.json says status {record.get('status')!r} (killed or still "
                "training); finish it (run its command again) or leave it out")


def _load_member(run_dir):
    from dream_keras.inference import load_run, model_path_of

    model, scaler = load_run(run_dir)
    if model.name == ENSEMBLE_MODEL_NAME or any(isinstance(layer, keras.Model)
                                                for layer in model.layers):
        # An ensemble file copied away from its ensemble.json: its members would weigh
        # less than the others (the file itself says what it is).
        raise ConfigurationError(f"{model_path_of(run_dir)}: an ensemble file, not a run; "
                                 "list its members' runs instead")
    if not all(np.isfinite(weights).all() for weights in model.get_weights()):
        raise ConfigurationError(f"{model_path_of(run_dir)}: the model holds non-finite "
                                 "weights (a diverged run); leave it out of the ensemble")
    return model, scaler


def _run_directory_of(path) -> str:
    path = os.fspath(path)
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def write_ensemble(runs: list, output_dir, *, both_strands: bool = False,
                   overwrite: bool = False, extra: dict | None = None) -> dict:
    """Combine trained runs (run directories or their model.keras) into OUTPUT/model.keras
    + target_scaler.json + ensemble.json; returns the ensemble record."""
    if not runs:
        raise ConfigurationError("an ensemble needs at least one member run")
    run_dirs = [_run_directory_of(run) for run in runs]
    output_dir = os.fspath(output_dir)
    if os.path.abspath(output_dir) in {os.path.abspath(run) for run in run_dirs}:
        raise ConfigurationError(f"{output_dir} is one of the member runs; write the "
                                 "ensemble to another directory")
    model_path = os.path.join(output_dir, rundir.MODEL_FILE)
    if os.path.lexists(model_path) and not overwrite:
        raise OutputExistsError(f"{model_path} exists; pass --overwrite to replace it")
    records = [rundir.read_run_record(run) for run in run_dirs]
    _check_members(run_dirs, records)
    loaded = [_load_member(run) for run in runs]
    scalers = [scaler for _, scaler in loaded]
    check_same_training_data(run_dirs, records, scalers)
    mixed = mixed_generators(run_dirs, records)
    if mixed:
        logging.warning("%s", mixed)
    model, scaler = ensemble_model([model for model, _ in loaded], scalers,
                                   both_strands=both_strands)
    # Saved under a temporary name, moved into place only once complete (atomic_files);
    # the old model goes first and the new one comes last: a kill (or a full disk) in
    # between leaves no model.keras, never a new model beside the old scaler.
    scaler_path = os.path.join(output_dir, rundir.SCALER_FILE)
    target = atomic_files.destination(model_path)  # a symlinked model.keras: its target
    with writing(model_path), atomic_files.replacing(model_path) as partial:
        model.save(partial)
        if os.path.lexists(target):
            os.remove(target)
        with writing(scaler_path):
            scaler.save(scaler_path)
    record = {
        "status": "completed", "both_strands": both_strands,
        "members": [_member_summary(run, record) for run, record in zip(run_dirs, records)],
        "scaler_of": run_dirs[0], "parameters": model.count_params(),
        "cost": f"training: {len(runs)} runs; inference: {len(runs) * (2 if both_strands else 1)} "
                "model evaluations per sequence",
        **(extra or {}),
    }
    _write_record(output_dir, record)
    logging.info("wrote an ensemble of %d members to %s", len(runs), model_path)
    return record


def pretrained_on(record: dict | None) -> str | None:
    """The generator a run pre-trained on (auto: the one it chose); None without
    pre-training or a record."""
    identity = (record or {}).get("identity") or {}
    if not identity.get("pretrain_epochs"):
        return None
    chosen = (record.get("pretrain_generator") or {}).get("generator")
    return chosen or identity.get("pretrain_generator")


def mixed_generators(run_dirs: list[str], records: list[dict | None]) -> str | None:
    """A warning when members pre-trained on different generators (auto decides per run,
    from its own training rows, so members whose choice sits near the threshold can
    differ): still an ensemble, but not of one recipe. None when they agree."""
    generators = [pretrained_on(record) for record in records]
    if len({g for g in generators if g is not None}) < 2:
        return None
    listed = "; ".join(f"{run}: {g}" for run, g in zip(run_dirs, generators) if g)
    return (f"the members pre-trained on different generators ({listed}); the ensemble "
            "averages them all, but they are not runs of one recipe")


def _member_summary(run_dir, record) -> dict:
    record = record or {}
    return {"run": os.path.abspath(run_dir), "seed": record.get("seed"),
            "status": record.get("status"), "best_epoch": record.get("best_epoch"),
            "best_metrics": record.get("best_metrics"),
            "pretrain_generator": pretrained_on(record),
            "diverged_epochs": record.get("diverged_epochs"),
            "rolled_back_epochs": record.get("rolled_back_epochs")}


def _write_record(output_dir, record: dict) -> None:
    rundir.write_json_record(os.path.join(output_dir, ENSEMBLE_FILE), record)


def read_record(output_dir) -> dict | None:
    return rundir.read_json_record(os.path.join(output_dir, ENSEMBLE_FILE))


class _RecordAtFirstStart(keras.callbacks.Callback):
    """Writes the ensemble's running record once: at once for a new or resumed ensemble,
    and under --overwrite only when the first member has passed its checks and starts
    training, so a refused start leaves the previous ensemble's record (its members,
    strands, scalers: what a teacher's checks read) as it was."""

    def __init__(self, output_dir, record: dict):
        super().__init__()
        self.output_dir, self.record, self.written = output_dir, record, False

    def on_train_begin(self, logs=None):
        self.write()

    def write(self) -> None:
        if not self.written:
            _write_record(self.output_dir, self.record)
            self.written = True


def _claim(output_dir, identity: dict, overwrite: bool) -> None:
    """Check that `output_dir` may take an ensemble with this identity (empty, or an
    unfinished one to resume); refuse anything else unless overwrite. Reads only: with
    overwrite, each member's previous outputs go once its own run has passed its checks
    (train's --overwrite), the ensemble file is replaced at the end, and members of the
    old ensemble that the new one does not have are removed once the new ones trained."""
    os.makedirs(output_dir, exist_ok=True)
    if not os.listdir(output_dir):
        return
    record = read_record(output_dir)
    same = record is not None and rundir.same_identity(record.get("identity"), identity)
    if same and record.get("status") == "running" and not overwrite:
        return
    if not overwrite:
        if same:
            raise RunDirectoryError(f"{output_dir} already holds a finished ensemble of this "
                                    "configuration; pass --overwrite to train it again")
        raise RunDirectoryError(f"{output_dir} is not empty and is not an unfinished "
                                "ensemble of this configuration; choose another "
                                "--output_dir or pass --overwrite to replace its outputs")


def _remove_other_members(output_dir, seeds) -> None:
    """Remove members/seed_K run directories of seeds not in `seeds` (an overwritten
    ensemble's); anything else under members/ is kept."""
    members = os.path.join(output_dir, MEMBERS_DIR)
    keep = {f"seed_{seed}" for seed in seeds}
    for name in os.listdir(members) if os.path.isdir(members) else ():
        if re.fullmatch(r"seed_\d+", name) and name not in keep:
            shutil.rmtree(os.path.join(members, name))


class _SourceCheck:
    """Whether a finished member was trained on other contents than the training file
    holds now (edited between a kill and the rerun): it must not be skipped then, or the
    members left to train would be refused only after training. The file is hashed once."""

    def __init__(self):
        self.sha256 = None

    def changed_data(self, record: dict, config) -> str | None:
        """What changed, or None; a cache given as --train_data records its source's
        checksum, which run.json holds for either kind."""
        from dream_keras.data.cache import cache_source_sha256, file_sha256
        from dream_keras.data.training_data import is_cache_file

        trained_on = (record.get("data") or {}).get("source_sha256")
        if not trained_on or not os.path.isfile(config.train_data):
            return None
        if self.sha256 is None:
            try:
                self.sha256 = (cache_source_sha256(config.train_data)
                               if is_cache_file(config) else file_sha256(config.train_data))
            except (OSError, DreamKerasError):
                return None  # unreadable: training the next member reports it
        if self.sha256 and self.sha256 != trained_on:
            return (f"{config.train_data} has changed (its contents differ from those this "
                    "member trained on)")
        return None


def train_ensemble(config, members: int, *, both_strands: bool = False) -> dict:
    """Train `members` runs (seeds config.seed, config.seed + 1, ...) into
    OUTPUT/members/seed_K/, then write the ensemble file to OUTPUT. Killed at any point,
    the same command skips the finished members, resumes the one it was on (from its
    epoch backup) and trains the rest."""
    from dream_keras.training import train

    if members < 1:
        raise ConfigurationError(f"--ensemble_members must be >= 1, got {members}")
    if config.strategy == "multi_worker":
        raise ConfigurationError("ensembles train on one machine; with several workers, "
                                 "train each member with train.py and combine them with "
                                 "--members")
    if config.seed + members - 1 > MAX_SEED:
        raise ConfigurationError(f"--seed={config.seed} with {members} members reaches seed "
                                 f"{config.seed + members - 1}, above {MAX_SEED}")
    output_dir = config.output_dir
    identity = {"training": config.run_identity(), "members": members,
                "both_strands": both_strands}
    # Finished members are skipped only if their teacher files are today's.
    teachers = model_teacher_checksums(config.teacher) if config.pretrain_epochs else []
    _claim(output_dir, identity, config.overwrite)
    # Replacing another ensemble (--overwrite, or resuming an overwrite that was killed):
    # its members are replaced one by one and its extra members removed at the end, so
    # the same command, rerun without --overwrite, finishes the replacement.
    replacing = config.overwrite or bool((read_record(output_dir) or {}).get("replacing"))
    seeds = [config.seed + k for k in range(members)]
    record = _RecordAtFirstStart(output_dir, {"status": "running", "identity": identity,
                                              "seeds": seeds, "replacing": replacing})
    if not config.overwrite:  # a new or resumed ensemble: claimed at once, so a kill
        record.write()        # at any moment leaves a run the same command resumes
    run_dirs = []
    source_checks = _SourceCheck()
    for seed in seeds:
        run_dir = member_dir(output_dir, seed)
        member = dataclasses.replace(config, output_dir=run_dir, seed=seed, overwrite=False)
        previous = rundir.read_run_record(run_dir)
        same = previous is not None and rundir.same_identity(previous.get("identity"),
                                                             member.run_identity())
        # With --overwrite every member trains again; when replacing, a member directory
        # of the other ensemble is replaced. Either way its previous outputs go only once
        # its run has passed its checks (a refused start leaves them as they were).
        member = dataclasses.replace(member, overwrite=config.overwrite or (
            replacing and previous is not None and not same))
        if (not config.overwrite and same and previous.get("status") in FINISHED):
            change = changed_teachers(previous.get("teachers") or [], teachers) or \
                source_checks.changed_data(previous, config)
            if change:
                raise RunDirectoryError(f"{run_dir}: {change} since this member was "
                                        "trained; pass --overwrite to train every member "
                                        "again")
            logging.info("member seed %d already trained (%s); skipping", seed,
                         previous["status"])
        else:
            logging.info("training member seed %d (%d of %d)", seed, len(run_dirs) + 1,
                         members)
            keras.backend.clear_session()  # each member starts from the same global state
            train(member, extra_callbacks=[record])
        run_dirs.append(run_dir)
    keras.backend.clear_session()
    record.write()
    if replacing:
        _remove_other_members(output_dir, seeds)
    return write_ensemble(run_dirs, output_dir, both_strands=both_strands, overwrite=True,
                          extra={"identity": identity, "seeds": seeds})
