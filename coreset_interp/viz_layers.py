"""The per-layer figure of a method that declares per-layer result keys in its figure hook
(:class:`~coreset_interp.interpreters.base.FigureHook`): the paper's Fig. 3 for VEBI, units per layer for
each selector beside the full data's, and the coverage of the full-data units per layer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from coreset_interp.viz import DPI, SELECTOR_ORDER, finite_number, ordered, save_figure, styles

if TYPE_CHECKING:
    from coreset_interp.report.series import Series


def layer_figure(series: Sequence[Series], path: Path, percent: int | None = None) -> Path | None:
    """The per-layer figure of a method whose hook declares per-layer keys (the paper's Fig. 3: VEBI's
    relevant units per layer and their coverage of the full-data units).

    One row per model: left, units per layer for each selector (and the full data); right, the
    percentage of each layer's coreset units that the full data also finds, one row per selector.

    Args:
        series: aggregated results (only series with per-layer data are used).
        path: PNG to write.
        percent: the rho (in %) to show; None = the smallest available one of 10..50, else the smallest.

    Returns:
        The PNG path, or None when no series carries per-layer data.
    """
    layered = [s for s in series if s.layers]
    if not layered:
        return None
    models = ordered((s.model for s in layered), ())
    available = sorted({p for s in layered for p in s.layers})
    if percent is None or percent not in available:
        preferred = [p for p in available if 10 <= p <= 50]
        percent = (preferred or available)[0]
    _, markers = styles(layered)
    fig = Figure(figsize=(13, 3.8 * len(models)), layout="constrained", dpi=DPI)
    axes = fig.subplots(len(models), 2, squeeze=False, width_ratios=[1, 1.3])
    for row, model in enumerate(models):
        ax_u, ax_c = axes[row]
        group = [s for s in layered if s.model == model and percent in s.layers]
        order = ordered([x.label for x in group], SELECTOR_ORDER)
        group.sort(key=lambda s: order.index(s.label))
        layers = _layer_order(group)
        x = np.arange(len(layers))
        for s in group:
            units = s.layers[percent].get("units", {})
            ax_u.plot(
                x,
                [units.get(layer, 0) for layer in layers],
                marker=markers[s.label],
                lw=1,
                label=s.label,
            )
        full = next((s.full_layer_units for s in group if s.full_layer_units), None)
        if full:
            ax_u.plot(x, [full.get(layer, 0) for layer in layers], color="k", lw=1.8, label="full data")
        ax_u.set_xticks(x, _short(layers), rotation=90, fontsize=7)
        ax_u.set_ylabel("relevant units")
        ax_u.set_title(f"{model}: units per layer at rho = {percent} %")
        ax_u.legend(fontsize=8, frameon=False)
        ax_u.grid(alpha=0.3)
        matrix = np.full((len(group), len(layers)), np.nan)
        for i, s in enumerate(group):
            # Coverage is in percent; None (no coreset unit in the layer) stays blank.
            cov = s.layers[percent].get("coverage", {})
            for j, layer in enumerate(layers):
                if finite_number(cov.get(layer)) is not None:
                    matrix[i, j] = float(cov[layer])
        im = ax_c.imshow(matrix, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(matrix):
            if math.isfinite(v):
                ax_c.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < 60 else "black",
                )
        ax_c.set_xticks(x, _short(layers), rotation=90, fontsize=7)
        ax_c.set_yticks(np.arange(len(group)), [s.label for s in group], fontsize=8)
        ax_c.set_title(f"{model}: coverage of full-data units (%), blank = no units")
        fig.colorbar(im, ax=ax_c, shrink=0.8)
    fig.suptitle(
        next((s.hook.layer_title for s in layered if s.hook.layer_title), "Relevant units per layer")
    )
    return save_figure(fig, path)


def _layer_order(group: Sequence[Series]) -> list[str]:
    layers: list[str] = []
    for s in group:
        for entry in s.layers.values():
            for layer in list(entry.get("units", {})) + list(entry.get("coverage", {})):
                if layer not in layers:
                    layers.append(layer)
        for layer in s.full_layer_units:
            if layer not in layers:
                layers.append(layer)
    return layers


def _short(layers: Sequence[str], width: int = 18) -> list[str]:
    return [name if len(name) <= width else "…" + name[-(width - 1) :] for name in layers]
