"""``transfer``: a coreset chosen on another model's features (the paper's Sec. 4.5).

The selection itself is any other registered selector (``base``); what changes is whose GAP features it
sees. ``source_model`` is a full model config (``model@selector.source_model=vgg19`` picks another), which
:meth:`TransferSelector.source_model` hands to the pipeline: it loads that model like any other (cached),
extracts its train activations and passes those features to :meth:`Selector.select`; the indices then
index the same images for the interpreted model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from coreset_interp.selectors.base import SELECTORS, Selector


@SELECTORS.register
class TransferSelector(Selector):
    """Delegates each class to a base selector; the features come from the source model.

    Args:
        base: name of the selector that does the choosing (not ``transfer``).
        base_params: that selector's hyperparameters.
        source_model: the model config whose train features the selection reads (None: the job's model).
    """

    def __init__(
        self,
        base: str = "moderate",
        base_params: Mapping[str, Any] | None = None,
        source_model: Mapping[str, Any] | None = None,
    ) -> None:
        if base == "transfer":
            raise ValueError("transfer: base must be another selector, not 'transfer'")
        self.base = SELECTORS.get(base, **dict(base_params or {}))
        self._source = None if source_model is None else dict(source_model)

    def params(self) -> dict[str, Any]:
        """Returns:
        The base selector's name and hyperparameters (defaults included) and the source model's config.
        """
        return {"base": self.base.name, "base_params": self.base.params(), "source_model": self._source}

    def key(self) -> dict[str, Any]:
        """Returns:
        :meth:`Selector.key` plus the base selector's code version (its algorithm does the choosing).
        """
        return {**super().key(), "base_version": self.base.version}

    def source_model(self) -> dict[str, Any] | None:
        """Returns:
        The source model's config (a copy), or None when the job's own model is the source.
        """
        return None if self._source is None else dict(self._source)

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
