"""The shape metric's algorithm, written once for numpy and for torch arrays.

:mod:`coreset_interp.metrics.shape` (numpy/scipy, the reference) and :mod:`coreset_interp.metrics.shape_torch`
(float64 torch on any device) both run these functions; they differ only in an ``ops`` object that supplies
the handful of kernels whose calls differ (QR, the scatter product, eigh, values-only SVD, sorting, bytes).
Everything else (the arithmetic of the whitening weights, the Gram route's error bound and the decision
rule, the canonical order, arccos) is the same code, so the two paths cannot drift apart. The formula and
its shortcuts are described in :mod:`coreset_interp.metrics.shape`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg import blas

# netrep clips the scatter eigenvalues at this absolute value (not relative to the largest one).
EIGENVALUE_FLOOR = 1e-7
# Above this alpha netrep does not whiten at all; reproduce the switch exactly.
NO_WHITENING_ABOVE = 1.0 - 1e-7
# Below this size a values-only SVD is cheap, so the Gram-matrix shortcut is not tried.
GRAM_MIN_SIZE = 64
# Absolute eigenvalue error assumed for the Gram route, as a multiple of the largest eigenvalue: forming
# M^T M and the symmetric eigensolver are each backward stable with errors of a few eps * ||M||^2.
GRAM_EIGENVALUE_ERROR = 8.0 * np.finfo(np.float64).eps
# Accept the Gram route when its worst-case relative error on the nuclear norm is below this (the distance
# must match the reference within 1e-9 in cos).
GRAM_TOLERANCE = 1e-11
# ... and when its worst-case error in the distance itself is below this many radians.
NEAR_ZERO_DISTANCE_ERROR = 1e-8


@dataclass(frozen=True, eq=False)
class Side:
    """A prepared side of either backend: the fields and properties ``PreparedSide`` (numpy) and
    ``TorchPreparedSide`` (torch) share; each backend's subclass documents its array type."""

    whitened: Any = field(repr=False)
    norm: float
    alpha: float
    column_norms: Any = field(repr=False)

    @property
    def n_rows(self) -> int:
        """Number of samples (rows) of the prepared side."""
        return int(self.whitened.shape[0])

    @property
    def has_variance(self) -> bool:
        """False when the side is constant across samples, so that it has no angle to anything."""
        return self.norm > 0.0


class NumpyOps:
    """The kernels of the numpy path (scipy LAPACK/BLAS, float64, no copies where LAPACK allows)."""

    @staticmethod
    def centre(X: np.ndarray) -> np.ndarray:
        # Subtracting the first row before the mean makes constant columns exactly zero (a plain mean can
        # be off by one rounding), so "zero variance" is an exact test, and it shrinks large offsets.
        Xc = X - X[0]
        Xc -= Xc.mean(axis=0)
        return Xc

    @staticmethod
    def qr_r(Xc: np.ndarray) -> np.ndarray:
        """R of Xc^T = Q R, first n rows transposed (n x n). Xc.T is a Fortran view: LAPACK works in place."""
        (R,) = scipy.linalg.qr(Xc.T, mode="r", overwrite_a=True, check_finite=False)
        return np.ascontiguousarray(R[: Xc.shape[0]].T)

    @staticmethod
    def scatter(Xr: np.ndarray) -> np.ndarray:
        # dsyrk on the Fortran view of the C-ordered data computes Xr^T Xr (upper triangle) without copies
        # and with half the flops of a general product.
        return blas.dsyrk(1.0, Xr.T, trans=0, lower=0)

    @staticmethod
    def eigvecs(scatter: np.ndarray) -> np.ndarray:
        return scipy.linalg.eigh(scatter, lower=False, overwrite_a=True, check_finite=False, driver="evd")[1]

    @staticmethod
    def gram_eigvals(M: np.ndarray) -> np.ndarray:
        rows, cols = M.shape
        # M is C-ordered, so M.T is its Fortran view: syrk forms M^T M (trans=0) or M M^T (trans=1).
        gram = blas.dsyrk(1.0, M.T, trans=0 if cols <= rows else 1, lower=0)
        return scipy.linalg.eigvalsh(gram, lower=False, overwrite_a=True, check_finite=False, driver="evd")

    @staticmethod
    def svd_sum(M: np.ndarray) -> float:
        try:
            singular_values = scipy.linalg.svd(M, compute_uv=False, check_finite=False)
        except np.linalg.LinAlgError:
            # The divide-and-conquer driver very rarely fails to converge; QR iteration is the fallback.
            singular_values = scipy.linalg.svd(M, compute_uv=False, check_finite=False, lapack_driver="gesvd")
        return float(singular_values.sum())

    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def col_sq(A: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->j", A, A)

    @staticmethod
    def clamp_min(a: np.ndarray, low: float) -> np.ndarray:
        return np.maximum(a, low)

    @staticmethod
    def finite(a: np.ndarray) -> bool:
        return bool(np.isfinite(a).all())

    @staticmethod
    def any(a: np.ndarray) -> bool:
        return bool(a.any())

    @staticmethod
    def norm(a: np.ndarray) -> float:
        return float(np.linalg.norm(a))

    @staticmethod
    def sort_desc(a: np.ndarray) -> np.ndarray:
        return np.sort(a)[::-1]

    @staticmethod
    def empty_like_rows(Xc: np.ndarray) -> np.ndarray:
        return np.zeros((Xc.shape[0], 0))

    @staticmethod
    def freeze(a: np.ndarray) -> np.ndarray:
        a.setflags(write=False)
        return a

    @staticmethod
    def tobytes(a: np.ndarray) -> bytes:
        return a.tobytes()


def whiten(ops: Any, Xr: Any, alpha: float) -> tuple[Any, Any]:
    """Partially whiten centred data in the eigenbasis of its scatter matrix; also return column norms.

    Args:
        ops: the backend's kernels.
        Xr: centred (n, k) data, k <= n.
        alpha: partial-whitening weight.

    Returns:
        (whitened data in the eigenbasis, its column norms).
    """
    if alpha > NO_WHITENING_ABOVE:
        return Xr, ops.sqrt(ops.col_sq(Xr))
    scatter = ops.scatter(Xr)
    if not ops.finite(scatter):
        raise ValueError("values too large: the scatter matrix overflows float64")
    rotated = Xr @ ops.eigvecs(scatter)
    # Re-measure each eigenvalue as the squared norm of Xr v_i (a Rayleigh quotient taken from the data,
    # not from the scatter matrix). eigh's eigenvalues carry an absolute error of ~eps * lam_max, which the
    # 1/sqrt(lam) weights amplify for ill-conditioned data; the re-measured ones are accurate like squared
    # singular values of Xr, which is what brings golden case 040 from ~6e-10 to ~4e-11 in cos.
    eigvals = ops.col_sq(rotated)
    weights = alpha + (1.0 - alpha) / ops.sqrt(ops.clamp_min(eigvals, EIGENVALUE_FLOOR))
    rotated *= weights
    # The final V^T rotation of the formula is dropped: the distance does not see it.
    return rotated, ops.sqrt(eigvals) * weights


def prepare_fields(ops: Any, X: Any, alpha: float) -> dict[str, Any]:
    """The fields of a prepared side (whitened, norm, alpha, column_norms) of validated float64 data.

    Args:
        ops: the backend's kernels.
        X: (n, d) float64 data.
        alpha: partial-whitening weight.

    Returns:
        The prepared side's fields; ``norm == 0`` for a side constant across samples.
    """
    Xc = ops.centre(X)
    if not ops.any(Xc):
        empty = ops.freeze(ops.empty_like_rows(Xc))
        return {"whitened": empty, "norm": 0.0, "alpha": alpha, "column_norms": empty[0]}
    n, d = Xc.shape
    # When n < d, Xc = R^T Q^T (QR of Xc^T) and R^T has the same scatter spectrum in n columns.
    whitened, column_norms = whiten(ops, Xc if n >= d else ops.qr_r(Xc), alpha)
    norm = ops.norm(whitened)
    if not math.isfinite(norm):
        raise ValueError("values too large: the whitened data's norm overflows float64")
    column_norms = ops.sort_desc(column_norms)
    return {
        "whitened": ops.freeze(whitened),
        "norm": norm,
        "alpha": alpha,
        "column_norms": ops.freeze(column_norms),
    }


def check_pair(x: Side, y: Side, cls: type, made_by: str) -> None:
    """Reject two prepared sides that cannot be compared, in one line.

    Args:
        x: ``prepared_x``.
        y: ``prepared_y``.
        cls: the side class of the calling backend.
        made_by: the function that makes ``cls`` (for the message).

    Raises:
        ValueError: for a side of another class, different alphas or different row counts.
    """
    for name, side in (("prepared_x", x), ("prepared_y", y)):
        if not isinstance(side, cls):
            raise ValueError(f"{name} must be a {cls.__name__} from {made_by}(), got {type(side).__name__}")
    if x.alpha != y.alpha:
        raise ValueError(f"prepared sides use different alphas: {x.alpha!r} and {y.alpha!r}")
    if x.n_rows != y.n_rows:
        raise ValueError(f"prepared sides have different row (sample) counts: {x.n_rows} and {y.n_rows}")


def canonical_order(ops: Any, a: Side, b: Side) -> tuple[Side, Side]:
    """The two sides in a fixed order, so that d(X, Y) == d(Y, X) exactly.

    Rounding in the product and the SVD depends on which side comes first, and arccos turns a 1e-16 change
    of a cosine near 1 into ~1e-8 radians.
    """
    key_a = (a.whitened.shape[1], a.norm)
    key_b = (b.whitened.shape[1], b.norm)
    if key_a != key_b:
        return (a, b) if key_a < key_b else (b, a)
    # Same width and norm: only a byte-level tie-break is order independent; equal bytes are equal sides.
    return (a, b) if ops.tobytes(a.whitened) <= ops.tobytes(b.whitened) else (b, a)


def gram_error_bound(ops: Any, singular_values: Any) -> float:
    """Worst-case error of sum(singular_values) when they come from eigenvalues of the Gram matrix."""
    delta = GRAM_EIGENVALUE_ERROR * float(singular_values.max()) ** 2
    # sqrt(mu + delta) - sqrt(mu) = delta / (sqrt(mu + delta) + sqrt(mu)), summed as if all errors aligned.
    return float((delta / (ops.sqrt(singular_values**2 + delta) + singular_values)).sum())


def gram_route_promising(ops: Any, norms_a: Any, norms_b: Any) -> bool:
    """Cheap guess whether the Gram route will pass its accuracy check for the cross product of two sides.

    The products of the two sides' singular values (sorted alike) are the cross product's singular values
    when the sides are aligned; misalignment only spreads them further (Horn's inequalities). If even
    those fail the bound, computing the Gram matrix and its eigenvalues would be wasted work.
    """
    width = min(len(norms_a), len(norms_b))
    if width < GRAM_MIN_SIZE:
        return False
    aligned = norms_a[:width] * norms_b[:width]
    total = float(aligned.sum())
    return total > 0.0 and gram_error_bound(ops, aligned) <= GRAM_TOLERANCE * total


def gram_nuclear_norm(ops: Any, M: Any) -> tuple[float, float]:
    """Sum of the singular values of M from its smaller Gram matrix, and a worst-case bound on its error.

    A values-only SVD spends most of its time in a memory-bound bidiagonalisation (~3.5 s for 2048 x 2048
    on one core); the Gram matrix plus a symmetric eigensolver takes about a quarter of that. But each Gram
    eigenvalue mu_i carries an absolute error of order eps * mu_max, so sqrt(mu_i) is only accurate for
    singular values well above sqrt(eps) * sigma_max; the caller decides from the bound whether to trust it.
    """
    eigvals = ops.gram_eigvals(M)
    if float(eigvals[-1]) <= 0.0:
        return 0.0, 0.0
    singular_values = ops.sqrt(ops.clamp_min(eigvals, 0.0))
    return float(singular_values.sum()), gram_error_bound(ops, singular_values)


def cosine(ops: Any, first: Side, second: Side) -> float:
    """Cosine of the angular distance between two sides with variance, in canonical order."""
    cross = first.whitened.T @ second.whitened
    if gram_route_promising(ops, first.column_norms, second.column_norms):
        nuclear, error_bound = gram_nuclear_norm(ops, cross)
        # Divide one norm at a time so that very large sides cannot overflow the denominator.
        value = nuclear / first.norm / second.norm
        relative_error = error_bound / nuclear if nuclear > 0.0 else math.inf
        # arccos amplifies an error in cos by 1 / sin(d), which is large for nearly equivalent sides: there
        # the Gram route must be exact to ~1e-8 rad as well, which in practice sends such pairs to the SVD.
        near_zero_limit = NEAR_ZERO_DISTANCE_ERROR * math.sqrt(2.0 * max(1.0 - value, 0.0))
        if relative_error <= min(GRAM_TOLERANCE, near_zero_limit):
            return value
    return ops.svd_sum(cross) / first.norm / second.norm


def distance(ops: Any, x: Side, y: Side) -> float:
    """The angular distance of two validated prepared sides (NaN when one has zero variance).

    Args:
        ops: the backend's kernels.
        x: one side.
        y: the other (same alpha, rows and device).

    Returns:
        The distance in radians.
    """
    if not (x.norm > 0.0 and y.norm > 0.0):
        return math.nan
    value = cosine(ops, *canonical_order(ops, x, y))
    return math.acos(min(1.0, max(-1.0, value)))
