"""``transfer``: a coreset chosen on another model's features (the paper's Sec. 4.5).

The selection itself is any other registered selector (``base``); what changes is whose GAP features it
sees. The pipeline loads the source model named by ``source_model`` in the YAML (a full model config, so
it is cached like any model), extracts its train activations and passes those features to
:meth:`Selector.select`; the indices then index the same images for the interpreted model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector


@SELECTORS.register("transfer")
class TransferSelector(Selector):
    """Delegates each class to a base selector; the features come from the source model.

    Args:
        base: name of the selector that does the choosing (not ``transfer``).
        base_params: that selector's hyperparameters.
    """

    name = "transfer"

    def __init__(self, base: str = "moderate", base_params: dict[str, Any] | None = None) -> None:
        if base == "transfer":
            raise ValueError("transfer: base must be another selector, not 'transfer'")
        self.base = SELECTORS.get(base, **dict(base_params or {}))

    def params(self) -> dict[str, Any]:
        """Returns:
        The base selector's name and hyperparameters.
        """
        return {"base": self.base.name, "base_params": self.base.params()}

    def budget(self, n_c: int, ratio: float) -> int:
        """Args:
            n_c: class size.
            ratio: selection ratio.

        Returns:
            The base selector's budget.
        """
        return self.base.budget(n_c, ratio)

    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        return self.base._select_class(feats_c, m, rng)
