"""A VEBI fit: the relevant units of every class, by decreasing lasso weight, and where each unit lives."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coreset_interp.interpreters.vebi_units import UnitLayer


@dataclass
class VEBIFit:
    """The relevant units of every class.

    Attributes:
        layers: the unit layers (ReLU calls) of the model.
        units: per class, global unit indices by decreasing lasso weight.
        weights: per class, the matching weights.
        saturated: per class, True when the positive lasso path ended before ||w||_1 reached mu.
        mu: the L1 budget.
        seed: the fit's seed (seeds the random-unit control of the evaluation).
        n_samples: train images the fit used.
    """

    layers: list[UnitLayer]
    units: dict[int, np.ndarray]
    weights: dict[int, np.ndarray]
    saturated: dict[int, bool]
    mu: float
    seed: int
    n_samples: int
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.asarray([layer.offset for layer in self.layers], dtype=np.int64)

    def unit_positions(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Args:
            units: global unit indices.

        Returns:
            (call index, channel) of each unit.
        """
        units = np.asarray(units, dtype=np.int64)
        calls = np.searchsorted(self._offsets, units, side="right") - 1
        return calls, units - self._offsets[calls]

    def by_layer(self, units: np.ndarray) -> dict[int, np.ndarray]:
        """Args:
            units: global unit indices.

        Returns:
            call index -> sorted channels of those units in that call.
        """
        calls, channels = self.unit_positions(units)
        return {int(c): np.sort(channels[calls == c]) for c in np.unique(calls)}

    def top(self, c: int, n: int | None = None) -> np.ndarray:
        """Args:
            c: a class.
            n: how many (None = all).

        Returns:
            The class's top-``n`` units by weight (empty for a class without units).
        """
        units = self.units.get(int(c), np.zeros(0, dtype=np.int64))
        return units if n is None else units[:n]
