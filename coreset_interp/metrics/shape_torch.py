"""The shape metric of :mod:`coreset_interp.metrics.shape` in float64 torch, on any device.

The same code as the numpy path (:mod:`coreset_interp.metrics.shape_core`, with torch kernels): QR
reduction when n < d, whitening in the scatter matrix's eigenbasis with eigenvalues re-measured on the
data, and the nuclear norm of the cross product from the eigenvalues of its Gram matrix when a worst-case
error bound allows it, otherwise from a values-only SVD. Everything stays on the tensor's
device, so on a GPU the per-class eigh/SVD problems never round-trip through the host; only the scalars
(norms, the bound, the distance) are read back.

The numpy path remains the reference (``angular_distance``); ``tests/metrics/test_shape_torch.py`` checks
this one against it and against the golden cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from coreset_interp.metrics import shape_core as core
from coreset_interp.metrics.shape import _as_matrix, _check_alpha

__all__ = [
    "TorchPreparedSide",
    "angular_distance_prepared_torch",
    "angular_distance_torch",
    "prepare_torch",
]


@dataclass(frozen=True, eq=False)
class TorchPreparedSide(core.Side):
    """One side, centred and partially whitened, as a float64 tensor on its device.

    Attributes:
        whitened: (n, k) float64 tensor, the whitened data in its scatter eigenbasis; (n, 0) for a side with
            zero variance.
        norm: its Frobenius norm (0.0 marks zero variance).
        alpha: the partial-whitening weight.
        column_norms: (k,) tensor of the column norms in descending order (see ``PreparedSide``).
    """

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


class TorchOps:
    """The kernels of the torch path (float64 on the tensors' device; only scalars are read back)."""

    @staticmethod
    def centre(X: torch.Tensor) -> torch.Tensor:
        # As in the numpy path: subtracting the first row first makes constant columns exactly zero.
        Xc = X - X[0]
        return Xc - Xc.mean(dim=0)

    @staticmethod
    def qr_r(Xc: torch.Tensor) -> torch.Tensor:
        return torch.linalg.qr(Xc.T, mode="r").R[: Xc.shape[0]].T.contiguous()

    @staticmethod
    def scatter(Xr: torch.Tensor) -> torch.Tensor:
        return Xr.T @ Xr

    @staticmethod
    def eigvecs(scatter: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigh(scatter)[1]

    @staticmethod
    def gram_eigvals(M: torch.Tensor) -> torch.Tensor:
        rows, cols = M.shape
        return torch.linalg.eigvalsh(M.T @ M if cols <= rows else M @ M.T)

    @staticmethod
    def svd_sum(M: torch.Tensor) -> float:
        return float(torch.linalg.svdvals(M).sum())

    sqrt = staticmethod(torch.sqrt)

    @staticmethod
    def col_sq(A: torch.Tensor) -> torch.Tensor:
        return (A * A).sum(dim=0)

    @staticmethod
    def clamp_min(a: torch.Tensor, low: float) -> torch.Tensor:
        return torch.clamp(a, min=low)

    @staticmethod
    def finite(a: torch.Tensor) -> bool:
        return bool(torch.isfinite(a).all())

    @staticmethod
    def any(a: torch.Tensor) -> bool:
        return bool(a.any())

    @staticmethod
    def norm(a: torch.Tensor) -> float:
        return float(torch.linalg.norm(a))

    @staticmethod
    def sort_desc(a: torch.Tensor) -> torch.Tensor:
        return torch.sort(a, descending=True).values

    @staticmethod
    def empty_like_rows(Xc: torch.Tensor) -> torch.Tensor:
        return torch.zeros((Xc.shape[0], 0), dtype=torch.float64, device=Xc.device)

    @staticmethod
    def freeze(a: torch.Tensor) -> torch.Tensor:
        return a

    @staticmethod
    def tobytes(a: torch.Tensor) -> bytes:
        return a.cpu().numpy().tobytes()


_OPS = TorchOps()


def _prepare_valid(X: torch.Tensor, alpha: float) -> TorchPreparedSide:
    return TorchPreparedSide(**core.prepare_fields(_OPS, X, alpha))


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
    core.check_pair(prepared_x, prepared_y, TorchPreparedSide, "prepare_torch")
    if prepared_x.device != prepared_y.device:
        raise ValueError(
            f"prepared sides are on different devices: {prepared_x.device} and {prepared_y.device}"
        )
    return core.distance(_OPS, prepared_x, prepared_y)


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
