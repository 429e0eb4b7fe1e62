"""Heatmap figures (the paper's Figs. 6-8) from saved ``heatmaps.npz`` arrays: no model needed.

A job draws its own panel (its full-data fit beside every rho it covered); the report assembles the
cross-selector grids (Figs. 6/7: one row per val image, one column per selector at one rho, the full-data
fit last) and VEBI's differing-units figure (Fig. 8). Heatmaps are resized bilinearly to the input size and
overlaid on the un-normalised image; one colour scale per row (the row's minimum to its maximum) so the
columns of a row compare directly, with its colour bar.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from coreset_interp.heatmaps import HEATMAP_FILE, JobHeatmaps, UnitPanel, bilinear, load_heatmaps
from coreset_interp.viz import DPI, INTERPRETER_LABELS, SELECTOR_ORDER, ordered

log = logging.getLogger(__name__)

_CELL = 1.7


def _overlay(
    ax: Any, image: np.ndarray, heat: np.ndarray, vmin: float, vmax: float, cmap: str, alpha: float
) -> Any:
    ax.imshow(image, interpolation="nearest")
    im = ax.imshow(
        bilinear(heat, image.shape[:2]),
        cmap=cmap,
        alpha=alpha,
        vmin=vmin,
        vmax=vmax if vmax > vmin else vmin + 1,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(_CELL * n_cols + 1.2, _CELL * n_rows + 0.9), layout="constrained", dpi=DPI)
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def heatmap_grid(
    columns: Sequence[tuple[str, np.ndarray]],
    indices: np.ndarray,
    labels: Sequence[int],
    images: dict[int, np.ndarray],
    path: Path,
    title: str,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> Path:
    """Rows = val images, columns = fits; each cell the fit's heatmap over the image.

    Args:
        columns: (title, (n, h, w) heatmaps) per column.
        indices: the n val indices.
        labels: their classes.
        images: val index -> (H, W, 3) uint8 image.
        path: PNG to write.
        title: the figure's title.
        cmap: colour map.
        alpha: overlay opacity.

    Returns:
        ``path``.
    """
    fig, axes = _grid(len(indices), len(columns))
    for r, (i, label) in enumerate(zip(indices.tolist(), labels, strict=True)):
        vmin = min(float(np.min(h[r])) for _, h in columns)
        vmax = max(float(np.max(h[r])) for _, h in columns)
        im = None
        for c, (name, heat) in enumerate(columns):
            im = _overlay(axes[r, c], images[int(i)], heat[r], vmin, vmax, cmap, alpha)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(f"val {i}\nclass {label}", fontsize=8)
        fig.colorbar(im, ax=list(axes[r, :]), shrink=0.85, pad=0.01)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def units_figure(
    rows: Sequence[tuple[str, UnitPanel]],
    images: dict[int, np.ndarray],
    path: Path,
    title: str,
    cmap: str = "jet",
    alpha: float = 0.5,
    wrap: int = 3,
) -> Path:
    """Fig. 8: each differing VEBI unit as its own map on the val images where it fires most, ``wrap``
    units side by side per figure row, each with its label (class, layer L, filter F) and colour bar.

    Args:
        rows: (selector label, panel) per unit.
        images: val index -> image.
        path: PNG to write.
        title: the figure's title.
        cmap: colour map.
        alpha: overlay opacity.
        wrap: units per figure row.

    Returns:
        ``path``.
    """
    per = max(len(p.images) for _, p in rows)
    wrap = max(1, min(int(wrap), len(rows)))
    n_rows = -(-len(rows) // wrap)
    fig, axes = _grid(n_rows, per * wrap)
    for ax in axes.ravel():
        ax.axis("off")
    for u, (label, panel) in enumerate(rows):
        r, c0 = divmod(u, wrap)
        c0 *= per
        vmin = float(np.min(panel.maps)) if panel.maps.size else 0.0
        vmax = float(np.max(panel.maps)) if panel.maps.size else 1.0
        im = None
        for j, i in enumerate(panel.images.tolist()):
            ax = axes[r, c0 + j]
            ax.axis("on")
            im = _overlay(ax, images[int(i)], panel.maps[j], vmin, vmax, cmap, alpha)
            head = f"{label}: class {panel.cls}, L{panel.layer} F{panel.filter}\n" if j == 0 else "\n"
            ax.set_title(f"{head}val {i}", fontsize=7, loc="left")
        if im is not None:
            fig.colorbar(im, ax=list(axes[r, c0 : c0 + per]), shrink=0.8, pad=0.01)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def job_heatmap_figures(folder: Path, cmap: str = "jet", alpha: float = 0.5) -> dict[str, Path]:
    """A job's own heatmap panels (full data beside every rho it covered; VEBI's differing units).

    Args:
        folder: the job folder (reads ``heatmaps.npz``, writes into ``figures/``).
        cmap: colour map.
        alpha: overlay opacity.

    Returns:
        name -> PNG (empty when the job saved no heatmaps).
    """
    path = Path(folder) / HEATMAP_FILE
    if not path.is_file():
        return {}
    data = load_heatmaps(path)
    m = data.meta
    cols = [(f"rho = {p} %", data.per_percent[p]) for p in sorted(data.per_percent)]
    cols.append(("full data", data.full))
    name = f"{m['model']} / {m['selector']} / {INTERPRETER_LABELS.get(m['interpreter'], m['interpreter'])}"
    out = {
        "heatmaps": heatmap_grid(
            cols,
            data.indices,
            m["labels"],
            data.images,
            Path(folder) / "figures" / "heatmaps.png",
            f"{name}: top-{m['k']} interpretation heatmaps",
            cmap,
            alpha,
        )
    }
    rows = [(f"rho {p} %", panel) for p in sorted(data.vebi) for panel in data.vebi[p]]
    if rows:
        out["vebi_new_units"] = units_figure(
            rows,
            data.images,
            Path(folder) / "figures" / "vebi_new_units.png",
            f"{name}: units the coreset found and the full data did not",
            cmap,
            alpha,
        )
    return out


def _pick_percent(available: set[int], requested: int | None) -> int | None:
    if not available:
        return None
    if requested is not None and requested in available:
        return requested
    preferred = sorted(p for p in available if 10 <= p <= 50)
    return (preferred or sorted(available))[0]


def report_heatmap_figures(
    job_dirs: Sequence[Path], out: Path, percent: int | None = None, cmap: str = "jet", alpha: float = 0.5
) -> list[tuple[str, str, Path]]:
    """The sweep's heatmap grids: Figs. 6/7 per (dataset, model, interpreter), Fig. 8 per (dataset, model).

    Args:
        job_dirs: completed job folders (those without ``heatmaps.npz`` are skipped).
        out: the report folder.
        percent: the rho (%) of the grids; None = the smallest of 10..50 the jobs covered.
        cmap: colour map.
        alpha: overlay opacity.

    Returns:
        (file name, title, PNG) per figure.
    """
    groups: dict[tuple[str, str, str], list[JobHeatmaps]] = {}
    for d in job_dirs:
        path = Path(d) / HEATMAP_FILE
        if not path.is_file():
            continue
        try:
            data = load_heatmaps(path)
        except Exception as err:  # noqa: BLE001 - one damaged file must not lose the other figures
            log.warning("heatmaps in %s not readable: %s", d, err)
            continue
        m = data.meta
        groups.setdefault((m["dataset"], m["model"], m["interpreter"]), []).append(data)
    figures: list[tuple[str, str, Path]] = []
    fig_no = {"ice": "Fig. 6", "topic": "Fig. 7"}
    for (dataset, model, interp), jobs in sorted(groups.items()):
        # Jobs with another image choice (another viz config) cannot share rows with the first job.
        ref = jobs[0]
        jobs = [j for j in jobs if np.array_equal(j.indices, ref.indices)]
        p = _pick_percent({q for j in jobs for q in j.per_percent}, percent)
        if p is None:
            continue
        by_sel: dict[str, JobHeatmaps] = {}
        for j in jobs:
            if p in j.per_percent:
                by_sel[str(j.meta["selector"])] = j
        cols = [(s, by_sel[s].per_percent[p]) for s in ordered(by_sel, SELECTOR_ORDER)]
        cols.append(("full data", ref.full))
        images = {k: v for j in jobs for k, v in j.images.items()}
        label = INTERPRETER_LABELS.get(interp, interp)
        name = f"heatmaps_{interp}_{dataset}_{model}.png"
        title = f"{fig_no.get(interp, 'Heatmaps')} ({label}): {dataset} / {model}, coresets at rho = {p} %"
        figures.append(
            (
                name,
                title,
                heatmap_grid(cols, ref.indices, ref.meta["labels"], images, out / name, title, cmap, alpha),
            )
        )
        rows = [(s, panel) for s in ordered(by_sel, SELECTOR_ORDER) for panel in by_sel[s].vebi.get(p, [])]
        if interp == "vebi" and rows:
            name = f"fig8_vebi_new_units_{dataset}_{model}.png"
            title = (
                f"Fig. 8 (VEBI): {dataset} / {model}, units a coreset (rho = {p} %) found and the full data "
                "did not; L = layer (ReLU call), F = filter"
            )
            figures.append((name, title, units_figure(rows, images, out / name, title, cmap, alpha)))
    return figures
