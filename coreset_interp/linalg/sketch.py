"""Randomized range sketches of a matrix and the NMF initialisation built on one (NNDSVDa).

A sketch ``X ~ Q B`` (Q n x k orthonormal columns, B = Q^T X, k x d) is computed by randomized subspace
iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4) as in scikit-learn's ``randomized_svd``; its SVD gives
the truncated SVD of X, and :func:`coreset_interp.linalg.nmf.fit_nmf` reuses the same sketch as the
compressed data of its updates (Erichson et al. 2018), so the sketch is paid for once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: The relative size of an SVD factor's entry below which NNDSVD treats it as zero (scikit-learn's default).
NNDSVD_EPS = 1e-6


@contextmanager
def serial(x: torch.Tensor) -> Iterator[None]:
    """One CPU thread for the O((n + d) r^2) work (coordinate updates, QR of n x (r + 10) blocks).

    Those are short vector kernels where extra OpenMP threads only synchronise (measured on 2 busy cores:
    a W sweep 0.21 s with 2 threads, 0.007 s with 1; a 63,700 x 20 QR 1.0 s vs 0.026 s); the products
    with X, which stream the whole matrix, keep the caller's thread budget.

    Args:
        x: a tensor on the device of the work (nothing changes off the CPU).
    """
    before = torch.get_num_threads()
    if x.device.type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def auto_power_iterations(k: int, n: int, d: int) -> int:
    """Args:
        k: singular triplets wanted.
        n: rows.
        d: columns.

    Returns:
        scikit-learn's ``n_iter="auto"``: 7, or 4 when k >= 10 % of min(n, d).
    """
    return 7 if k < 0.1 * min(n, d) else 4


def range_sketch(
    x: torch.Tensor, probes: int, *, n_iter: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """An orthonormal basis Q of X's dominant column space and B = Q^T X, by subspace iteration.

    Args:
        x: (n, d) matrix.
        probes: columns of Q, 1 <= probes <= min(n, d).
        n_iter: power iterations.
        seed: seed of the Gaussian probes (drawn on the CPU, so every device starts from the same probes).

    Returns:
        (Q (n x probes), B (probes x d)), so that X ~ Q B.
    """
    n, d = x.shape
    transpose = n < d  # iterate on the smaller side, as scikit-learn

    # a = x^T when transposed; every product is written as x @ . or . @ x, because torch's CPU kernels
    # for a transposed large left operand (x^T @ q) are ~50x slower than (q^T @ x)^T.
    def a_mul(q: torch.Tensor) -> torch.Tensor:
        return (q.T @ x).T if transpose else x @ q

    def at_mul(q: torch.Tensor) -> torch.Tensor:
        return x @ q if transpose else (q.T @ x).T

    cols = n if transpose else d
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    q = torch.randn(cols, probes, generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)

    def orth(y: torch.Tensor) -> torch.Tensor:
        with serial(y):
            return torch.linalg.qr(y)[0]

    for _ in range(int(n_iter)):
        q = orth(a_mul(q))
        q = orth(at_mul(q))
    q = orth(a_mul(q))
    b = at_mul(q).T
    if transpose:
        # Here q spans X's row space: X ~ B^T Q^T = V S (Q U)^T with B = U S V^T; return the column-space
        # form X ~ Q' B' with Q' = V and B' = S (Q U)^T.
        u_hat, s, vt = _svd(b)
        return vt.T.contiguous(), (s[:, None] * (q @ u_hat).T).contiguous()
    return q, b.contiguous()


def _svd(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with serial(b):
        return torch.linalg.svd(b, full_matrices=False)


def randomized_svd(
    x: torch.Tensor,
    k: int,
    *,
    n_oversamples: int = 10,
    n_iter: int | str = "auto",
    seed: int = 0,
    sketch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated SVD by randomized subspace iteration (scikit-learn's ``randomized_svd``).

    Args:
        x: (n, d) matrix.
        k: singular triplets to return, 1 <= k <= min(n, d).
        n_oversamples: extra probe vectors.
        n_iter: power iterations; ``auto`` = 7, or 4 when k >= 10 % of min(n, d).
        seed: seed of the Gaussian probes.
        sketch: a precomputed :func:`range_sketch` (Q, B) of x with at least k columns (then the other
            arguments but ``k`` are not used).

    Returns:
        (U (n x k), S (k,), V (k x d)), S descending.
    """
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"randomized_svd needs 1 <= k <= min(n, d) = {min(n, d)}, got k={k}")
    if sketch is None:
        iters = auto_power_iterations(k, n, d) if n_iter == "auto" else int(n_iter)
        sketch = range_sketch(x, min(k + n_oversamples, min(n, d)), n_iter=iters, seed=seed)
    q, b = sketch
    u_hat, s, vt = _svd(b)
    return (q @ u_hat)[:, :k], s[:k], vt[:k]


def nndsvda_init(
    x: torch.Tensor,
    r: int,
    *,
    seed: int = 0,
    eps: float = NNDSVD_EPS,
    svd_n_iter: int | str = "auto",
    sketch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation with zeros filled by the mean of X (scikit-learn's ``nndsvda``).

    Args:
        x: (n, d) non-negative matrix.
        r: components.
        seed: seed of the randomized SVD.
        eps: entries below this are treated as zero (then filled).
        svd_n_iter: power iterations of the randomized SVD.
        sketch: a precomputed :func:`range_sketch` of x with at least r columns.

    Returns:
        (Wt (r x n), H (r x d)), both non-negative, in x's dtype and device.
    """
    u, s, v = randomized_svd(x, r, n_iter=svd_n_iter, seed=seed, sketch=sketch)
    u, v = u.T, v  # rows = components
    up, un = u.clamp(min=0), (-u).clamp(min=0)
    vp, vn = v.clamp(min=0), (-v).clamp(min=0)
    up_n, un_n = torch.linalg.vector_norm(up, dim=1), torch.linalg.vector_norm(un, dim=1)
    vp_n, vn_n = torch.linalg.vector_norm(vp, dim=1), torch.linalg.vector_norm(vn, dim=1)
    m_p, m_n = up_n * vp_n, un_n * vn_n
    positive = (m_p > m_n)[:, None]
    # The dominant pair's norms are > 0 whenever its product is; 0/0 in the other branch is discarded.
    wu = torch.where(positive, up / up_n[:, None], un / un_n[:, None])
    hv = torch.where(positive, vp / vp_n[:, None], vn / vn_n[:, None])
    sigma = torch.where(positive[:, 0], m_p, m_n)
    lbd = torch.sqrt(s * sigma)[:, None]
    wt = torch.nan_to_num(lbd * wu)
    h = torch.nan_to_num(lbd * hv)
    # The leading singular pair of a non-negative matrix is non-negative up to its sign.
    wt[0] = torch.sqrt(s[0]) * u[0].abs()
    h[0] = torch.sqrt(s[0]) * v[0].abs()
    wt[wt < eps] = 0
    h[h < eps] = 0
    avg = x.mean(dtype=torch.float64).to(x.dtype)
    wt[wt == 0] = avg
    h[h == 0] = avg
    return wt.contiguous(), h.contiguous()
