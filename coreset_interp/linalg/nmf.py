"""Non-negative matrix factorisation in torch: X (n x d, non-negative) ~ W H with W (n x r), H (r x d) >= 0.

The problem and initialisation of scikit-learn's ``NMF(init="nndsvda", solver="cd", beta_loss="frobenius")``,
written for torch so that it runs on the job's device:

- initialisation (:func:`nndsvda_init`): NNDSVD (Boutsidis & Gallopoulos 2008) from a randomized truncated SVD
  (Halko et al. 2011, with ``r + 10`` probes and 7 power iterations, 4 when r >= 10 % of the smaller side, as
  scikit-learn), the positive or negative part of each singular pair, whichever has the larger norm product,
  entries below ``eps`` set to the mean of X ("a" = average fill);
- updates (:func:`fit_nmf`): HALS (Cichocki & Phan 2009), the coordinate descent of scikit-learn's ``cd``
  solver: W's columns one after another (Gauss-Seidel), then H's rows, each the closed-form non-negative
  least-squares minimiser given the others. Two solvers (``solver``):

  - ``sketched`` (the default on a CPU): HALS on the rank-k sketch X ~ Q B (k = r + 10) that the
    initialisation's randomized SVD computes anyway (randomized HALS, Erichson et al. 2018). A sweep is
    then O((n + d) k r) instead of two passes over X: on this machine's 2 cores a 63,700 x 2048 class
    (r = 10, 200 sweeps) is dominated by the sketch's 16 products with X (``scripts/bench_nmf.py``);
  - ``hals`` (the default on a GPU): HALS on X itself. Its products ``H X^T`` and ``Wt X`` (r = 10 rows)
    are skinny GEMMs that run at 3-5 GB/s here, against ~15 GB/s of memory bandwidth, so a sweep costs
    ~0.25 s however it is blocked; on the CPU it computes both in one pass over X, block by block (W's
    updates are separable over rows).

  The reported objective is ||X - W H||_F on X itself for both;
- stop: after ``max_iter`` sweeps, or when the projected-gradient violation of a sweep falls to ``tol`` times
  that of the first one (scikit-learn's rule; ``tol = 0`` always runs ``max_iter`` sweeps);
- :func:`nnls_hals` (``transform``): W for fixed H, by the same coordinate descent from W = 0 on X itself.

Both factors are kept as rows (``Wt`` r x n and ``H`` r x d): every coordinate update is contiguous.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from coreset_interp.linalg.hals import (
    _as_tensor,
    _until_converged,
    frobenius_error,
    hals_rows,
    resolve_dtype,
)
from coreset_interp.linalg.sketch import (
    auto_power_iterations,
    nndsvda_init,
    randomized_svd,
    range_sketch,
    serial,
)

__all__ = [
    "SOLVERS",
    "TorchNMF",
    "default_solver",
    "fit_nmf",
    "frobenius_error",
    "hals_rows",
    "nndsvda_init",
    "nnls_hals",
    "randomized_svd",
    "resolve_dtype",
]

#: ``sketched``: HALS on the rank-k sketch X ~ Q B of the initialisation (k = r + 10), each
#: sweep O((n + d) k r); ``hals``: HALS on X itself, each sweep two passes of O(n d r) over X.
SOLVERS = ("sketched", "hals")


def default_solver(device: torch.device | str) -> str:
    """``hals`` on a GPU (its products with X run at memory bandwidth there), else ``sketched``.

    Args:
        device: where the fit runs.

    Returns:
        The solver name.
    """
    return "hals" if torch.device(device).type == "cuda" else "sketched"


#: Extra sketch columns beyond r (scikit-learn's randomized SVD uses 10; the initialisation then equals
#: the ``hals`` solver's).
SKETCH_OVERSAMPLES = 10
#: Bytes of X per block of a fused HALS sweep on the CPU (a block is read once from memory and reused from
#: the cache for both of its products); see :func:`_block_rows`.
SWEEP_BLOCK_BYTES = 8 << 20
#: Below this many elements of X a whole fit or transform runs on one CPU thread: its products are then
#: short kernels too (on 2 busy cores a 1500 x 120 fit of 30 sweeps took 21 s with 2 threads).
SERIAL_ELEMENTS = 1 << 22


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
        with serial(x):
            viol = hals_rows(wt, a, g, check)
        b, g2 = wt @ x, wt @ wt.T
    else:
        viol = 0.0
        b = torch.zeros_like(h)
        g2 = torch.zeros_like(g)
        # Cache-sized blocks are short kernels too: with 2 threads on 2 cores, 20 sweeps of a 63,700 x 2048
        # class took 62.8 s against 17.1 s with 1 (scripts/bench_nmf.py); CPU parallelism comes from
        # fitting classes side by side (coreset_interp.parallel).
        with serial(x):
            for s in range(0, n, rows):
                xb = x[s : s + rows]
                wb = wt[:, s : s + rows]
                a = h @ xb.T
                viol += hals_rows(wb, a, g, check)
                b += wb @ xb
                g2 += wb @ wb.T
    with serial(x):
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
    """HALS sweeps on (wt, h) in place on X itself; returns the number of sweeps done."""
    if update_h:
        rows = _block_rows(x, block_bytes)
        return _until_converged(lambda check: _sweep(x, wt, h, rows, check), max_iter, tol)
    # H fixed: its products with X are the same every sweep.
    a_w, g_w = h @ x.T, h @ h.T

    def step(check: bool) -> float:
        with serial(x):
            return hals_rows(wt, a_w, g_w, check)

    return _until_converged(step, max_iter, tol)


def _hals_sketched(
    q: torch.Tensor, b: torch.Tensor, wt: torch.Tensor, h: torch.Tensor, max_iter: int, tol: float
) -> int:
    """HALS sweeps on (wt, h) in place for the sketch X^ = Q B of X (randomized HALS, Erichson et al. 2018).

    The same coordinate updates as :func:`_hals`, with the products of X replaced by the sketch's in
    factored form: ``H X^T ~ (H B^T) Q^T`` and ``Wt X ~ (Wt Q) B``, O((n + d) k r) instead of O(n d r).
    W stays a full non-negative n x r factor (it is not projected onto the sketch), so it is the exact
    HALS of X^; X^ keeps the dominant k-dimensional column space of X, where a rank-r NMF's W H lives.

    Returns:
        The sweeps done.
    """
    qt = q.T.contiguous()

    def step(check: bool) -> float:
        with serial(qt):
            viol = hals_rows(wt, (h @ b.T) @ qt, h @ h.T, check)
            # (Qt Wt^T)^T, not Wt Qt^T: torch's CPU kernels are slow for a transposed large operand.
            return viol + hals_rows(h, (qt @ wt.T).T @ b, wt @ wt.T, check)

    return _until_converged(step, max_iter, tol)


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
        with serial(x) if x.numel() < SERIAL_ELEMENTS else nullcontext():
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
    solver: str = "auto",
) -> TorchNMF:
    """Fit X ~ W H (Frobenius loss, NNDSVDa initialisation, HALS updates).

    The objective reported (``reconstruction_err_``) is always ||X - W H||_F on X itself.

    Args:
        x: (n, d) non-negative data.
        n_components: r, 1 <= r <= min(n, d).
        max_iter: HALS sweeps.
        tol: relative tolerance on the projected-gradient violation (0 = always ``max_iter`` sweeps).
        seed: seed of the initial randomized SVD.
        device: where to compute.
        dtype: ``float32`` or ``float64``.
        block_bytes: bytes of X per block of a sweep (None: :data:`SWEEP_BLOCK_BYTES` on the CPU, one
            block on a GPU; 0 = one block; solver ``hals`` only).
        solver: one of :data:`SOLVERS`, or ``auto`` (:func:`default_solver`).

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
    if solver == "auto":
        solver = default_solver(dev)
    if solver not in SOLVERS:
        raise ValueError(f"nmf solver must be one of {SOLVERS}, got {solver!r}")
    if bool((xt < 0).any()):
        raise ValueError("nmf needs non-negative data (found negative entries)")
    with serial(xt) if xt.numel() < SERIAL_ELEMENTS else nullcontext():
        # The initialisation's randomized SVD uses r + 10 probes (scikit-learn's); the sketched solver
        # reuses that sketch as its compressed data, so it costs nothing extra.
        probes = min(n, d, n_components + SKETCH_OVERSAMPLES)
        sketch = range_sketch(xt, probes, n_iter=auto_power_iterations(n_components, n, d), seed=seed)
        wt, h = nndsvda_init(xt, n_components, sketch=sketch)
        if solver == "sketched":
            n_iter = _hals_sketched(*sketch, wt, h, max_iter, tol)
        else:
            del sketch
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
