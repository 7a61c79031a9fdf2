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
k-fold CV would need k of them). A linear
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


def _scores(held_out: np.ndarray, targets: np.ndarray) -> list:
    """[(MSE, Pearson r)] of held-out predictions [n, P] per penalty."""
    mse = np.mean((held_out - targets[:, None]) ** 2, axis=0)
    pearson = [float(np.corrcoef(p, targets)[0, 1]) if np.ptp(p) > 0 else float("nan")
               for p in held_out.T]
    return list(zip(mse.tolist(), pearson))


def _primal_leave_one_out(counts, targets, factors):
    """Leave-one-out scores and coefficients [p, P] from the eigendecomposition of the
    centred X'X [p, p] (cheaper when rows > columns). With hat values
    h_i = 1/n + z_i' (L + a)^-1 z_i (z_i: the centred row in the eigenbasis, L: the
    eigenvalues), the held-out residual is (y_i - fit_i) / (1 - h_i)."""
    rows, columns = counts.shape
    means = np.asarray(counts.mean(axis=0)).ravel()
    gram = (counts.T @ counts).toarray() - rows * np.outer(means, means)
    eigenvalues, eigenvectors = linalg.eigh(gram, check_finite=False, overwrite_a=True)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    target_mean = float(targets.mean())
    inverse = 1.0 / (eigenvalues[:, None] + factors[None, :] * eigenvalues.sum() / columns)
    weights = ((counts.T @ (targets - target_mean)) @ eigenvectors)[:, None] * inverse
    held_out = np.empty((rows, factors.size))
    for start in range(0, rows, 4096):
        stop = min(rows, start + 4096)
        rotated = counts[start:stop] @ eigenvectors - means @ eigenvectors
        hat = 1.0 / rows + (rotated ** 2) @ inverse
        residual = (targets[start:stop, None] - target_mean - rotated @ weights) / (1.0 - hat)
        held_out[start:stop] = targets[start:stop, None] - residual
    return _scores(held_out, targets), eigenvectors @ weights, means, target_mean


def _dual_leave_one_out(counts, targets, factors):
    """The same from the eigendecomposition of the centred X X' [n, n] (cheaper when
    rows < columns): fit = U S (S + a)^-1 U' y~, h_i = 1/n + sum_j U_ij^2 s_j / (s_j + a),
    coefficients X~' U (S + a)^-1 U' y~. The penalty scale (trace / columns) is the same."""
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
    held_out = targets[:, None] - (targets[:, None] - fitted) / (1.0 - hat)
    dual = eigenvectors @ (projected[:, None] * inverse)  # [n, P]
    coef = counts.T @ dual - np.outer(means, dual.sum(axis=0))
    return _scores(held_out, targets), np.asarray(coef), means, target_mean


def fit_kmer_ridge(sequences, targets, *, ks=DEFAULT_KS, penalties=DEFAULT_PENALTIES
                   ) -> KmerRidge:
    """Fit the baseline, choosing k in `ks` and the penalty factor by leave-one-out CV."""
    sequences = list(sequences)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if len(sequences) != targets.size:
        raise ValueError(f"{len(sequences)} sequences but {targets.size} targets")
    if targets.size < 3:
        raise ConfigurationError("the k-mer baseline needs at least 3 training rows, got "
                                 f"{targets.size}")
    ks, penalties = tuple(int(k) for k in ks), tuple(float(p) for p in penalties)
    if not ks or not penalties:
        raise ConfigurationError("give at least one k-mer length and one penalty")
    factors = np.asarray(penalties, dtype=np.float64)
    cv, best = [], None
    for k in ks:
        counts = kmer_counts(sequences, k)
        solve = _dual_leave_one_out if counts.shape[0] < counts.shape[1] else \
            _primal_leave_one_out
        with np.errstate(divide="ignore", invalid="ignore"):  # k-mers that never vary
            scores, coef, means, target_mean = solve(counts, targets, factors)
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
