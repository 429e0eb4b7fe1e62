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

The algorithm itself is :mod:`coreset_interp.metrics.shape_core`, shared with the torch path
(:mod:`coreset_interp.metrics.shape_torch`); this module supplies its numpy/scipy kernels and the checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coreset_interp.metrics import shape_core as core
from coreset_interp.metrics.shape_core import EIGENVALUE_FLOOR

__all__ = ["EIGENVALUE_FLOOR", "PreparedSide", "angular_distance", "angular_distance_prepared", "prepare"]

_OPS = core.NumpyOps()
# The Gram route's tolerance under the name the tests read from here.
_GRAM_TOLERANCE = core.GRAM_TOLERANCE


@dataclass(frozen=True, eq=False)
class PreparedSide(core.Side):
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
    return PreparedSide(**core.prepare_fields(_OPS, X, alpha))


def _gram_nuclear_norm(M: np.ndarray) -> tuple[float, float]:
    """Sum of M's singular values from its Gram matrix and the error bound (see ``shape_core``)."""
    return core.gram_nuclear_norm(_OPS, M)


def _gram_route_promising(norms_a: np.ndarray, norms_b: np.ndarray) -> bool:
    """Whether the Gram route may pass its accuracy check (see ``shape_core``)."""
    return core.gram_route_promising(_OPS, norms_a, norms_b)


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
    core.check_pair(prepared_x, prepared_y, PreparedSide, "prepare")
    return core.distance(_OPS, prepared_x, prepared_y)


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
