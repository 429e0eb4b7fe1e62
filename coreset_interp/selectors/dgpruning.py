"""``dgpruning``: D2Pruning (Maharana et al., ICLR 2024) with the paper's initial score, per class (SPEC 1).

Steps, for one class with features g and budget m:

1. initial score ``s_i = ||g_i - mu||_2`` (distance to the class mean; replaces D2Pruning's
   training-dynamics score, as the interpretation paper does);
2. kNN graph with Euclidean distances ``d_ij``, ``k`` neighbours, self excluded, symmetrised:
   ``N(i) = kNN(i) | {j : i in kNN(j)}``;
3. normalised distances ``d~_ij = d_ij / tau`` with ``tau`` = the median of the class's ``n * k`` kNN
   distances. This normalisation is ours, not D2Pruning's: GAP features of a CNN lie 10-100 apart, where
   ``exp(-d)`` underflows to 0 (``exp(-745)`` is already the smallest double), so without it the message
   passing would do nothing. Dividing by a class-level scale keeps the weights in a useful range and makes
   the method invariant to rescaling the features. (If every kNN distance is 0 - all samples identical -
   ``tau = 1`` is used instead.)
4. forward message passing ``s'_i = s_i + sum_{j in N(i)} exp(-d~_ij) s_j``;
5. reverse message passing, m times: take the unselected ``i*`` with the largest ``s'`` (ties: lowest
   index), select it, and for every unselected neighbour ``j`` set
   ``s'_j <- s'_j - exp(-gamma_r d~_{i* j}) s'_{i*}``.

Classes with ``n_c <= k`` have no k-neighbour graph: they fall back to uniform random sampling from the
class's generator, with a logged warning.

Memory: the graph is stored as O(n k) edge lists. The kNN search computes squared distances by blocks of
rows, ``||x||^2 + ||y||^2 - 2 <x, y>`` on features centred by the class mean (centring shrinks the norms and
with them the cancellation error); one block holds about ``block_rows x n`` doubles, with ``block_rows``
chosen to keep that near 64 MiB. A 1300-sample class is one block (13.5 MB); a 100k-sample class runs in
~80-row blocks and never holds an n x n matrix. The distances kept on edges are recomputed exactly as
``||g_i - g_j||`` so the graph weights are symmetric to the bit. Time is O(n^2 d) for the search.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector

logger = logging.getLogger(__name__)

# Target size of one block of the kNN distance matrix (bytes); see the module docstring.
_BLOCK_BYTES = 64 * 2**20


def knn_search(x: np.ndarray, k: int, block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self excluded) by blocks of rows.

    Ties at the k-th distance go to the lowest indices, so the graph is a deterministic function of the data.
    (A tie means equal *computed* squared distances; two mathematically equal distances can differ in the
    last bit after the ``||x||^2 + ||y||^2 - 2 <x, y>`` expansion, and then the smaller one wins.)

    Args:
        x: (n, d) float64 features, n > k.
        k: number of neighbours, >= 1.
        block_rows: rows per distance block; ``None`` picks it from a ~64 MiB budget.

    Returns:
        ``(nbr, dist)``: (n, k) int64 neighbour positions, ascending per row, and their exact
        Euclidean distances.
    """
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"kNN needs 1 <= k < n, got k={k}, n={n}")
    if block_rows is None:
        block_rows = max(1, _BLOCK_BYTES // (8 * n))
    xc = x - x.mean(axis=0)
    sq = np.einsum("ij,ij->i", xc, xc)
    nbr = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        rows = np.arange(start, stop)
        d2 = xc[start:stop] @ xc.T
        d2 *= -2.0
        d2 += sq[start:stop, None]
        d2 += sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2[rows - start, rows] = np.inf
        kth = np.partition(d2, k - 1, axis=1)[:, k - 1 : k]
        within = d2 <= kth
        counts = within.sum(axis=1)
        clean = counts == k
        # Rows without a tie at the k-th distance: the k positions are exactly the mask's hits,
        # and np.nonzero lists them in ascending column order.
        nbr[start:stop][clean] = np.nonzero(within[clean])[1].reshape(-1, k)
        for r in np.flatnonzero(~clean):
            less = np.flatnonzero(d2[r] < kth[r, 0])
            equal = np.flatnonzero(d2[r] == kth[r, 0])
            nbr[start + r] = np.sort(np.concatenate([less, equal[: k - len(less)]]))
    dist = _pair_distances(x, np.repeat(np.arange(n), k), nbr.ravel()).reshape(n, k)
    return nbr, dist


def _pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact ``||x[a] - x[b]||`` in chunks that stay near the block budget; symmetric in (a, b) to the bit."""
    out = np.empty(len(a))
    # Three (chunk, d) temporaries live at once (x[a], x[b], their difference): a quarter block each.
    chunk = max(1, _BLOCK_BYTES // (4 * 8 * max(1, x.shape[1])))
    for s in range(0, len(a), chunk):
        diff = x[a[s : s + chunk]] - x[b[s : s + chunk]]
        out[s : s + chunk] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def symmetric_graph(nbr: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetrise a kNN graph into CSR form: ``N(i) = kNN(i) | {j : i in kNN(j)}``.

    Args:
        nbr: (n, k) neighbour positions.
        dist: (n, k) their distances (a pair found from both sides has the same distance both times).

    Returns:
        ``(indptr, indices, weights)``: neighbours of i are ``indices[indptr[i]:indptr[i + 1]]`` (ascending)
        with distances ``weights[...]``.
    """
    n, k = nbr.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = nbr.ravel()
    d = dist.ravel()
    both_src = np.concatenate([src, dst])
    both_dst = np.concatenate([dst, src])
    both_d = np.concatenate([d, d])
    keys, first = np.unique(both_src * n + both_dst, return_index=True)
    indices = keys % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=indptr[1:])
    return indptr, indices, both_d[first]


def d2_message_passing(
    feats: np.ndarray,
    m: int,
    k: int = 5,
    gamma_r: float = 0.1,
    block_rows: int | None = None,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Select ``m`` samples of one class with steps 1-5 of the module docstring.

    Args:
        feats: (n, d) features, n > k.
        m: budget, 1 <= m <= n.
        k: neighbours of the kNN graph.
        gamma_r: decay of the reverse message passing.
        block_rows: rows per kNN distance block (``None``: automatic).
        knn: ``knn_search(feats, k)`` when already known (it does not depend on ``m``).

    Returns:
        (m,) int64 positions, in the order they were picked.
    """
    n = feats.shape[0]
    score = np.linalg.norm(feats - feats.mean(axis=0), axis=1)
    nbr, dist = knn if knn is not None else knn_search(feats, k, block_rows)
    tau = float(np.median(dist))
    if tau <= 0.0:
        tau = 1.0
    indptr, indices, d = symmetric_graph(nbr, dist)
    d_norm = d / tau
    src = np.repeat(np.arange(n), np.diff(indptr))
    score = score + np.bincount(src, weights=np.exp(-d_norm) * score[indices], minlength=n)
    w_rev = np.exp(-gamma_r * d_norm)

    picked = np.empty(m, dtype=np.int64)
    for t in range(m):
        i = int(np.argmax(score))
        picked[t] = i
        s_i = score[i]
        # -inf marks "selected": argmax skips it and the updates below leave it at -inf.
        score[i] = -np.inf
        lo, hi = indptr[i], indptr[i + 1]
        score[indices[lo:hi]] -= w_rev[lo:hi] * s_i
    return picked


@SELECTORS.register
class DGPruningSelector(Selector):
    """D2Pruning message passing on a kNN graph of the class, initial score = distance to the class mean.

    Args:
        k: neighbours per node of the kNN graph (SPEC default 5).
        gamma_r: decay of the reverse message passing (SPEC default 0.1).
    """

    def __init__(self, k: int = 5, gamma_r: float = 0.1) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not np.isfinite(gamma_r) or gamma_r < 0:
            raise ValueError(f"gamma_r must be a finite non-negative number, got {gamma_r!r}")
        self.k = k
        self.gamma_r = float(gamma_r)
        # kNN graph per class, by a digest of the class's features: the graph does not depend on rho,
        # so one selector reused across a job's ratios builds each class's graph once.
        self._graphs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def params(self) -> dict[str, float | int]:
        """Returns:
        ``{"k": k, "gamma_r": gamma_r}``.
        """
        return {"k": self.k, "gamma_r": self.gamma_r}

    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        n = feats_c.shape[0]
        if n <= self.k:
            logger.warning(
                "dgpruning: class of %d samples has no %d-neighbour graph (n_c <= k); using random selection",
                n,
                self.k,
            )
            return rng.choice(n, size=m, replace=False).astype(np.int64)
        if m == n:
            return np.arange(n, dtype=np.int64)
        return d2_message_passing(feats_c, m, self.k, self.gamma_r, knn=self._knn(feats_c))

    def _knn(self, feats_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The class's kNN graph, built on first use and kept for the selector's later ratios."""
        x = np.ascontiguousarray(feats_c)
        h = hashlib.blake2b(x.view(np.uint8), digest_size=20)
        h.update(f"{x.shape}{x.dtype}{self.k}".encode())
        key = h.hexdigest()
        if key not in self._graphs:
            self._graphs[key] = knn_search(x, self.k)
        return self._graphs[key]
