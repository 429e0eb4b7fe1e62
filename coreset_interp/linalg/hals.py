"""The primitives of the torch NMF (:mod:`coreset_interp.linalg.nmf`): one HALS sweep over the rows of a
factor, the objective, the stopping rule and the dtype/device handling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

#: Elements of the (rows x d) residual block held at once when the objective is computed.
_ERROR_BLOCK = 1 << 24

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Args:
        dtype: ``float32``, ``float64`` or a torch floating dtype.

    Returns:
        The torch dtype.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"nmf dtype must be one of {sorted(_DTYPES)}, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"nmf dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    return t.to(device=device, dtype=dtype).contiguous()


def hals_rows(m: torch.Tensor, a: torch.Tensor, g: torch.Tensor, violation: bool = False) -> float:
    """One sweep of coordinate descent on the rows of ``m`` for min ||X - m^T F||^2, m >= 0, in place.

    With ``a = F X^T`` (r x n) and ``g = F F^T`` (r x r), row t's minimiser given the others is
    ``max(0, m_t - (g_t m - a_t) / g_tt)``; rows are updated in order, each seeing the new earlier rows.
    A row whose ``g_tt`` is 0 (an all-zero factor row) is left unchanged.

    Args:
        m: (r, n) factor rows, updated in place.
        a: (r, n) cross product.
        g: (r, r) Gram matrix of the other factor.
        violation: also return the sweep's projected-gradient L1 norm (costs one device sync).

    Returns:
        The violation (0.0 unless asked for).
    """
    diag = torch.diagonal(g)
    live = diag != 0
    safe = torch.where(live, diag, torch.ones_like(diag))
    # Row t becomes max(0, a_t / g_tt - sum_{s != t} (g_ts / g_tt) m_s): one matrix-vector product per row.
    # A dead row (g_tt = 0) gets a_t = 0 and the coefficient -1 on itself, which keeps it unchanged.
    a_s = a * (live.to(a.dtype) / safe)[:, None]
    coef = g / safe[:, None]
    coef.fill_diagonal_(0)
    coef[~live] = 0
    dead = torch.nonzero(~live).flatten()
    coef[dead, dead] = -1
    total = m.new_zeros(()) if violation else None
    buf = torch.empty_like(m[0])
    # Views made once: on small problems the per-call overhead of indexing dominates the arithmetic.
    m_rows, a_rows, c_rows = m.unbind(0), a_s.unbind(0), coef.unbind(0)
    for t in range(m.shape[0]):
        if total is not None:
            grad = g[t] @ m - a[t]
            pg = torch.where(m_rows[t] == 0, grad.clamp(max=0), grad)
            total += pg.abs().sum()
        torch.sub(a_rows[t], c_rows[t] @ m, out=buf)
        torch.clamp(buf, min=0, out=m_rows[t])
    return float(total) if total is not None else 0.0


def frobenius_error(x: torch.Tensor, wt: torch.Tensor, h: torch.Tensor) -> float:
    """||X - W H||_F, by blocks of rows, accumulated in float64.

    Args:
        x: (n, d).
        wt: (r, n).
        h: (r, d).

    Returns:
        The Frobenius norm of the residual.
    """
    n, d = x.shape
    rows = max(1, _ERROR_BLOCK // max(1, d))
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for s in range(0, n, rows):
        res = x[s : s + rows] - wt[:, s : s + rows].T @ h
        total += (res * res).sum(dtype=torch.float64)
    return math.sqrt(max(0.0, float(total)))


def _until_converged(step: Callable[[bool], float], max_iter: int, tol: float) -> int:
    """Run ``step(check)`` (one sweep, returning its violation when ``check``) up to ``max_iter`` times,
    stopping when a sweep's violation is at most ``tol`` times the first one's; returns the sweeps done."""
    check = tol > 0
    first = None
    done = 0
    while done < max_iter:
        done += 1
        viol = step(check)
        if check:
            if first is None:
                first = viol
            if first == 0 or viol / first <= tol:
                break
    return done
