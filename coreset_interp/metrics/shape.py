"""Partial-whitening generalized shape metric, angular form.

This is the metric of Williams, Kunz, Kornblith & Linderman, "Generalized Shape Metrics on Neural
Representations" (NeurIPS 2021), with the semantics of their library's ``LinearMetric`` when it is fit
and scored on the same pair (``fit_score``) with ``center_columns=True``, ``zero_pad=True`` and
``score_method="angular"``. The formula and the reference numbers it must reproduce are in
``shared/golden/README.md``. For X of shape (n, d1) and Y of shape (n, d2), rows being the same samples:

1. centre the columns: Xc = X - 1 mean(X);
2. partially whiten from the *unnormalised* scatter matrix Xc^T Xc = V diag(lam) V^T:
   Xw = Xc V diag(alpha + (1 - alpha) / sqrt(max(lam, 1e-7))) V^T, skipped when alpha > 1 - 1e-7;
3. distance = arccos(nuclear_norm(Xw^T Yw) / (||Xw||_F ||Yw||_F)), the cosine clipped to [-1, 1].

The narrower side is not zero-padded: padding adds directions with no data in them, which changes neither
the nuclear norm nor the Frobenius norms, so the cross product is simply formed as a (d1, d2) matrix.

Only singular values are ever needed, and every quantity above is invariant under an orthogonal change of
basis of each side's columns (the nuclear norm of A^T Xw^T Yw B equals that of Xw^T Yw, and so do the
norms). That gives the shortcuts used here:

- the whitened data is kept in its eigenbasis, Xc V diag(w), not rotated back by V^T, and each weight
  uses lam_i = ||Xc v_i||^2 measured on the data, which is more accurate than eigh's eigenvalue;
- when n < d, Xc = R^T Q^T (a QR factorisation of Xc^T) and Xc Q = R^T is an n-column matrix with the
  same scatter spectrum, so the whitening works in n dimensions instead of d;
- the nuclear norm comes from a singular-value-only SVD of the (d1, d2) cross product, or, when a
  worst-case error bound shows it is exact enough (well-conditioned cross products, distances not near 0),
  from the eigenvalues of its smaller Gram matrix, which is about 4x faster at 2048 x 2048.

Accuracy: on the golden cases the cosine matches netrep within 3e-11 (netrep itself is 4e-11 away from a
40-digit evaluation of the formula on the worst case, 040).

``prepare`` does everything that depends on one side only, so a side compared with many others (the
full-data side of a class against many coresets) is whitened once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg import blas

__all__ = ["EIGENVALUE_FLOOR", "PreparedSide", "angular_distance", "angular_distance_prepared", "prepare"]

# netrep clips the scatter eigenvalues at this absolute value (not relative to the largest one).
EIGENVALUE_FLOOR = 1e-7
# Above this alpha netrep does not whiten at all; reproduce the switch exactly.
_NO_WHITENING_ABOVE = 1.0 - 1e-7
# Below this size a values-only SVD is cheap, so the Gram-matrix shortcut is not tried.
_GRAM_MIN_SIZE = 64
# Absolute eigenvalue error assumed for the Gram route, as a multiple of the largest eigenvalue: forming
# M^T M and the symmetric eigensolver are each backward stable with errors of a few eps * ||M||^2.
_GRAM_EIGENVALUE_ERROR = 8.0 * np.finfo(np.float64).eps
# Accept the Gram route when its worst-case relative error on the nuclear norm is below this (the distance
# must match the reference within 1e-9 in cos).
_GRAM_TOLERANCE = 1e-11
# ... and when its worst-case error in the distance itself is below this many radians.
_NEAR_ZERO_DISTANCE_ERROR = 1e-8


@dataclass(frozen=True, eq=False)
class PreparedSide:
    """One side of the comparison, centred and partially whitened, ready to be compared many times.

    Attributes:
        whitened: read-only float64 array of shape (n, k), the centred, partially whitened data expressed
            in the eigenbasis of its scatter matrix (k = min(n, d); an orthogonal change of column basis
            of the whitened data, which leaves the distance unchanged). Shape (n, 0) for a zero-variance side.
        norm: Frobenius norm of ``whitened``; 0.0 marks a side with zero variance after centring.
        alpha: the partial-whitening weight the side was prepared with.
        column_norms: read-only, the column norms of ``whitened`` in descending order. When the side is
            whitened these are exactly its singular values (its columns are orthogonal); without whitening
            they only approximate them. Used to guess the conditioning of a cross product cheaply.
    """

    whitened: np.ndarray = field(repr=False)
    norm: float
    alpha: float
    column_norms: np.ndarray = field(repr=False)

    @property
    def n_rows(self) -> int:
        """Number of samples (rows) of the prepared side."""
        return int(self.whitened.shape[0])

    @property
    def has_variance(self) -> bool:
        """False when the side is constant across samples, so that it has no angle to anything."""
        return self.norm > 0.0


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating):
        raise ValueError(
            f"alpha must be a real number in [0, 1], got {alpha!r} of type {type(alpha).__name__}"
        )
    value = float(alpha)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1], got {value!r}")
    return value


def _as_matrix(X: np.ndarray, name: str) -> np.ndarray:
    """Validate one representation and return it as float64 (possibly the caller's array: never written)."""
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x units), got shape {arr.shape}")
    n, d = arr.shape
    if n < 2:
        raise ValueError(f"{name} needs at least 2 rows (samples) to centre, got {n}")
    if d < 1:
        raise ValueError(f"{name} needs at least 1 column (unit), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr.astype(np.float64, copy=False)


def _centre(X: np.ndarray) -> np.ndarray:
    # Subtracting the first row before the mean makes constant columns exactly zero (a plain mean can be
    # off by one rounding), so "zero variance" is an exact test, and it shrinks large offsets before the
    # mean is taken. Both steps subtract a constant from each column, so the result is still X - mean(X).
    Xc = X - X[0]
    Xc -= Xc.mean(axis=0)
    return Xc


def _reduce_columns(Xc: np.ndarray) -> np.ndarray:
    """Return an (n, min(n, d)) matrix equal to Xc times a matrix with orthonormal columns.

    When n < d the scatter matrix has rank < n, and Xc = R^T Q^T with Q^T Q = I, so R^T carries the same
    scatter spectrum in n columns. Householder QR is backward stable, so the small singular values (which
    whitening amplifies) stay accurate to rounding of the largest one, unlike those taken from a Gram matrix.
    """
    n, d = Xc.shape
    if n >= d:
        return Xc
    # Xc.T is a Fortran-ordered view, so LAPACK factors it in place without a copy.
    (R,) = scipy.linalg.qr(Xc.T, mode="r", overwrite_a=True, check_finite=False)
    return np.ascontiguousarray(R[:n].T)


def _whiten(Xr: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Partially whiten centred data in the eigenbasis of its scatter matrix; also return column norms."""
    if alpha > _NO_WHITENING_ABOVE:
        return Xr, np.sqrt(np.einsum("ij,ij->j", Xr, Xr))
    # dsyrk on the Fortran view of the C-ordered data computes Xr^T Xr (upper triangle) without copies and
    # with half the flops of a general product.
    scatter = blas.dsyrk(1.0, Xr.T, trans=0, lower=0)
    if not np.isfinite(scatter).all():
        raise ValueError("values too large: the scatter matrix overflows float64")
    eigvals, eigvecs = scipy.linalg.eigh(
        scatter, lower=False, overwrite_a=True, check_finite=False, driver="evd"
    )
    rotated = Xr @ eigvecs
    # Re-measure each eigenvalue as the squared norm of Xr v_i (a Rayleigh quotient taken from the data,
    # not from the scatter matrix). eigh's eigenvalues carry an absolute error of ~eps * lam_max, which the
    # 1/sqrt(lam) weights amplify for ill-conditioned data; the re-measured ones are accurate like squared
    # singular values of Xr, which is what brings golden case 040 from ~6e-10 to ~4e-11 in cos.
    eigvals = np.einsum("ij,ij->j", rotated, rotated)
    weights = alpha + (1.0 - alpha) / np.sqrt(np.maximum(eigvals, EIGENVALUE_FLOOR))
    rotated *= weights
    # The final V^T rotation of the formula is dropped: the distance does not see it.
    return rotated, np.sqrt(eigvals) * weights


def prepare(X: np.ndarray, alpha: float = 0.5) -> PreparedSide:
    """Centre and partially whiten one representation once, for many comparisons.

    Args:
        X: array of shape (n, d), rows are samples, columns are units. Any real dtype; computed in float64.
        alpha: partial-whitening weight in [0, 1]; 0 is full whitening (CCA-like), 1 is none (Procrustes).

    Returns:
        A frozen ``PreparedSide``. A side that is constant across samples is returned with ``norm == 0``
        (its distance to anything is NaN), not rejected.

    Raises:
        ValueError: if X is not 2-D, has fewer than 2 rows or no columns, is not real-valued, contains NaN
            or inf, is so large that its scatter matrix overflows, or alpha is outside [0, 1].
    """
    return _prepare_valid(_as_matrix(X, "X"), _check_alpha(alpha))


def _prepare_valid(X: np.ndarray, alpha: float) -> PreparedSide:
    """``prepare`` for input that has already been validated."""
    Xc = _centre(X)
    if not Xc.any():
        empty = np.zeros((Xc.shape[0], 0))
        empty.setflags(write=False)
        return PreparedSide(whitened=empty, norm=0.0, alpha=alpha, column_norms=empty[0])
    whitened, column_norms = _whiten(_reduce_columns(Xc), alpha)
    norm = float(np.linalg.norm(whitened))
    if not math.isfinite(norm):
        raise ValueError("values too large: the whitened data's norm overflows float64")
    column_norms = np.sort(column_norms)[::-1]
    for array in (whitened, column_norms):
        array.setflags(write=False)
    return PreparedSide(whitened=whitened, norm=norm, alpha=alpha, column_norms=column_norms)


def _canonical_order(a: PreparedSide, b: PreparedSide) -> tuple[PreparedSide, PreparedSide]:
    # Rounding in the product and the SVD depends on which side comes first, and arccos turns a 1e-16
    # change of a cosine near 1 into ~1e-8 radians. A fixed order makes d(X, Y) == d(Y, X) exactly.
    key_a = (a.whitened.shape[1], a.norm)
    key_b = (b.whitened.shape[1], b.norm)
    if key_a != key_b:
        return (a, b) if key_a < key_b else (b, a)
    # Same width and norm: only a byte-level tie-break is order independent; equal bytes are equal sides.
    return (a, b) if a.whitened.tobytes() <= b.whitened.tobytes() else (b, a)


def _svd_nuclear_norm(M: np.ndarray) -> float:
    try:
        singular_values = scipy.linalg.svd(M, compute_uv=False, check_finite=False)
    except np.linalg.LinAlgError:
        # The divide-and-conquer driver very rarely fails to converge; QR iteration is the robust fallback.
        singular_values = scipy.linalg.svd(M, compute_uv=False, check_finite=False, lapack_driver="gesvd")
    return float(singular_values.sum())


def _gram_error_bound(singular_values: np.ndarray) -> float:
    """Worst-case error of sum(singular_values) when they come from eigenvalues of the Gram matrix."""
    delta = _GRAM_EIGENVALUE_ERROR * float(singular_values.max()) ** 2
    # sqrt(mu + delta) - sqrt(mu) = delta / (sqrt(mu + delta) + sqrt(mu)), summed as if all errors aligned.
    return float(np.sum(delta / (np.sqrt(singular_values**2 + delta) + singular_values)))


def _gram_route_promising(norms_a: np.ndarray, norms_b: np.ndarray) -> bool:
    """Cheap guess whether the Gram route will pass its accuracy check for the cross product of two sides.

    The products of the two sides' singular values (sorted alike) are the cross product's singular values
    when the sides are aligned; misalignment only spreads them further (Horn's inequalities). If even
    those fail the bound, computing the Gram matrix and its eigenvalues would be wasted work.
    """
    width = min(norms_a.size, norms_b.size)
    if width < _GRAM_MIN_SIZE:
        return False
    aligned = norms_a[:width] * norms_b[:width]
    total = float(aligned.sum())
    return total > 0.0 and _gram_error_bound(aligned) <= _GRAM_TOLERANCE * total


def _gram_nuclear_norm(M: np.ndarray) -> tuple[float, float]:
    """Sum of the singular values of M from its smaller Gram matrix, and a worst-case bound on its error.

    A values-only SVD spends most of its time in a memory-bound bidiagonalisation (~3.5 s for 2048 x 2048
    on one core); the Gram matrix plus a symmetric eigensolver takes about a quarter of that. But each Gram
    eigenvalue mu_i carries an absolute error of order eps * mu_max, so sqrt(mu_i) is only accurate for
    singular values well above sqrt(eps) * sigma_max; the caller decides from the bound whether to trust it.
    """
    rows, cols = M.shape
    # M is C-ordered, so M.T is its Fortran view: syrk forms M^T M (trans=0) or M M^T (trans=1) in place.
    gram = blas.dsyrk(1.0, M.T, trans=0 if cols <= rows else 1, lower=0)
    eigvals = scipy.linalg.eigvalsh(gram, lower=False, overwrite_a=True, check_finite=False, driver="evd")
    if float(eigvals[-1]) <= 0.0:
        return 0.0, 0.0
    singular_values = np.sqrt(np.maximum(eigvals, 0.0))
    return float(singular_values.sum()), _gram_error_bound(singular_values)


def _cosine(first: PreparedSide, second: PreparedSide) -> float:
    """Cosine of the angular distance between two sides with variance, in canonical order."""
    cross = first.whitened.T @ second.whitened
    if _gram_route_promising(first.column_norms, second.column_norms):
        nuclear, error_bound = _gram_nuclear_norm(cross)
        # Divide one norm at a time so that very large sides cannot overflow the denominator.
        cosine = nuclear / first.norm / second.norm
        relative_error = error_bound / nuclear if nuclear > 0.0 else math.inf
        # arccos amplifies an error in cos by 1 / sin(d), which is large for nearly equivalent sides: there
        # the Gram route must be exact to ~1e-8 rad as well, which in practice sends such pairs to the SVD.
        near_zero_limit = _NEAR_ZERO_DISTANCE_ERROR * math.sqrt(2.0 * max(1.0 - cosine, 0.0))
        if relative_error <= min(_GRAM_TOLERANCE, near_zero_limit):
            return cosine
    return _svd_nuclear_norm(cross) / first.norm / second.norm


def angular_distance_prepared(prepared_x: PreparedSide, prepared_y: PreparedSide) -> float:
    """Angular shape distance between two prepared sides.

    Equal to ``angular_distance(X, Y, alpha)`` for ``prepare(X, alpha)`` and ``prepare(Y, alpha)``.

    Args:
        prepared_x: ``prepare(X, alpha)``.
        prepared_y: ``prepare(Y, alpha)`` with the same alpha and the same samples (rows) as X.

    Returns:
        The distance in radians, in [0, pi] (in practice [0, pi/2]); NaN when either side has zero variance
        after centring, because such a side has no angle.

    Raises:
        ValueError: if an argument is not a ``PreparedSide``, the alphas differ or the row counts differ.
    """
    for name, side in (("prepared_x", prepared_x), ("prepared_y", prepared_y)):
        if not isinstance(side, PreparedSide):
            raise ValueError(f"{name} must be a PreparedSide from prepare(), got {type(side).__name__}")
    if prepared_x.alpha != prepared_y.alpha:
        raise ValueError(
            f"prepared sides use different alphas: {prepared_x.alpha!r} and {prepared_y.alpha!r}"
        )
    if prepared_x.n_rows != prepared_y.n_rows:
        raise ValueError(
            f"prepared sides have different row (sample) counts: {prepared_x.n_rows} and {prepared_y.n_rows}"
        )
    if not (prepared_x.has_variance and prepared_y.has_variance):
        return math.nan
    cosine = _cosine(*_canonical_order(prepared_x, prepared_y))
    return math.acos(min(1.0, max(-1.0, cosine)))


def angular_distance(X: np.ndarray, Y: np.ndarray, alpha: float = 0.5) -> float:
    """Partial-whitening generalized shape distance of Williams et al. (2021), angular form.

    Args:
        X: array of shape (n, d1), rows are samples, columns are units.
        Y: array of shape (n, d2), the same n samples in the same order; d2 may differ from d1.
        alpha: partial-whitening weight in [0, 1]; 0 is full whitening (CCA-like, invariant to invertible
            linear maps), 1 is none (Procrustes, invariant to rotations and reflections). At values in
            between the distance depends on the scale of the data and on n, as in netrep.

    Returns:
        The distance in radians, in [0, pi] (in practice [0, pi/2], since the alignment is fit on the same
        pair). NaN when X or Y has zero variance after centring (e.g. all-zero or constant maps): such a
        side has no angle, and callers count it as missing rather than as a number.

    Raises:
        ValueError: if X or Y is not 2-D, the row counts differ, there are fewer than 2 rows, an entry is
            NaN or inf, the data is not real-valued, or alpha is outside [0, 1].
    """
    alpha = _check_alpha(alpha)
    X = _as_matrix(X, "X")
    Y = _as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (samples), got {X.shape[0]} and {Y.shape[0]}"
        )
    return angular_distance_prepared(_prepare_valid(X, alpha), _prepare_valid(Y, alpha))
