"""``full``: every sample - the reference that every coreset is compared against (SPEC 1)."""

from __future__ import annotations

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector


@SELECTORS.register
class FullSelector(Selector):
    """Keeps all samples of every class; the ratio is validated but otherwise ignored."""

    def budget(self, n_c: int, ratio: float) -> int:
        """The whole class, whatever the ratio.

        Args:
            n_c: class size.
            ratio: ignored (validated by :meth:`select`).

        Returns:
            ``n_c``.
        """
        return n_c

    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(feats_c.shape[0], dtype=np.int64)
