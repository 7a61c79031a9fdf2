"""Teachers that label generated sequences for pre-training (docs/small_data.md).

  --teacher=ridge                  the built-in k-mer ridge (baseline.py), fitted on the
                                   run's TRAINING rows only (never validation rows)
  --teacher=RUN/model.keras[,...]  trained runs, each with its target_scaler.json beside it
  --teacher=ridge,RUN/model.keras  both: the label is the mean over every listed teacher

Every label is on the run's own target scale (its target_scaler.json): the ridge is fitted
on the run's standardised training targets (a ridge with an intercept is equivariant to an
affine change of its targets, so this equals fitting on raw values and standardising its
predictions); a model's output, on its own run's standardised scale, is turned back into
raw expression with its run's scaler and standardised with this run's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile

from absl import logging

import numpy as np

from dream_keras import atomic_files
from dream_keras.baseline import (DEFAULT_FIT_CHUNK_ROWS, DEFAULT_KS, DEFAULT_PENALTIES,
                                  KmerRidge, fit_kmer_ridge, kmer_indices)
from dream_keras.data.cache import file_sha256
from dream_keras.data.sequences import decode
from dream_keras.data.splits import TargetScaler
from dream_keras.errors import ConfigurationError
from dream_keras.plausibility import standardised_plausible_range
from dream_keras.run_directory import (MODEL_FILE, model_path_of, scaler_path_of,
                                       trained_run_records)

RIDGE = "ridge"
# The fitted ridge teacher is kept in the run's backup/ (run_directory.RIDGE_TEACHER_FILE)
# from the run's start until backup/ is removed at its end: a run resumed in pre-training
# reads it instead of fitting again (minutes on large files; and the same coefficients to
# the last bit on another machine). Bump the version when the fit itself changes.
_RIDGE_FILE_VERSION = 1


def teacher_names(text: str) -> list[str]:
    """The names of --teacher's comma list (ridge, model paths), unchecked."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def parse_teachers(text: str) -> tuple[bool, list[str]]:
    """(--teacher names the ridge, model paths) from the comma list; checks the paths."""
    names = teacher_names(text)
    if not names:
        raise ConfigurationError("--teacher is empty: give ridge and/or model.keras paths")
    paths = []
    for name in names:
        if name == RIDGE:
            continue
        path = model_path_of(name)
        if not os.path.isfile(path):
            raise ConfigurationError(f"--teacher: {name} is neither 'ridge' nor a model.keras "
                                     "file or run directory")
        if not os.path.isfile(scaler_path_of(path)):
            raise ConfigurationError(f"--teacher: {path} has no target_scaler.json beside it")
        paths.append(path)
    # One file named two ways (./run, run/model.keras, a link) would count twice.
    if len({os.path.realpath(p) for p in paths}) != len(paths) or names.count(RIDGE) > 1:
        raise ConfigurationError(f"--teacher lists a teacher twice: {text}")
    return RIDGE in names, paths


@dataclasses.dataclass(frozen=True)
class RidgeTeacher:
    """A fitted KmerRidge that labels encoded batches: the sum of its k-mer weights over
    every window of the row (a sparse count x weights product, as one gather and a sum),
    plus the intercept. Windows holding an N (padding included) weigh 0, as in predict."""

    ridge: KmerRidge

    @classmethod
    def fit(cls, train_codes: np.ndarray, train_targets: np.ndarray,
            ks=DEFAULT_KS) -> "RidgeTeacher":
        """Fitted on the training rows as the model sees them (their last seq_len bases)
        and their standardised targets; k and penalty chosen as the baseline's."""
        return cls(fit_kmer_ridge(decode(train_codes), train_targets, ks=ks))

    @property
    def _weights(self) -> np.ndarray:
        # One extra weight 0 for windows holding an N (index -1 -> the last entry).
        return np.append(np.asarray(self.ridge.coef, dtype=np.float64), 0.0)

    def labels(self, codes: np.ndarray) -> np.ndarray:
        """float32 [n]: labels of encoded rows [n, seq_len], equal to ridge.predict. Rows
        are labelled DEFAULT_FIT_CHUNK_ROWS at a time, as the fit counts them: the k-mer
        indices of the 6.7M DREAM rows at once would hold ~12 GB (a batch is one chunk)."""
        weights = self._weights
        labels = np.empty(len(codes), np.float32)
        for start in range(0, len(codes), DEFAULT_FIT_CHUNK_ROWS):
            index = kmer_indices(codes[start:start + DEFAULT_FIT_CHUNK_ROWS], self.ridge.k)
            index = np.where(index < 0, len(weights) - 1, index)
            labels[start:start + len(index)] = weights[index].sum(axis=1) + self.ridge.intercept
        return labels

    def save(self, path, fingerprint: str) -> None:
        """Write the fitted ridge whole (atomic_files) with the `fingerprint` of the rows
        and settings it was fitted on (ridge_fingerprint)."""
        ridge = self.ridge
        meta = {"version": _RIDGE_FILE_VERSION, "fingerprint": fingerprint, "k": ridge.k,
                "penalty": ridge.penalty, "intercept": ridge.intercept,
                "train_rows": ridge.train_rows, "cv": ridge.cv,
                "longest_train_row": ridge.longest_train_row,
                "skipped_train_rows": ridge.skipped_train_rows}
        with atomic_files.replacing_open(path, "wb") as handle:
            np.savez(handle, coef=np.asarray(ridge.coef, dtype=np.float64),
                     meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path, fingerprint: str) -> "RidgeTeacher | None":
        """The ridge saved at `path` if it was fitted on rows and settings of this
        `fingerprint`; None (and a log line saying why) when absent, unreadable or
        fitted on anything else."""
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                coef, meta = saved["coef"], json.loads(str(saved["meta"]))
            if meta.get("version") != _RIDGE_FILE_VERSION or \
                    meta.get("fingerprint") != fingerprint:
                logging.warning("%s was fitted on other rows or settings: fitting the ridge "
                                "teacher again", path)
                return None
            ridge = KmerRidge(k=int(meta["k"]), penalty=float(meta["penalty"]), coef=coef,
                              intercept=float(meta["intercept"]),
                              train_rows=int(meta["train_rows"]), cv=meta["cv"],
                              longest_train_row=int(meta["longest_train_row"]),
                              skipped_train_rows=int(meta["skipped_train_rows"]))
            if coef.shape != (4 ** ridge.k,):
                raise ValueError(f"{coef.size} coefficients for k = {ridge.k}")
        except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError,
                AttributeError) as error:
            logging.warning("%s is unreadable (%s): fitting the ridge teacher again", path,
                            error)
            return None
        logging.info("ridge teacher read from %s (fitted when the run started)", path)
        return cls(ridge)

    def summary(self) -> dict:
        best = next(row for row in self.ridge.cv  # the chosen candidate's own scores
                    if row["k"] == self.ridge.k and row["penalty"] == self.ridge.penalty)
        return {"teacher": RIDGE, "k": self.ridge.k, "penalty": self.ridge.penalty,
                "train_rows": self.ridge.train_rows, "cv_mse": best["cv_mse"],
                "cv_pearson": best["cv_pearson"]}


class ModelTeacher:
    """Trained runs, averaged, labelling one-hot batches inside the tf.data pipeline.

    Each model's output (its run's standardised scale) maps to this run's scale by
    y_run = (y_model * std_model + mean_model - mean_run) / std_run. A sequence's label is
    the mean over the teachers (the ridge's label too, when there is one) whose label for it
    is plausible (dream_keras.plausibility, this run's range), as a one-file ensemble
    averages: a teacher exploding on one generated sequence (measured in inference:
    -2.0e10 on a 0-17 scale) would otherwise hand the student a label that blows up its
    loss, unnoticed in the input pipeline. Where no teacher is plausible, the mean of the
    finite model labels clipped into the range (0, the training mean, if none is finite).
    """

    def __init__(self, paths: list[str], run_scaler: TargetScaler, seq_len: int | None = None,
                 jit_compile: bool = False):
        # TensorFlow only for model teachers. load_run checks the files as predict.py
        # does: a missing scaler, a damaged archive or a model of another shape is one
        # line naming the file, not a Keras traceback.
        from dream_keras.inference import load_run

        self.paths = list(paths)
        self.models, self.scales, self.offsets, self.checksums = [], [], [], []
        for path in self.paths:
            model, scaler = load_run(path)
            if seq_len is not None and model.input_shape[1] != seq_len:
                raise ConfigurationError(
                    f"{path}: the teacher model reads sequences of {model.input_shape[1]} "
                    f"bases, this run {seq_len} (--seq_len): its labels would be computed "
                    "on other windows")
            self.models.append(model)
            self.scales.append(scaler.std / run_scaler.std)
            self.offsets.append((scaler.mean - run_scaler.mean) / run_scaler.std)
            self.checksums.append(teacher_file_checksums(path))
        self.label_range = standardised_plausible_range(run_scaler)
        elsewhere = _devices_off_the_pipeline(self.models)
        if jit_compile and elsewhere:
            logging.info("teacher models' weights are on %s: their forward passes run without "
                         "XLA (an XLA function in the input pipeline reads only its own "
                         "device's)", ", ".join(sorted(elsewhere)))
        self.jit_compile = jit_compile and not elsewhere
        if self.jit_compile:
            import tensorflow as tf

            self._forward = tf.function(self._forward, jit_compile=True)

    def labels(self, x, ridge_labels=None):
        """The teachers' mean label (a TF op): [batch, 1] float32, over the models and, with
        `ridge_labels` ([batch, 1], the ridge teacher's), the ridge, each counted where its
        label is plausible (ensemble_layers.plausible_mean). With `jit_compile` the forward
        passes are one XLA function: they run in the input pipeline, on the host, beside
        the training step (one full-size model on 64 sequences: 44 ms with XLA, 69 ms
        without, on 2 CPU cores); only when the weights are on the pipeline's device
        (CPU:0), which a GPU host's are not."""
        import tensorflow as tf

        from dream_keras.ensemble_layers import plausible_mean

        low, high = self.label_range
        models = self._forward(x)  # [models, batch, 1]
        every = models if ridge_labels is None else tf.concat([models, ridge_labels[None]], 0)
        mean, count = plausible_mean(every, low, high)
        finite = tf.math.is_finite(models)
        clipped = tf.reduce_sum(tf.where(finite, tf.clip_by_value(models, low, high),
                                         tf.zeros_like(models)), axis=0)
        fallback = clipped / tf.maximum(tf.reduce_sum(tf.cast(finite, tf.float32), 0), 1.0)
        return tf.where(count > 0, mean, fallback)

    def _forward(self, x):
        """Every model's labels on this run's scale: [models, batch, 1] float32."""
        import tensorflow as tf

        return tf.stack([tf.reshape(tf.cast(model(x, training=False), tf.float32), [-1, 1])
                         * scale + offset
                         for model, scale, offset in zip(self.models, self.scales,
                                                         self.offsets)])

    def summary(self) -> list[dict]:
        return [{"teacher": "model", "path": os.path.abspath(path), "scale": scale,
                 "offset": offset, **checksums} for path, scale, offset, checksums in
                zip(self.paths, self.scales, self.offsets, self.checksums)]


_PIPELINE_DEVICE = "CPU:0"  # where tf.data runs its functions


def _devices_off_the_pipeline(models) -> set:
    """The devices other than the input pipeline's that hold the models' weights (a GPU
    host puts them on GPU:0)."""
    devices = {str(getattr(getattr(w, "value", w), "device", "")) for m in models
               for w in m.weights}
    return {d for d in devices if d and not d.endswith(_PIPELINE_DEVICE)}


def teacher_file_checksums(path) -> dict:
    """sha256 of a teacher model and of the scaler beside it: what a resumed run (or an
    ensemble's next member) checks, the same files, not just the same path."""
    return {"model_sha256": file_sha256(path),
            "scaler_sha256": file_sha256(scaler_path_of(path))}


def model_teacher_checksums(text: str) -> list[dict]:
    """The model teachers of --teacher with their checksums, without loading them."""
    return [{"teacher": "model", "path": os.path.abspath(path),
             **teacher_file_checksums(path)} for path in parse_teachers(text)[1]]


def changed_teachers(started: list[dict], now: list[dict]) -> str | None:
    """What differs between the model teachers a run started with and those of this start
    (None when nothing does; a resumed run after pre-training loads none: None). The
    ridge is fitted on the training rows, which run_directory.check_same_data compares."""
    if not now:
        return None
    before = [t for t in started if t.get("teacher") == "model"]
    after = [t for t in now if t.get("teacher") == "model"]
    if [t["path"] for t in before] != [t["path"] for t in after]:
        return (f"the teacher models changed ({[t['path'] for t in before]} then, "
                f"{[t['path'] for t in after]} now)")
    for then, current in zip(before, after):
        for key in ("model_sha256", "scaler_sha256"):
            if key in then and then[key] != current.get(key):
                return (f"the teacher {current['path']} changed ({key.split('_')[0]} file "
                        f"sha256 {then[key][:12]}... then, {current[key][:12]}... now)")
    return None


@dataclasses.dataclass
class Teachers:
    """The run's teachers: a ridge, models, or both; a label is the mean of those whose
    label is plausible (ModelTeacher.labels)."""

    ridge: RidgeTeacher | None
    models: ModelTeacher | None
    ridge_fingerprint: str | None = None  # of what the ridge was fitted on

    def keep_ridge(self, path) -> None:
        """Save the ridge (if any) for a resumed run to read (make_teachers' saved_ridge)."""
        if self.ridge is not None:
            self.ridge.save(path, self.ridge_fingerprint)

    def summary(self) -> list[dict]:
        return (([self.ridge.summary()] if self.ridge else [])
                + (self.models.summary() if self.models else []))


def refuse_own_model_as_teacher(text: str, output_dir) -> None:
    """A teacher that is the run's own model.keras (--teacher=RUN --output_dir=RUN) is
    replaced by the run's best epoch as it trains: a resumed run would find another
    teacher and be refused, an --overwrite start would delete it first."""
    own = os.path.realpath(os.path.join(output_dir, MODEL_FILE))
    for name in (name.strip() for name in (text or "").split(",")):
        if name and name != RIDGE and os.path.realpath(model_path_of(name)) == own:
            raise ConfigurationError(f"--teacher {name} is this run's own model.keras "
                                     "(--output_dir), which training replaces: copy the "
                                     "teacher run elsewhere first")


def teachers_seeing_validation_rows(paths, data: dict) -> list[str]:
    """The teacher models trained on this run's file (same source checksum) with another
    split (another --seed or --validation_fraction): their training rows include some of
    this run's validation rows, whose val_pearson picks model.keras and stops training."""
    seen = []
    for path in paths:
        for record in trained_run_records(path):
            trained_on = record.get("data") or {}
            if (trained_on.get("source_sha256") == data.get("source_sha256") is not None
                    and trained_on.get("split_sha256") != data.get("split_sha256")):
                seen.append(path)
                break
    return seen


def ridge_fingerprint(train_codes, train_targets, ks=DEFAULT_KS,
                      penalties=DEFAULT_PENALTIES) -> str:
    """SHA-256 of what the ridge teacher's fit depends on: the encoded training rows,
    their standardised targets and the candidate k and penalties."""
    digest = hashlib.sha256()
    for array in (train_codes, train_targets):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    digest.update(json.dumps([list(ks), list(penalties)]).encode())
    return digest.hexdigest()


def make_teachers(text: str, train_codes, train_targets, run_scaler,
                  data: dict | None = None, jit_compile: bool = False,
                  saved_ridge=None) -> Teachers:
    """Teachers from --teacher, the ridge fitted on the training rows only (or read from
    `saved_ridge`, a file of RidgeTeacher.save, when it was fitted on these rows). `data` (the
    run's data summary: source and split checksums) lets a model teacher that trained on
    this run's validation rows be named in a warning; `jit_compile` (the run's
    --jit_compile) compiles model teachers' forward passes with XLA."""
    use_ridge, paths = parse_teachers(text)
    for path in teachers_seeing_validation_rows(paths, data or {}):
        logging.warning("--teacher %s trained on this training file with another split (its "
                        "--seed or --validation_fraction): it has seen some of this run's "
                        "validation rows, so val_pearson, which picks model.keras and stops "
                        "training, is optimistic. Train teachers with this run's --seed and "
                        "--validation_fraction, or judge on rows held out of both", path)
    ridge = fingerprint = None
    if use_ridge:
        fingerprint = ridge_fingerprint(train_codes, train_targets)
        ridge = RidgeTeacher.load(saved_ridge, fingerprint) if saved_ridge else None
        if ridge is None:
            logging.info("fitting the ridge teacher on the %d training rows (k-mers of "
                         "length %s, penalty chosen by leave-one-out)", len(train_codes),
                         ", ".join(map(str, DEFAULT_KS)))
            ridge = RidgeTeacher.fit(train_codes, train_targets)
        chosen = ridge.summary()
        logging.info("ridge teacher: %d-mer counts, penalty %g, leave-one-out r %.3f",
                     chosen["k"], chosen["penalty"], chosen["cv_pearson"])
    models = ModelTeacher(paths, run_scaler, seq_len=train_codes.shape[1],
                          jit_compile=jit_compile) if paths else None
    return Teachers(ridge, models, fingerprint)
