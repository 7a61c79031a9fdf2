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
                "selection": "leave-one-out mean squared error", "cv": self.cv}


class _HeldOutScores:
    """MSE and Pearson r of held-out predictions, per penalty, summed chunk by chunk: the
    [rows, penalties] array of held-out predictions is never held whole (on the 6.7M
    DREAM rows it would take 0.6 GB). Sums are of deviations from the targets' mean, near
    which held-out predictions lie, so the one-pass variances do not cancel badly."""

    def __init__(self, target_mean: float, num_penalties: int):
        self.target_mean, self.rows = target_mean, 0
        self.squared_error, self.sum_p, self.sum_pp, self.sum_py = np.zeros((4, num_penalties))
        self.sum_y = self.sum_yy = 0.0
        self.low, self.high = np.full(num_penalties, np.inf), np.full(num_penalties, -np.inf)

    def add(self, held_out: np.ndarray, targets: np.ndarray) -> None:
        """Held-out predictions [m, P] of `targets` [m]."""
        p, y = held_out - self.target_mean, targets - self.target_mean
        self.rows += targets.size
        self.squared_error += ((held_out - targets[:, None]) ** 2).sum(axis=0)
        self.sum_p += p.sum(axis=0)
        self.sum_pp += (p * p).sum(axis=0)
        self.sum_py += (p * y[:, None]).sum(axis=0)
        self.sum_y += float(y.sum())
        self.sum_yy += float((y * y).sum())
        self.low = np.minimum(self.low, held_out.min(axis=0))  # NaN stays NaN
        self.high = np.maximum(self.high, held_out.max(axis=0))

    def scores(self) -> list:
        """[(MSE, Pearson r)] per penalty; r is NaN for constant (or NaN) predictions."""
        n = self.rows
        covariance = self.sum_py - self.sum_p * self.sum_y / n
        variance_p = self.sum_pp - self.sum_p ** 2 / n
        variance_y = self.sum_yy - self.sum_y ** 2 / n
        varying = self.high - self.low > 0
        pearson = np.where(varying, covariance / np.sqrt(np.where(varying, variance_p, 1.0)
                                                         * variance_y), np.nan)
        return list(zip((self.squared_error / n).tolist(), pearson.tolist()))


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
    gram -= rows * np.outer(means, means)
    eigenvalues, eigenvectors = linalg.eigh(gram, check_finite=False, overwrite_a=True)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    inverse = 1.0 / (eigenvalues[:, None] + factors[None, :] * eigenvalues.sum() / columns)
    weights = (cross @ eigenvectors)[:, None] * inverse
    centre = means @ eigenvectors
    scores = _HeldOutScores(target_mean, factors.size)
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
    eigenvalues, eigenvectors = linalg.eigh(kernel, check_finite=False, overwrite_a=True)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    target_mean = float(targets.mean())
    inverse = 1.0 / (eigenvalues[:, None] + factors[None, :] * eigenvalues.sum() / columns)
    projected = eigenvectors.T @ (targets - target_mean)
    fitted = target_mean + eigenvectors @ (projected[:, None] * eigenvalues[:, None] * inverse)
    hat = 1.0 / rows + (eigenvectors ** 2) @ (eigenvalues[:, None] * inverse)
    scores = _HeldOutScores(target_mean, factors.size)
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
    if chunk_rows < 1:
        raise ConfigurationError(f"chunk_rows must be at least 1, got {chunk_rows}")
    ks, penalties = tuple(int(k) for k in ks), tuple(float(p) for p in penalties)
    if not ks or not penalties:
        raise ConfigurationError("give at least one k-mer length and one penalty")
    for k in ks:
        if not 1 <= k <= MAX_K:
            raise ConfigurationError(f"k-mer length must be 1..{MAX_K}, got {k}")
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


def fit_kmer_ridge_file(path, *, ks=DEFAULT_KS, chunk_rows: int = DEFAULT_CHUNK_ROWS
                        ) -> KmerRidge:
    """Fit the baseline on every row of a labelled sequence<TAB>expression file."""
    sequences, expression = [], []
    for chunk in iter_chunks(path, with_expression=True, chunk_rows=chunk_rows):
        sequences += chunk.sequences
        expression.append(chunk.expression)
    if not sequences:
        raise DataFormatError(path, None, "no rows to fit the k-mer baseline on")
    return fit_kmer_ridge(sequences, np.concatenate(expression), ks=ks)
