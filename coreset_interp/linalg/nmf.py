"""Non-negative matrix factorisation in torch: X (n x d, non-negative) ~ W H with W (n x r), H (r x d) >= 0.

The same problem and algorithm as scikit-learn's ``NMF(init="nndsvda", solver="cd", beta_loss="frobenius")``,
written for torch so that it runs on the job's device:

- initialisation (:func:`nndsvda_init`): NNDSVD (Boutsidis & Gallopoulos 2008) from a randomized truncated SVD
  (Halko et al. 2011, with ``r + 10`` probes and 7 power iterations, 4 when r >= 10 % of the smaller side, as
  scikit-learn), the positive or negative part of each singular pair, whichever has the larger norm product,
  entries below ``eps`` set to the mean of X ("a" = average fill);
- updates (:func:`fit_nmf`): HALS (Cichocki & Phan 2009), the exact coordinate descent of scikit-learn's
  ``cd`` solver: W's columns one after another (Gauss-Seidel), then H's rows, each the closed-form
  non-negative least-squares minimiser given the others;
- stop: after ``max_iter`` sweeps, or when the projected-gradient violation of a sweep falls to ``tol`` times
  that of the first one (scikit-learn's rule; ``tol = 0`` always runs ``max_iter`` sweeps);
- :func:`nnls_hals` (``transform``): W for fixed H, by the same coordinate descent from W = 0.

Both factors are kept as rows (``Wt`` r x n and ``H`` r x d) so that every coordinate update reads and writes
contiguous memory. One sweep needs ``H X^T`` and ``Wt X``; on the CPU it computes both in one pass over X,
block by block (W's updates are separable over rows), so a sweep reads X from memory once; everything else
is O((n + d) r^2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

#: The relative size of an SVD factor's entry below which NNDSVD treats it as zero (scikit-learn's default).
NNDSVD_EPS = 1e-6
#: Bytes of X per block of a fused HALS sweep on the CPU (a block is read once from memory and reused from
#: the cache for both of its products); see :func:`_block_rows`.
SWEEP_BLOCK_BYTES = 8 << 20
#: Below this many elements of X a whole fit or transform runs on one CPU thread: its products are then
#: short kernels too (on 2 busy cores a 1500 x 120 fit of 30 sweeps took 21 s with 2 threads).
SERIAL_ELEMENTS = 1 << 22
#: Elements of the (rows x d) residual block held at once when the objective is computed.
_ERROR_BLOCK = 1 << 24

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@contextmanager
def _serial(x: torch.Tensor) -> Iterator[None]:
    """One CPU thread for the O((n + d) r^2) work (coordinate updates, QR of n x (r + 10) blocks).

    Those are short vector kernels where extra OpenMP threads only synchronise (measured on 2 busy cores:
    a W sweep 0.21 s with 2 threads, 0.007 s with 1; a 63,700 x 20 QR 1.0 s vs 0.026 s); the products
    with X, which stream the whole matrix, keep the caller's thread budget.
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


def randomized_svd(
    x: torch.Tensor, k: int, *, n_oversamples: int = 10, n_iter: int | str = "auto", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated SVD by randomized subspace iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4).

    Args:
        x: (n, d) matrix.
        k: singular triplets to return, 1 <= k <= min(n, d).
        n_oversamples: extra probe vectors.
        n_iter: power iterations; ``auto`` = 7, or 4 when k >= 10 % of min(n, d).
        seed: seed of the Gaussian probes (drawn on the CPU, so every device starts from the same probes).

    Returns:
        (U (n x k), S (k,), V (k x d)), S descending.
    """
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"randomized_svd needs 1 <= k <= min(n, d) = {min(n, d)}, got k={k}")
    if n_iter == "auto":
        n_iter = 7 if k < 0.1 * min(n, d) else 4
    transpose = n < d  # iterate on the smaller side, as scikit-learn

    # a = x^T when transposed; every product is written as x @ . or . @ x, because torch's CPU kernels
    # for a transposed large left operand (x^T @ q) are ~50x slower than (q^T @ x)^T.
    def a_mul(q: torch.Tensor) -> torch.Tensor:
        return (q.T @ x).T if transpose else x @ q

    def at_mul(q: torch.Tensor) -> torch.Tensor:
        return x @ q if transpose else (q.T @ x).T

    cols = n if transpose else d
    probes = min(k + n_oversamples, min(n, d))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    q = torch.randn(cols, probes, generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)

    def orth(y: torch.Tensor) -> torch.Tensor:
        with _serial(y):
            return torch.linalg.qr(y)[0]

    for _ in range(int(n_iter)):
        q = orth(a_mul(q))
        q = orth(at_mul(q))
    q = orth(a_mul(q))
    b = at_mul(q).T
    with _serial(b):
        u_hat, s, vt = torch.linalg.svd(b, full_matrices=False)
    u = q @ u_hat
    if transpose:
        u, vt = vt.T, u.T
    return u[:, :k], s[:k], vt[:k]


def nndsvda_init(
    x: torch.Tensor, r: int, *, seed: int = 0, eps: float = NNDSVD_EPS, svd_n_iter: int | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation with zeros filled by the mean of X (scikit-learn's ``nndsvda``).

    Args:
        x: (n, d) non-negative matrix.
        r: components.
        seed: seed of the randomized SVD.
        eps: entries below this are treated as zero (then filled).
        svd_n_iter: power iterations of the randomized SVD.

    Returns:
        (Wt (r x n), H (r x d)), both non-negative, in x's dtype and device.
    """
    u, s, v = randomized_svd(x, r, n_iter=svd_n_iter, seed=seed)
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


def _block_rows(x: torch.Tensor, block_bytes: int | None) -> int:
    """Rows of X per block of a fused sweep: the whole matrix on a GPU (bandwidth is plentiful there and
    every block costs kernel launches), a cache-sized block on the CPU."""
    n, d = x.shape
    if block_bytes is None:
        block_bytes = 0 if x.device.type != "cpu" else SWEEP_BLOCK_BYTES
    if block_bytes <= 0:
        return max(1, n)
    return max(1, min(n, block_bytes // max(1, d * x.element_size())))


def _sweep(x: torch.Tensor, wt: torch.Tensor, h: torch.Tensor, rows: int, check: bool) -> float:
    """One HALS iteration (W, then H) with a single pass over X.

    W's coordinate updates are separable over rows of X, so they run block by block; each block of X is
    reused for its share of ``Wt X`` and ``Wt Wt^T`` (which the H update needs, with the new W) while it
    is still in the CPU's cache. The result is that of the two-pass order, up to floating-point rounding.
    """
    n = x.shape[0]
    g = h @ h.T
    if rows >= n:
        a = h @ x.T
        with _serial(x):
            viol = hals_rows(wt, a, g, check)
        b, g2 = wt @ x, wt @ wt.T
    else:
        viol = 0.0
        b = torch.zeros_like(h)
        g2 = torch.zeros_like(g)
        # Cache-sized blocks are short kernels too: with 2 threads on 2 cores, 20 sweeps of a 63,700 x 2048
        # class took 62.8 s against 17.1 s with 1 (scripts/bench_nmf.py); CPU parallelism comes from
        # fitting classes side by side (coreset_interp.parallel).
        with _serial(x):
            for s in range(0, n, rows):
                xb = x[s : s + rows]
                wb = wt[:, s : s + rows]
                a = h @ xb.T
                viol += hals_rows(wb, a, g, check)
                b += wb @ xb
                g2 += wb @ wb.T
    with _serial(x):
        return viol + hals_rows(h, b, g2, check)


def _hals(
    x: torch.Tensor,
    wt: torch.Tensor,
    h: torch.Tensor,
    max_iter: int,
    tol: float,
    update_h: bool = True,
    block_bytes: int | None = None,
) -> int:
    """HALS sweeps on (wt, h) in place; returns the number of sweeps done."""
    check = tol > 0
    first = None
    rows = _block_rows(x, block_bytes)
    done = 0
    # H fixed: its products with X are the same every sweep.
    a_w = None if update_h else h @ x.T
    g_w = None if update_h else h @ h.T
    while done < max_iter:
        done += 1
        if update_h:
            viol = _sweep(x, wt, h, rows, check)
        else:
            with _serial(x):
                viol = hals_rows(wt, a_w, g_w, check)
        if check:
            if first is None:
                first = viol
            if first == 0 or viol / first <= tol:
                break
    return done


@dataclass
class TorchNMF:
    """A fitted NMF with scikit-learn's attribute names, so code written for ``sklearn.decomposition.NMF``
    reads it unchanged.

    Attributes:
        components_: H (r x d), numpy, the fit's dtype.
        n_components_: r.
        reconstruction_err_: ||X - W H||_F on the training data.
        n_iter_: sweeps done.
        max_iter: sweeps of :meth:`transform`.
        tol: relative tolerance of :meth:`transform`.
        device: the device it was fitted on (``transform`` runs there when this machine has it, else on
            the CPU: a fit is a cached artifact that a job on another machine may read).
        dtype: ``float32`` or ``float64``.
    """

    components_: np.ndarray
    n_components_: int
    reconstruction_err_: float
    n_iter_: int
    max_iter: int = 200
    tol: float = 0.0
    device: str = "cpu"
    dtype: str = "float32"

    def _device(self, device: torch.device | str | None) -> torch.device:
        if device is not None:
            return torch.device(device)
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        return dev

    def transform(self, x: np.ndarray, device: torch.device | str | None = None) -> np.ndarray:
        """Scores W of new rows with the components fixed (non-negative least squares by HALS from W = 0,
        ``max_iter`` sweeps, as scikit-learn's ``transform``).

        Args:
            x: (m, d) non-negative rows.
            device: where to compute (default: see ``device``).

        Returns:
            W (m x r), numpy, the fit's dtype.
        """
        dev = self._device(device)
        dt = resolve_dtype(self.dtype)
        xt = _as_tensor(x, dev, dt)
        h = torch.as_tensor(self.components_).to(device=dev, dtype=dt)
        return nnls_hals(xt, h, self.max_iter, self.tol).T.cpu().numpy()


def nnls_hals(x: torch.Tensor, h: torch.Tensor, max_iter: int = 200, tol: float = 0.0) -> torch.Tensor:
    """min_W ||X - W H||_F^2 subject to W >= 0, for fixed H.

    Args:
        x: (m, d).
        h: (r, d).
        max_iter: coordinate-descent sweeps.
        tol: stop when a sweep's violation is at most ``tol`` times the first one's (0 = never).

    Returns:
        Wt (r x m).
    """
    wt = torch.zeros(h.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    if x.shape[0] > 0:
        with _serial(x) if x.numel() < SERIAL_ELEMENTS else nullcontext():
            _hals(x, wt, h, max_iter, tol, update_h=False)
    return wt


def fit_nmf(
    x: np.ndarray | torch.Tensor,
    n_components: int,
    *,
    max_iter: int = 200,
    tol: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = "float32",
    block_bytes: int | None = None,
) -> TorchNMF:
    """Fit X ~ W H (Frobenius loss, NNDSVDa initialisation, HALS updates).

    Args:
        x: (n, d) non-negative data.
        n_components: r, 1 <= r <= min(n, d).
        max_iter: HALS sweeps.
        tol: relative tolerance on the projected-gradient violation (0 = always ``max_iter`` sweeps).
        seed: seed of the initial randomized SVD.
        device: where to compute.
        dtype: ``float32`` or ``float64``.
        block_bytes: bytes of X per block of a sweep (None: :data:`SWEEP_BLOCK_BYTES` on the CPU, one
            block on a GPU; 0 = one block).

    Returns:
        The fitted model.
    """
    dt = resolve_dtype(dtype)
    dev = torch.device(device)
    xt = _as_tensor(x, dev, dt)
    if xt.ndim != 2:
        raise ValueError(f"nmf needs a 2-D matrix, got shape {tuple(xt.shape)}")
    n, d = xt.shape
    if not 1 <= n_components <= min(n, d):
        raise ValueError(f"nmf n_components must be in [1, min(n, d) = {min(n, d)}], got {n_components}")
    if max_iter < 1:
        raise ValueError(f"nmf max_iter must be >= 1, got {max_iter}")
    if bool((xt < 0).any()):
        raise ValueError("nmf needs non-negative data (found negative entries)")
    with _serial(xt) if xt.numel() < SERIAL_ELEMENTS else nullcontext():
        wt, h = nndsvda_init(xt, n_components, seed=seed)
        n_iter = _hals(xt, wt, h, max_iter, tol, block_bytes=block_bytes)
        err = frobenius_error(xt, wt, h)
    return TorchNMF(
        components_=h.cpu().numpy(),
        n_components_=int(n_components),
        reconstruction_err_=err,
        n_iter_=int(n_iter),
        max_iter=int(max_iter),
        tol=float(tol),
        device=str(dev),
        dtype=str(dt).replace("torch.", ""),
    )
