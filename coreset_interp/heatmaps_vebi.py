"""VEBI's Fig. 8 data: the (class, unit) pairs a coreset fit found that the full-data fit did not, each unit's
own activation map on the val images of its class where it fires most (largest sum), labelled with its layer
(the ReLU call index L) and filter (channel F).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coreset_interp.interpreters import InterpretContext


def differing_units(fit_full: Any, fit_coreset: Any) -> list[tuple[int, int, float]]:
    """The (class, unit) pairs of a coreset VEBI fit that the full-data fit did not find for that class.

    Args:
        fit_full: the full-data :class:`~coreset_interp.interpreters.vebi.VEBIFit`.
        fit_coreset: a coreset's fit.

    Returns:
        (class, global unit index, coreset lasso weight), by decreasing weight.
    """
    out = []
    for c, units in sorted(fit_coreset.units.items()):
        full = set(np.asarray(fit_full.top(c)).tolist())
        weights = fit_coreset.weights.get(c, np.zeros(len(units)))
        for unit, weight in zip(np.asarray(units).tolist(), np.asarray(weights).tolist(), strict=True):
            if unit not in full:
                out.append((int(c), int(unit), float(weight)))
    out.sort(key=lambda t: (-t[2], t[0], t[1]))
    return out


@dataclass
class UnitPanel:
    """One differing VEBI unit with its maps on the val images where it fires most.

    Attributes:
        cls: the class it is relevant to (in the coreset fit).
        unit: global unit index.
        layer: ReLU call index (L).
        filter: channel within the call (F).
        layer_key: the layer's readable name.
        weight: its coreset lasso weight.
        images: val indices, strongest first.
        maps: (m, h, w) its activation maps on them, at the layer's resolution.
    """

    cls: int
    unit: int
    layer: int
    filter: int
    layer_key: str
    weight: float
    images: np.ndarray
    maps: np.ndarray


def vebi_unit_panels(
    interp: Any, fit_full: Any, fit_coreset: Any, ctx: InterpretContext, max_units: int, per_unit: int
) -> list[UnitPanel]:
    """Fig. 8's data for one coreset fit.

    Args:
        interp: the VEBI interpreter (for :meth:`VEBI.unit_maps`).
        fit_full: the full-data fit.
        fit_coreset: the coreset fit.
        ctx: the context.
        max_units: at most this many units (largest coreset weight first).
        per_unit: images per unit (its class's val images with the largest map sums).

    Returns:
        The panels.
    """
    panels = []
    for c, unit, weight in differing_units(fit_full, fit_coreset)[: max(0, int(max_units))]:
        idx = ctx.val.class_indices(c)
        maps = interp.unit_maps(fit_coreset, ctx, idx, np.asarray([unit]))[:, 0]
        order = np.argsort(-maps.reshape(len(idx), -1).sum(axis=1), kind="stable")[:per_unit]
        calls, channels = fit_coreset.unit_positions(np.asarray([unit]))
        layer = fit_coreset.layers[int(calls[0])]
        panels.append(
            UnitPanel(c, unit, int(calls[0]), int(channels[0]), layer.key, weight, idx[order], maps[order])
        )
    return panels
