"""``moderate``: Moderate-DS (Xia et al., ICLR 2023) as the paper applies it (SPEC 1).

Per class: centre ``mu_c`` = the class mean of the features, distance ``r_i = ||g_i - mu_c||_2``, sort
ascending (stable, so equal distances keep index order) and keep the ``m_c`` samples in the middle of that
order, positions ``start .. start + m_c - 1`` with ``start = (n_c - m_c) // 2``.

Differences from public code, on purpose: the official Moderate-DS code uses the median as centre and one
global window over all classes; the paper uses the class mean per class, which we follow. The copy of
Moderate inside the D2Pruning repository keeps the closest and farthest samples, the inverse of this.
"""

from __future__ import annotations

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector


def moderate_window(distances: np.ndarray, m: int) -> np.ndarray:
    """The positions of the ``m`` middle values of ``distances``.

    Args:
        distances: (n,) distances to the class centre.
        m: how many to keep, 1 <= m <= n.

    Returns:
        (m,) int64 positions: ``argsort(distances, stable)[start:start + m]``, ``start = (n - m) // 2``.
    """
    order = np.argsort(distances, kind="stable")
    start = (len(distances) - m) // 2
    return order[start : start + m].astype(np.int64)


@SELECTORS.register
class ModerateSelector(Selector):
    """Keeps the samples of moderate distance to the class mean (no randomness)."""

    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        centre = feats_c.mean(axis=0)
        distances = np.linalg.norm(feats_c - centre, axis=1)
        return moderate_window(distances, m)
