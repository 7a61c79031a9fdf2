"""The built-in baseline: ridge regression on k-mer counts (NumPy/SciPy only, no TensorFlow).

    baseline = fit_kmer_ridge(sequences, expression)     # k and penalty by leave-one-out CV
    predicted = baseline.predict(other_sequences)        # on the training file's scale

Features: the count of every k-mer (4**k columns) read on the given strand only, over the
whole sequence (flanks included). A k-mer that contains an N is not counted. Strands are
NOT merged (no canonical k-mers): promoter activity is strand-specific (a TATA box works
in one orientation), so merging a k-mer with its reverse complement would throw that away.

Fit: ordinary ridge with an unpenalised intercept, solved in closed form from the centred
Gram matrix X'X and its eigendecomposition, which gives the solution for every penalty at
once. k (DEFAULT_KS) and the penalty (DEFAULT_PENALTIES, relative to the mean eigenvalue
of X'X so one grid fits every k and row count) are chosen by the lowest leave-one-out
mean squared error on the training rows, computed exactly in closed form from one
eigendecomposition per k (of X'X, or of X X' when there are fewer rows than k-mers;
k-fold CV would need k of them). X'X and the held-out scores are summed over chunks of
rows (DEFAULT_FIT_CHUNK_ROWS), so the fit's memory does not grow with the rows (0.7 GiB on
200,000 rows or 50,000; counting all at once took ~6 KB per row: benchmarks/ridge_bench.py).
A linear
model with an intercept is equivariant to an affine change of the targets, so fitting on
raw expression and standardising its predictions with a run's target scaler is the same
as fitting on that run's standardised targets.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging
from scipy import linalg, sparse

from dream_keras.data.readers import DEFAULT_CHUNK_ROWS, iter_chunks
from dream_keras.data.sequences import N_CODE, encode
from dream_keras.errors import ConfigurationError, DataFormatError

DEFAULT_KS = (3, 4, 5, 6)
# Penalty = factor * mean eigenvalue of the centred X'X (= trace / number of k-mers).
DEFAULT_PENALTIES = tuple(float(f) for f in np.logspace(-4, 1, 11))
MAX_K = 7  # 4**7 = 16,384 columns; the dense eigendecomposition grows as (4**k)**3
_PREDICT_BATCH = 50_000
# Rows counted at once when fitting: bounds the fit's memory (X'X and one chunk).
DEFAULT_FIT_CHUNK_ROWS = 50_000


def kmer_indices(codes: np.ndarray, k: int) -> np.ndarray:
    """Index (base-4 number, A=0 C=1 G=2 T=3, first base most significant) of the k-mer
    starting at every column of codes [n, W]; -1 where the window holds an N. [n, W-k+1]."""
    codes = np.asarray(codes)
    if not 1 <= k <= MAX_K:
        raise ConfigurationError(f"k-mer length must be 1..{MAX_K}, got {k}")
    num_windows = codes.shape[1] - k + 1
    if num_windows < 1:
        return np.zeros((codes.shape[0], 0), dtype=np.int64)
    index = np.zeros((codes.shape[0], num_windows), dtype=np.int64)
    has_n = np.zeros((codes.shape[0], num_windows), dtype=bool)
    for offset in range(k):
        window = codes[:, offset:offset + num_windows]
        index = index * 4 + np.where(window == N_CODE, 0, window)
        has_n |= window == N_CODE
    return np.where(has_n, -1, index)


def kmer_counts(sequences, k: int) -> sparse.csr_matrix:
    """Counts of every k-mer in each sequence, float64 sparse [n, 4**k] (columns ordered as
    kmer_indices). Raises InvalidSequenceError for a letter outside ACGTN."""
    sequences = list(sequences)
    width = max([k] + [len(s) for s in sequences])
    index = kmer_indices(encode(sequences, seq_len=width), k)  # N padding counts nothing
    rows, columns = np.nonzero(index >= 0)
    counts = sparse.coo_matrix((np.ones(rows.size), (rows, index[rows, columns])),
                               shape=(len(sequences), 4 ** k))
    return counts.tocsr()  # duplicates (a k-mer seen twice) are summed here


@dataclasses.dataclass
class KmerRidge:
    """A fitted k-mer ridge model: predicted = counts(sequence) . coef + intercept."""

    k: int
    penalty: float
    coef: np.ndarray
    intercept: float
    train_rows: int
    cv: list  # one {'k', 'penalty', 'cv_mse', 'cv_pearson'} (leave-one-out) per candidate
    longest_train_row: int = 0  # bases: k-mers are counted over the whole sequence
    skipped_train_rows: int = 0  # bad rows of the training file left out (skip_bad_rows)

    def predict(self, sequences) -> np.ndarray:
        """Predictions [n] (float64) on the training targets' scale."""
        sequences = list(sequences)
        out = [kmer_counts(sequences[i:i + _PREDICT_BATCH], self.k) @ self.coef + self.intercept
               for i in range(0, len(sequences), _PREDICT_BATCH)]
        return np.concatenate(out) if out else np.zeros(0)

    def summary(self) -> dict:
        """JSON-ready description (no coefficients)."""
        return {"model": f"ridge regression on {self.k}-mer counts", "k": self.k,
                "penalty": self.penalty, "train_rows": self.train_rows,
                "longest_train_row": self.longest_train_row,
                "skipped_train_rows": self.skipped_train_rows,
                "selection": "leave-one-out mean squared error", "cv": self.cv}


class _HeldOutScores:
    """MSE and Pearson r of held-out predictions, per penalty, summed chunk by chunk: the
    [rows, penalties] array of held-out predictions is never held whole (on the 6.7M
    DREAM rows it would take 0.6 GB). Means and co-moments are merged pairwise (Chan et
    al.'s update), so r keeps its precision whatever the predictions' offset."""

    def __init__(self, num_penalties: int):
        self.rows, self.mean_y, self.m2_y = 0, 0.0, 0.0
        self.squared_error, self.mean_p, self.m2_p, self.c_py = np.zeros((4, num_penalties))
        self.low, self.high = np.full(num_penalties, np.inf), np.full(num_penalties, -np.inf)

    def add(self, held_out: np.ndarray, targets: np.ndarray) -> None:
        """Held-out predictions [m, P] of `targets` [m]."""
        m = targets.size
        if m == 0:
            return
        mean_p, mean_y = held_out.mean(axis=0), float(targets.mean())
        dp, dy = held_out - mean_p, targets - mean_y
        total = self.rows + m
        delta_p, delta_y = mean_p - self.mean_p, mean_y - self.mean_y
        weight = self.rows * m / total
        self.m2_p += (dp * dp).sum(axis=0) + delta_p ** 2 * weight
        self.m2_y += float((dy * dy).sum()) + delta_y ** 2 * weight
        self.c_py += (dp * dy[:, None]).sum(axis=0) + delta_p * delta_y * weight
        self.mean_p += delta_p * m / total
        self.mean_y += delta_y * m / total
        self.rows = total
        self.squared_error += ((held_out - targets[:, None]) ** 2).sum(axis=0)
        self.low = np.minimum(self.low, held_out.min(axis=0))  # NaN stays NaN
        self.high = np.maximum(self.high, held_out.max(axis=0))

    def scores(self) -> list:
        """[(MSE, Pearson r)] per penalty; r is NaN for constant (or NaN) predictions."""
        varying = self.high - self.low > 0
        denominator = np.sqrt(np.where(varying, self.m2_p, 1.0) * self.m2_y)
        pearson = np.clip(np.where(varying, self.c_py / denominator, np.nan), -1.0, 1.0)
        return list(zip((self.squared_error / self.rows).tolist(), pearson.tolist()))


def _without_rounding_noise(eigenvalues: np.ndarray, uncentred_trace: float) -> np.ndarray:
    """Eigenvalues of a centred X'X (or X X'), negatives from rounding set to 0, and all of
    them to 0 when their sum (the counts' total variance) is rounding noise next to the
    uncentred trace: rows whose counts are all alike. The penalty is relative to that sum,
    so noise left in would be fitted as a model; all 0 gives 0/0 scores, never chosen."""
    eigenvalues = np.maximum(eigenvalues, 0.0)
    if eigenvalues.sum() <= 1e-10 * uncentred_trace:
        return np.zeros_like(eigenvalues)
    return eigenvalues


def _count_chunks(sequences, k: int, chunk_rows: int):
    """(first row, k-mer counts of `chunk_rows` sequences from it) over `sequences`."""
    for start in range(0, len(sequences), chunk_rows):
        yield start, kmer_counts(sequences[start:start + chunk_rows], k)


def _primal_leave_one_out(sequences, k, targets, factors, chunk_rows=DEFAULT_FIT_CHUNK_ROWS):
    """Leave-one-out scores and coefficients [p, P] from the eigendecomposition of the
    centred X'X [p, p] (cheaper when rows > columns). With hat values
    h_i = 1/n + z_i' (L + a)^-1 z_i (z_i: the centred row in the eigenbasis, L: the
    eigenvalues), the held-out residual is (y_i - fit_i) / (1 - h_i).
    Rows are counted `chunk_rows` at a time, twice (once for X'X and X'y, once for the
    held-out residuals), so memory is bounded by X'X and a chunk, not by the rows."""
    rows, columns = targets.size, 4 ** k
    target_mean = float(targets.mean())
    gram, sums, cross = np.zeros((columns, columns)), np.zeros(columns), np.zeros(columns)
    for start, counts in _count_chunks(sequences, k, chunk_rows):
        gram += (counts.T @ counts).toarray()  # integer counts: exact in float64
        sums += np.asarray(counts.sum(axis=0)).ravel()
        cross += counts.T @ (targets[start:start + counts.shape[0]] - target_mean)
    means = sums / rows
    uncentred_trace = float(np.trace(gram))
    gram -= rows * np.outer(means, means)
    eigenvalues, eigenvectors = linalg.eigh(gram, check_finite=False, overwrite_a=True)
    eigenvalues = _without_rounding_noise(eigenvalues, uncentred_trace)
    inverse = 1.0 / (eigenvalues[:, None] + factors[None, :] * eigenvalues.sum() / columns)
    weights = (cross @ eigenvectors)[:, None] * inverse
    centre = means @ eigenvectors
    scores = _HeldOutScores(factors.size)
    for start, counts in _count_chunks(sequences, k, chunk_rows):
        for first in range(0, counts.shape[0], 4096):
            rotated = counts[first:first + 4096] @ eigenvectors - centre
            chunk_targets = targets[start + first:start + first + rotated.shape[0]]
            hat = 1.0 / rows + (rotated ** 2) @ inverse
            residual = (chunk_targets[:, None] - target_mean - rotated @ weights) / (1.0 - hat)
            scores.add(chunk_targets[:, None] - residual, chunk_targets)
    return scores.scores(), eigenvectors @ weights, means, target_mean


def _dual_leave_one_out(sequences, k, targets, factors):
    """The same from the eigendecomposition of the centred X X' [n, n] (cheaper when
    rows < columns, so fewer than 4**MAX_K rows: held whole): fit = U S (S + a)^-1 U' y~,
    h_i = 1/n + sum_j U_ij^2 s_j / (s_j + a), coefficients X~' U (S + a)^-1 U' y~. The
    penalty scale (trace / columns) is the same."""
    counts = kmer_counts(sequences, k)
    rows, columns = counts.shape
    means = np.asarray(counts.mean(axis=0)).ravel()
    row_dot_means = counts @ means
    kernel = ((counts @ counts.T).toarray() - row_dot_means[:, None] - row_dot_means[None, :]
              + means @ means)
    uncentred_trace = float(counts.multiply(counts).sum())
    eigenvalues, eigenvectors = linalg.eigh(kernel, check_finite=False, overwrite_a=True)
    eigenvalues = _without_rounding_noise(eigenvalues, uncentred_trace)
    target_mean = float(targets.mean())
    inverse = 1.0 / (eigenvalues[:, None] + factors[None, :] * eigenvalues.sum() / columns)
    projected = eigenvectors.T @ (targets - target_mean)
    fitted = target_mean + eigenvectors @ (projected[:, None] * eigenvalues[:, None] * inverse)
    hat = 1.0 / rows + (eigenvectors ** 2) @ (eigenvalues[:, None] * inverse)
    scores = _HeldOutScores(factors.size)
    scores.add(targets[:, None] - (targets[:, None] - fitted) / (1.0 - hat), targets)
    dual = eigenvectors @ (projected[:, None] * inverse)  # [n, P]
    coef = counts.T @ dual - np.outer(means, dual.sum(axis=0))
    return scores.scores(), np.asarray(coef), means, target_mean


def fit_kmer_ridge(sequences, targets, *, ks=DEFAULT_KS, penalties=DEFAULT_PENALTIES,
                   chunk_rows: int = DEFAULT_FIT_CHUNK_ROWS) -> KmerRidge:
    """Fit the baseline, choosing k in `ks` and the penalty factor by leave-one-out CV.
    `chunk_rows`: rows whose k-mers are counted at once (memory, not results: the fit is
    the same for any value up to float rounding)."""
    sequences = list(sequences)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if len(sequences) != targets.size:
        raise ValueError(f"{len(sequences)} sequences but {targets.size} targets")
    if targets.size < 3:
        raise ConfigurationError("the k-mer baseline needs at least 3 training rows, got "
                                 f"{targets.size}")
    if not np.isfinite(targets).all():
        row = int(np.flatnonzero(~np.isfinite(targets))[0])
        raise ValueError(f"targets must be finite numbers: row {row} (0-based) is "
                         f"{targets[row]}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
            or chunk_rows < 1:
        raise ConfigurationError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r}")
    ks, penalties = list(ks), list(penalties)
    if not ks or not penalties:
        raise ConfigurationError("give at least one k-mer length and one penalty")
    for k in ks:
        if isinstance(k, bool) or float(k) != int(k) or not 1 <= int(k) <= MAX_K:
            raise ConfigurationError(f"k-mer length must be a whole number 1..{MAX_K}, got {k}")
    for penalty in penalties:
        if not np.isfinite(float(penalty)) or float(penalty) < 0:
            raise ConfigurationError(f"penalties must be finite and >= 0, got {penalty}")
    ks, penalties = tuple(int(k) for k in ks), tuple(float(p) for p in penalties)
    factors = np.asarray(penalties, dtype=np.float64)
    cv, best = [], None
    for k in ks:
        with np.errstate(divide="ignore", invalid="ignore"):  # k-mers that never vary
            if targets.size < 4 ** k:
                scores, coef, means, target_mean = _dual_leave_one_out(
                    sequences, k, targets, factors)
            else:
                scores, coef, means, target_mean = _primal_leave_one_out(
                    sequences, k, targets, factors, chunk_rows)
        for i, (factor, (mse, pearson)) in enumerate(zip(penalties, scores)):
            cv.append({"k": int(k), "penalty": float(factor), "cv_mse": mse,
                       "cv_pearson": pearson})
            # A candidate whose held-out error is not a number (rows whose k-mer counts
            # are all alike: no variance to fit, 0/0 scores) never wins.
            if np.isfinite(mse) and (best is None or mse < best[0]):
                best = (mse, int(k), float(factor), coef[:, i],
                        float(target_mean - means @ coef[:, i]))
    if best is None:
        raise ConfigurationError(
            f"the k-mer baseline cannot be fitted on these {targets.size} rows: their k-mer "
            f"counts (k in {', '.join(map(str, ks))}) do not vary (identical sequences, or "
            "all shorter than k)")
    _, k, factor, coef, intercept = best
    return KmerRidge(k=k, penalty=factor, coef=coef, intercept=intercept,
                     train_rows=int(targets.size), cv=cv)


def fit_kmer_ridge_file(path, *, ks=DEFAULT_KS, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                        skip_bad_rows: bool = False) -> KmerRidge:
    """Fit the baseline on every row of a labelled sequence<TAB>expression file (with
    `skip_bad_rows`, on its good rows, as training with skip_bad_rows reads it)."""
    sequences, expression, skipped = [], [], []
    for chunk in iter_chunks(path, with_expression=True, chunk_rows=chunk_rows,
                             skip_bad_rows=skip_bad_rows, skipped=skipped):
        sequences += chunk.sequences
        expression.append(chunk.expression)
    if not sequences:
        raise DataFormatError(path, None, "no rows to fit the k-mer baseline on")
    if skipped:
        logging.warning("k-mer baseline: skipped %d bad rows of %s; first: %s", len(skipped),
                        path, skipped[0])
    return dataclasses.replace(fit_kmer_ridge(sequences, np.concatenate(expression), ks=ks),
                               longest_train_row=max(map(len, sequences)),
                               skipped_train_rows=len(skipped))
