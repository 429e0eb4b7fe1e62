"""VEBI's positive mu-lasso, solved from the Gram form.

For class c, with unit features E (n x U) and the one-hot target l_c (1 where the model predicts c):

    min_w ||l_c - E w||^2   subject to   ||w||_1 <= mu,  w >= 0        (the constrained form of the port)

The LARS-lasso path (Efron et al. 2004) with the positivity restriction visits every solution of this
problem as mu grows from 0; its L1 norm is linear between knots (the signs are fixed), so the solution at a
given mu is an interpolation between two knots. Only E^T E and E^T l_c enter the path, so they are
accumulated over batches of rows (:func:`accumulate_gram`): memory grows with U^2, never with n.

scikit-learn's ``lars_path_gram`` copies and permutes the U x U Gram matrix per call, a cost independent of
n that would dominate small coresets (and is 4 GB per class for ResNet50). :func:`positive_lasso_l1`
therefore runs the path on a small working set of units and then checks, on the full Gram matrix, that no
unit outside the set would have joined the path before ``mu`` (its correlation with the residual is linear
between knots, so checking the knots suffices); violators join the set and the path is recomputed. The
result equals the path on all units, which a test checks against ``lars_path`` on the raw matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import blas
from sklearn.linear_model import lars_path_gram


class LowerGram:
    """A symmetric U x U matrix stored as its lower triangle (Fortran order, upper part unused).

    Symmetrising the whole matrix would cost O(U^2) memory passes per fit, independent of the number of
    images; the solver only ever needs a few columns and small blocks, which are read from the triangle.

    Args:
        lower: the Fortran-ordered matrix whose lower triangle (diagonal included) holds the values.
    """

    def __init__(self, lower: np.ndarray) -> None:
        self.lower = lower
        self._diagonal = np.diagonal(lower).copy()

    @property
    def size(self) -> int:
        """U, the number of rows and columns."""
        return int(self.lower.shape[0])

    def columns(self, cols: np.ndarray) -> np.ndarray:
        """Args:
            cols: column indices.

        Returns:
            The full columns (U x len(cols)).
        """
        out = np.empty((self.size, len(cols)), dtype=np.float64)
        for k, j in enumerate(np.asarray(cols, dtype=np.int64).tolist()):
            out[j:, k] = self.lower[j:, j]  # contiguous in Fortran order
            out[:j, k] = self.lower[j, :j]  # row j of the lower triangle = the column's upper part
        return out

    def block(self, idx: np.ndarray) -> np.ndarray:
        """Args:
            idx: sorted indices.

        Returns:
            G[idx][:, idx] (C order).
        """
        b = np.ascontiguousarray(self.lower[np.ix_(idx, idx)])
        # idx is sorted, so the block's lower triangle comes from the stored one.
        return np.tril(b) + np.tril(b, -1).T

    def diagonal(self) -> np.ndarray:
        """Returns:
        The diagonal (a copy).
        """
        return self._diagonal.copy()

    def full(self) -> np.ndarray:
        """Returns:
        The whole symmetric matrix (for tests and small problems).
        """
        return np.tril(self.lower) + np.tril(self.lower, -1).T


def accumulate_gram(
    E: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    num_classes: int,
    batch: int = 1024,
    device: torch.device | str | None = None,
) -> tuple[LowerGram, np.ndarray]:
    """E^T E and E^T L over some rows, read in batches.

    Args:
        E: features (n x U), typically a read-only memory map.
        rows: sorted row indices to use.
        targets: class index of each selected row (one-hot columns of L).
        num_classes: columns of L.
        batch: rows read per step.
        device: None = NumPy/BLAS on the CPU (syrk on the lower triangle); a torch device = the products
            in torch on that device, each batch moved there and accumulated in float64 (a GPU forms a
            ResNet50-sized 22.7k x 22.7k Gram in seconds). Both give the same matrices up to rounding.

    Returns:
        (E^T E as a :class:`LowerGram`, float64; E^T L, U x num_classes float64).
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if device is not None:
        return _accumulate_gram_torch(E, rows, targets, num_classes, batch, torch.device(device))
    units = E.shape[1]
    # Fortran order lets BLAS syrk update the lower triangle in place, with half the flops of a product.
    gram = np.zeros((units, units), dtype=np.float64, order="F")
    xy = np.zeros((num_classes, units), dtype=np.float64)
    for start in range(0, len(rows), max(1, batch)):
        x = np.asarray(E[rows[start : start + batch]], dtype=np.float64)
        # x.T is a Fortran-ordered view: syrk reads it without a copy.
        gram = blas.dsyrk(1.0, x.T, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)
        onehot = np.zeros((num_classes, len(x)))
        onehot[targets[start : start + batch], np.arange(len(x))] = 1.0
        xy += onehot @ x
    return LowerGram(gram), xy.T.copy()


def _accumulate_gram_torch(
    E: np.ndarray, rows: np.ndarray, targets: np.ndarray, num_classes: int, batch: int, device: torch.device
) -> tuple[LowerGram, np.ndarray]:
    """:func:`accumulate_gram` in torch on ``device`` (float64 accumulation)."""
    units = E.shape[1]
    gram = torch.zeros(units, units, dtype=torch.float64, device=device)
    xy = torch.zeros(num_classes, units, dtype=torch.float64, device=device)
    for start in range(0, len(rows), max(1, batch)):
        x = torch.from_numpy(np.asarray(E[rows[start : start + batch]])).to(device, torch.float64)
        gram.addmm_(x.T, x)
        t = torch.from_numpy(targets[start : start + batch]).to(device)
        xy.index_add_(0, t, x)
    full = gram.cpu().numpy()
    # The product is symmetric, so its transpose (a Fortran-ordered view, no copy) holds the lower
    # triangle in the layout LowerGram reads.
    return LowerGram(full.T), xy.T.cpu().numpy().copy()


@dataclass(frozen=True)
class LassoSolution:
    """The solution of one class's constrained positive lasso.

    Attributes:
        units: indices of the units with non-zero weight, by decreasing weight.
        weights: their weights.
        l1: ||w||_1 (equals mu unless the path ended first).
        saturated: True when the positive path ended before reaching mu (the constraint is inactive).
        rounds: working-set rounds needed.
    """

    units: np.ndarray
    weights: np.ndarray
    l1: float
    saturated: bool
    rounds: int


def _path_at_l1(coefs: np.ndarray, alphas: np.ndarray, mu: float) -> tuple[np.ndarray, float, int, bool]:
    """Interpolate a lasso path where ||w||_1 = mu.

    Returns:
        (w, alpha there, number of knots at or before that point, saturated).
    """
    l1 = np.abs(coefs).sum(axis=0)
    k = int(np.searchsorted(l1, mu, side="left"))
    if k >= len(l1):
        return coefs[:, -1].copy(), float(alphas[-1]), len(l1), True
    if k == 0:
        return coefs[:, 0].copy(), float(alphas[0]), 1, False
    t = (mu - l1[k - 1]) / (l1[k] - l1[k - 1])
    w = coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])
    alpha = alphas[k - 1] + t * (alphas[k] - alphas[k - 1])
    return w, float(alpha), k, False


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (in no particular order)."""
    if k >= len(values):
        return np.arange(len(values))
    return np.argpartition(-values, k - 1)[:k]


def positive_lasso_l1(
    gram: LowerGram,
    xy: np.ndarray,
    n_samples: int,
    mu: float,
    working_set: int = 128,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> LassoSolution:
    """Solve min ||l - E w||^2 s.t. ||w||_1 <= mu, w >= 0 from the Gram form.

    Args:
        gram: E^T E.
        xy: E^T l (U,).
        n_samples: rows of E (the path's alphas are correlations divided by this).
        mu: the L1 budget (> 0).
        working_set: initial number of units: half the most correlated with l, half the most correlated
            per unit of norm (the result does not depend on it, only the number of rounds does).
        max_iter: LARS iterations per round.
        tol: slack of the optimality check on the (alpha-scaled) correlations.

    Returns:
        The solution.
    """
    if mu <= 0:
        raise ValueError(f"vebi mu must be > 0, got {mu}")
    units = len(xy)
    if not np.any(xy > 0):
        # No unit is positively correlated with the target (e.g. a class the model never predicts).
        return LassoSolution(np.zeros(0, np.int64), np.zeros(0), 0.0, True, 0)
    # Units enter by raw correlation, but the ones that stay are better ranked by correlation per unit of
    # norm (a cosine); starting from both rankings usually makes the first round final.
    norms = np.sqrt(np.maximum(gram.diagonal(), np.finfo(np.float64).tiny))
    half = max(1, min(working_set, units) // 2)
    active = np.union1d(_top(xy, half), _top(xy / norms, half))
    rounds = 0
    while True:
        rounds += 1
        alphas, _, coefs = lars_path_gram(
            xy[active].copy(),
            gram.block(active),
            n_samples=n_samples,
            method="lasso",
            positive=True,
            max_iter=max_iter,
            copy_Gram=False,
        )
        w_s, alpha, n_knots, saturated = _path_at_l1(coefs, alphas, mu)
        if len(active) == units:
            break
        # Correlations of every unit with the residual at the knots up to mu and at mu itself; only the
        # units that entered the path have non-zero coefficients, so only their columns are read.
        points = np.column_stack([coefs[:, :n_knots], w_s])
        levels = np.append(alphas[:n_knots], alpha)
        used = np.flatnonzero(np.any(points != 0, axis=1))
        corr = (xy[:, None] - gram.columns(active[used]) @ points[used]) / n_samples
        excess = (corr - levels[None, :]).max(axis=1) - tol * max(1.0, float(np.abs(levels).max()))
        excess[active] = -np.inf
        violators = np.flatnonzero(excess > 0)
        if len(violators) == 0:
            break
        # The worst violators join first; the others are checked again next round.
        worst = violators[np.argsort(-excess[violators], kind="stable")][: max(working_set, 1)]
        active = np.union1d(active, worst)
    nz = np.flatnonzero(w_s > 0)
    order = nz[np.argsort(-w_s[nz], kind="stable")]
    return LassoSolution(active[order], w_s[order], float(w_s.sum()), saturated, rounds)
