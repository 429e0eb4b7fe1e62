"""The shape metric of :mod:`coreset_interp.metrics.shape` in float64 torch, on any device.

Same formula, same shortcuts and the same accuracy safeguards as the numpy path (see that module's
docstring): QR reduction when n < d, whitening in the scatter matrix's eigenbasis with eigenvalues
re-measured on the data, and the nuclear norm of the cross product from the eigenvalues of its Gram matrix
when a worst-case error bound allows it, otherwise from a values-only SVD. Everything stays on the tensor's
device, so on a GPU the per-class eigh/SVD problems never round-trip through the host; only the scalars
(norms, the bound, the distance) are read back.

The numpy path remains the reference (``angular_distance``); ``tests/metrics/test_shape_torch.py`` checks
this one against it and against the golden cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from coreset_interp.metrics.shape import (
    _GRAM_EIGENVALUE_ERROR,
    _GRAM_MIN_SIZE,
    _GRAM_TOLERANCE,
    _NEAR_ZERO_DISTANCE_ERROR,
    _NO_WHITENING_ABOVE,
    EIGENVALUE_FLOOR,
    _as_matrix,
    _check_alpha,
)

__all__ = [
    "TorchPreparedSide",
    "angular_distance_prepared_torch",
    "angular_distance_torch",
    "prepare_torch",
]


@dataclass(frozen=True, eq=False)
class TorchPreparedSide:
    """One side, centred and partially whitened, as a float64 tensor on its device.

    Attributes:
        whitened: (n, k) float64 tensor, the whitened data in its scatter eigenbasis; (n, 0) for a side with
            zero variance.
        norm: its Frobenius norm (0.0 marks zero variance).
        alpha: the partial-whitening weight.
        column_norms: (k,) tensor of the column norms in descending order (see ``PreparedSide``).
    """

    whitened: torch.Tensor = field(repr=False)
    norm: float
    alpha: float
    column_norms: torch.Tensor = field(repr=False)

    @property
    def n_rows(self) -> int:
        """Number of samples (rows)."""
        return int(self.whitened.shape[0])

    @property
    def has_variance(self) -> bool:
        """False when the side is constant across samples."""
        return self.norm > 0.0

    @property
    def device(self) -> torch.device:
        """Device of the prepared tensors."""
        return self.whitened.device


def _to_tensor(X: np.ndarray | torch.Tensor, name: str, device: torch.device | str | None) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        if X.dtype.is_complex or X.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (samples x units), got shape {tuple(X.shape)}")
        n, d = X.shape
        if n < 2:
            raise ValueError(f"{name} needs at least 2 rows (samples) to centre, got {n}")
        if d < 1:
            raise ValueError(f"{name} needs at least 1 column (unit), got shape {tuple(X.shape)}")
        t = X.to(device=device if device is not None else X.device, dtype=torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite entries")
        return t
    arr = _as_matrix(X, name)
    return torch.as_tensor(arr, dtype=torch.float64, device=device)


def _centre(X: torch.Tensor) -> torch.Tensor:
    # As in the numpy path: subtracting the first row first makes constant columns exactly zero.
    Xc = X - X[0]
    return Xc - Xc.mean(dim=0)


def _reduce_columns(Xc: torch.Tensor) -> torch.Tensor:
    n, d = Xc.shape
    if n >= d:
        return Xc
    R = torch.linalg.qr(Xc.T, mode="r").R
    return R[:n].T.contiguous()


def _whiten(Xr: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    if alpha > _NO_WHITENING_ABOVE:
        return Xr, torch.linalg.vector_norm(Xr, dim=0)
    scatter = Xr.T @ Xr
    if not bool(torch.isfinite(scatter).all()):
        raise ValueError("values too large: the scatter matrix overflows float64")
    _, eigvecs = torch.linalg.eigh(scatter)
    rotated = Xr @ eigvecs
    # Eigenvalues re-measured on the data (see the numpy path: accurate like squared singular values).
    eigvals = (rotated * rotated).sum(dim=0)
    weights = alpha + (1.0 - alpha) / torch.sqrt(torch.clamp(eigvals, min=EIGENVALUE_FLOOR))
    rotated = rotated * weights
    return rotated, torch.sqrt(eigvals) * weights


def prepare_torch(
    X: np.ndarray | torch.Tensor, alpha: float = 0.5, device: torch.device | str | None = None
) -> TorchPreparedSide:
    """Centre and partially whiten one representation in float64 torch.

    Args:
        X: (n, d) array or tensor, rows are samples.
        alpha: partial-whitening weight in [0, 1].
        device: where to compute (default: the tensor's device, or the CPU for an array).

    Returns:
        A ``TorchPreparedSide`` (``norm == 0`` for a side constant across samples).

    Raises:
        ValueError: for the same bad inputs as :func:`coreset_interp.metrics.shape.prepare`.
    """
    alpha = _check_alpha(alpha)
    return _prepare_valid(_to_tensor(X, "X", device), alpha)


def _prepare_valid(X: torch.Tensor, alpha: float) -> TorchPreparedSide:
    Xc = _centre(X)
    if not bool(Xc.any()):
        empty = torch.zeros((Xc.shape[0], 0), dtype=torch.float64, device=Xc.device)
        return TorchPreparedSide(whitened=empty, norm=0.0, alpha=alpha, column_norms=empty[0])
    whitened, column_norms = _whiten(_reduce_columns(Xc), alpha)
    norm = float(torch.linalg.norm(whitened))
    if not math.isfinite(norm):
        raise ValueError("values too large: the whitened data's norm overflows float64")
    column_norms = torch.sort(column_norms, descending=True).values
    return TorchPreparedSide(whitened=whitened, norm=norm, alpha=alpha, column_norms=column_norms)


def _canonical_order(
    a: TorchPreparedSide, b: TorchPreparedSide
) -> tuple[TorchPreparedSide, TorchPreparedSide]:
    key_a = (a.whitened.shape[1], a.norm)
    key_b = (b.whitened.shape[1], b.norm)
    if key_a != key_b:
        return (a, b) if key_a < key_b else (b, a)
    bytes_a = a.whitened.cpu().numpy().tobytes()
    bytes_b = b.whitened.cpu().numpy().tobytes()
    return (a, b) if bytes_a <= bytes_b else (b, a)


def _gram_error_bound(singular_values: torch.Tensor) -> float:
    delta = _GRAM_EIGENVALUE_ERROR * float(singular_values.max()) ** 2
    return float(torch.sum(delta / (torch.sqrt(singular_values**2 + delta) + singular_values)))


def _gram_route_promising(norms_a: torch.Tensor, norms_b: torch.Tensor) -> bool:
    width = min(norms_a.numel(), norms_b.numel())
    if width < _GRAM_MIN_SIZE:
        return False
    aligned = norms_a[:width] * norms_b[:width]
    total = float(aligned.sum())
    return total > 0.0 and _gram_error_bound(aligned) <= _GRAM_TOLERANCE * total


def _gram_nuclear_norm(M: torch.Tensor) -> tuple[float, float]:
    rows, cols = M.shape
    gram = M.T @ M if cols <= rows else M @ M.T
    eigvals = torch.linalg.eigvalsh(gram)
    if float(eigvals[-1]) <= 0.0:
        return 0.0, 0.0
    singular_values = torch.sqrt(torch.clamp(eigvals, min=0.0))
    return float(singular_values.sum()), _gram_error_bound(singular_values)


def _svd_nuclear_norm(M: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(M).sum())


def _cosine(first: TorchPreparedSide, second: TorchPreparedSide) -> float:
    cross = first.whitened.T @ second.whitened
    if _gram_route_promising(first.column_norms, second.column_norms):
        nuclear, error_bound = _gram_nuclear_norm(cross)
        cosine = nuclear / first.norm / second.norm
        relative_error = error_bound / nuclear if nuclear > 0.0 else math.inf
        near_zero_limit = _NEAR_ZERO_DISTANCE_ERROR * math.sqrt(2.0 * max(1.0 - cosine, 0.0))
        if relative_error <= min(_GRAM_TOLERANCE, near_zero_limit):
            return cosine
    return _svd_nuclear_norm(cross) / first.norm / second.norm


def angular_distance_prepared_torch(prepared_x: TorchPreparedSide, prepared_y: TorchPreparedSide) -> float:
    """Angular shape distance between two sides prepared by :func:`prepare_torch`.

    Args:
        prepared_x: ``prepare_torch(X, alpha)``.
        prepared_y: ``prepare_torch(Y, alpha)``, same alpha, same samples, same device.

    Returns:
        The distance in radians in [0, pi]; NaN when a side has zero variance.

    Raises:
        ValueError: for a wrong type, different alphas, row counts or devices.
    """
    for name, side in (("prepared_x", prepared_x), ("prepared_y", prepared_y)):
        if not isinstance(side, TorchPreparedSide):
            raise ValueError(
                f"{name} must be a TorchPreparedSide from prepare_torch(), got {type(side).__name__}"
            )
    if prepared_x.alpha != prepared_y.alpha:
        raise ValueError(
            f"prepared sides use different alphas: {prepared_x.alpha!r} and {prepared_y.alpha!r}"
        )
    if prepared_x.n_rows != prepared_y.n_rows:
        raise ValueError(
            f"prepared sides have different row (sample) counts: {prepared_x.n_rows} and {prepared_y.n_rows}"
        )
    if prepared_x.device != prepared_y.device:
        raise ValueError(
            f"prepared sides are on different devices: {prepared_x.device} and {prepared_y.device}"
        )
    if not (prepared_x.has_variance and prepared_y.has_variance):
        return math.nan
    cosine = _cosine(*_canonical_order(prepared_x, prepared_y))
    return math.acos(min(1.0, max(-1.0, cosine)))


def angular_distance_torch(
    X: np.ndarray | torch.Tensor,
    Y: np.ndarray | torch.Tensor,
    alpha: float = 0.5,
    device: torch.device | str | None = None,
) -> float:
    """``angular_distance(X, Y, alpha)`` computed in float64 torch on ``device``.

    Args:
        X: (n, d1) array or tensor.
        Y: (n, d2) array or tensor, the same samples.
        alpha: partial-whitening weight in [0, 1].
        device: where to compute (default: X's device, or the CPU).

    Returns:
        The distance in radians; NaN when a side has zero variance.

    Raises:
        ValueError: for the same bad inputs as ``angular_distance``.
    """
    alpha = _check_alpha(alpha)
    if device is None and isinstance(X, torch.Tensor):
        device = X.device
    Xt = _to_tensor(X, "X", device)
    Yt = _to_tensor(Y, "Y", device)
    if Xt.shape[0] != Yt.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of rows (samples), got {Xt.shape[0]} and {Yt.shape[0]}"
        )
    return angular_distance_prepared_torch(_prepare_valid(Xt, alpha), _prepare_valid(Yt, alpha))
