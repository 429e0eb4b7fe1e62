"""``random``: m_c samples per class uniformly without replacement - the paper's baseline (SPEC 1)."""

from __future__ import annotations

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector


@SELECTORS.register
class RandomSelector(Selector):
    """Uniform sampling without replacement from each class's own seeded generator."""

    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(feats_c.shape[0], size=m, replace=False).astype(np.int64)
