"""Interpretation heatmaps (the paper's Sec. 4.7, Figs. 6-8; SPEC section 4b).

For val image i and a fit, the interpreter gives interpretation maps Z^i (d' maps at their own resolution,
:meth:`Interpreter.image_maps`); each map is scored by the sum of its elements, the k highest are kept and
H^i is their element-wise maximum (maps of different resolutions, VEBI's units of several layers, are first
brought bilinearly to the largest of them). H^i is stored at that resolution and resized bilinearly to the
input size only when drawn.

Every job of a sweep picks the same val images (:func:`choose_images`: a seeded set per class that depends
only on the val labels and ``viz`` config), computes H^i for the full-data fit and each rho's coreset fit,
and saves them, small and float16, with the un-normalised input images in ``<job dir>/heatmaps.npz``
(:func:`save_heatmaps`, in :mod:`coreset_interp.heatmaps_io`). ``coreset-interp-report`` then only
assembles and colours the saved arrays (:mod:`coreset_interp.viz_heatmaps`); it needs no model.

VEBI's Fig. 8 (:func:`differing_units`, :func:`vebi_unit_panels`, in :mod:`coreset_interp.heatmaps_vebi`):
the (class, unit) pairs a coreset fit found that the full-data fit did not, each unit's own activation map
on the val images of its class where it fires most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from coreset_interp.data import ImageDataset
from coreset_interp.heatmaps_io import HEATMAP_FILE, JobHeatmaps, load_heatmaps, save_heatmaps
from coreset_interp.heatmaps_vebi import UnitPanel, differing_units, vebi_unit_panels
from coreset_interp.interpreters import InterpretContext, Interpreter

__all__ = [
    "HEATMAP_FILE",
    "JobHeatmaps",
    "UnitPanel",
    "VizConfig",
    "bilinear",
    "choose_images",
    "differing_units",
    "display_images",
    "fit_heatmaps",
    "job_heatmaps",
    "load_heatmaps",
    "save_heatmaps",
    "top_k_heatmap",
    "vebi_unit_panels",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VizConfig:
    """The ``viz`` config block.

    Attributes:
        heatmap_k: k, the maps whose maximum is the heatmap.
        heatmap_percent: the rho (%) of the report's cross-selector grids; None = the smallest of 10..50
            the jobs covered (else the smallest).
        heatmap_images: val images per class.
        heatmap_classes: how many classes (a seeded choice), or an explicit list of class labels.
        seed: seed of the choice of classes and images (not the job's seed: every job picks the same).
        vebi_units: at most this many differing VEBI units per job (Fig. 8), by decreasing coreset weight.
        colormap: matplotlib colour map of the overlays.
        alpha: opacity of the overlay.
        enabled: compute and save heatmaps at all.
    """

    heatmap_k: int = 3
    heatmap_percent: int | None = None
    heatmap_images: int = 2
    heatmap_classes: int | list[int] = 3
    seed: int = 0
    vebi_units: int = 6
    colormap: str = "jet"
    alpha: float = 0.5
    enabled: bool = True

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any] | None) -> VizConfig:
        """Args:
            cfg: the job config (its ``viz`` block is read; absent keys keep the conf/config.yaml values).

        Returns:
            The validated block.
        """
        block = dict((cfg or {}).get("viz") or {})
        valid = sorted(cls.__dataclass_fields__)
        unknown = sorted(set(block) - set(valid))
        if unknown:
            raise ValueError(f"unknown viz key(s) {unknown}; valid: {valid}")
        out = cls(**block)
        if out.heatmap_k < 1 or out.heatmap_images < 1 or out.vebi_units < 0:
            raise ValueError(
                f"viz.heatmap_k and viz.heatmap_images must be >= 1 and viz.vebi_units >= 0, got "
                f"{out.heatmap_k}, {out.heatmap_images}, {out.vebi_units}"
            )
        return out


def choose_images(labels: np.ndarray, classes: int | list[int], per_class: int, seed: int) -> np.ndarray:
    """The val images of the heatmaps: a seeded set per class, the same in every job of a sweep.

    Args:
        labels: val labels.
        classes: how many classes (chosen with the seed) or an explicit list of class labels.
        per_class: images per class (fewer when a class has fewer).
        seed: the choice's seed.

    Returns:
        Val indices, grouped by class in increasing class order, sorted within each class.
    """
    labels = np.asarray(labels)
    present = np.unique(labels)
    rng = np.random.default_rng([int(seed), 4177])
    if isinstance(classes, int | np.integer):
        count = min(int(classes), len(present))
        chosen = np.sort(rng.choice(present, size=count, replace=False))
    else:
        chosen = np.asarray(sorted(int(c) for c in classes))
        bad = sorted(set(chosen.tolist()) - set(present.tolist()))
        if bad:
            raise ValueError(f"viz.heatmap_classes {bad} are not val classes (valid: 0..{present.max()})")
    out = []
    for c in chosen:
        idx = np.flatnonzero(labels == c)
        out.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes (align_corners=False, as torchvision's image resize).

    Args:
        a: (..., h, w) array.
        size: (H, W).

    Returns:
        (..., H, W) float32.
    """
    a = np.asarray(a, dtype=np.float32)
    if tuple(a.shape[-2:]) == tuple(size):
        return a.copy()
    lead = a.shape[:-2]
    t = torch.from_numpy(a.reshape(-1, 1, *a.shape[-2:]).copy())
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size).numpy()


def top_k_heatmap(groups: list[np.ndarray], k: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """H = element-wise max of the k maps with the largest sums (the paper's Sec. 4.7).

    Args:
        groups: one image's maps, a list of (d_g, h_g, w_g) arrays (one group per resolution).
        k: maps to keep (all of them when there are fewer).

    Returns:
        (H at the largest chosen resolution, the chosen maps as (group, channel), best first).
    """
    scores = [(float(g[c].sum()), gi, c) for gi, g in enumerate(groups) for c in range(g.shape[0])]
    if not scores:
        raise ValueError("top_k_heatmap: no maps")
    # Stable on ties: the earlier map wins, so the choice is deterministic.
    scores.sort(key=lambda s: -s[0])
    chosen = [(gi, c) for _, gi, c in scores[: max(1, int(k))]]
    size = max((groups[gi].shape[1:] for gi, _ in chosen), key=lambda s: s[0] * s[1])
    maps = [bilinear(groups[gi][c], tuple(size)) for gi, c in chosen]
    return np.max(np.stack(maps), axis=0), chosen


def fit_heatmaps(
    interp: Interpreter, fit: Any, ctx: InterpretContext, indices: np.ndarray, k: int
) -> np.ndarray:
    """H^i of some val images for one fit.

    Args:
        interp: the interpreter.
        fit: its fit.
        ctx: the fit's context.
        indices: val indices.
        k: maps per heatmap.

    Returns:
        (n, h, w) float32, at the interpreter's map resolution (the largest one for VEBI).
    """
    out = [top_k_heatmap(groups, k)[0] for groups in interp.image_maps(fit, ctx, indices)]
    size = max((h.shape for h in out), key=lambda s: s[0] * s[1])
    return np.stack([bilinear(h, size) for h in out])


def _find_normalize(obj: Any, depth: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and std of a torchvision ``Normalize`` in a dataset's transform chain, if any."""
    if obj is None or depth > 6:
        return None
    if type(obj).__name__ == "Normalize" and hasattr(obj, "mean"):
        return np.asarray(obj.mean, dtype=np.float32), np.asarray(obj.std, dtype=np.float32)
    for attr in ("transform", "transforms", "dataset", "datasets"):
        child = getattr(obj, attr, None)
        for item in child if isinstance(child, list | tuple) else [child]:
            if item is not obj and (found := _find_normalize(item, depth + 1)) is not None:
                return found
    return None


def display_images(dataset: ImageDataset, indices: np.ndarray) -> np.ndarray:
    """The val images as the model saw them (imagenet-style datasets at their crop), un-normalised.

    A torchvision ``Normalize`` in the split's transform is inverted exactly; datasets normalised
    otherwise with one positive affine map for all pixels (the embedded digits) are inverted up to the
    display range by a min-max scaling per image, which is the same thing for such a map.

    Args:
        dataset: the dataset.
        indices: val indices.

    Returns:
        (n, H, W, 3) uint8.
    """
    data = dataset.split("val")
    norm = _find_normalize(data)
    out = []
    for i in np.asarray(indices).tolist():
        x = data[int(i)][0]
        x = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if norm is not None:
            mean, std = norm
            x = np.clip(x * std[:, None, None] + mean[:, None, None], 0.0, 1.0)
        else:
            lo, hi = float(x.min()), float(x.max())
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        if x.shape[0] == 1:
            x = np.repeat(x, 3, axis=0)
        out.append((x.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8))
    return np.stack(out)


def job_heatmaps(
    cfg: dict[str, Any],
    interp: Interpreter,
    ctx: InterpretContext,
    fit_full: Any,
    fits: dict[int, Any],
) -> JobHeatmaps | None:
    """Heatmaps of the full-data fit and every rho's coreset fit of a job.

    Args:
        cfg: the job config (``viz`` block, names).
        interp: the interpreter.
        ctx: the context.
        fit_full: the full-data fit.
        fits: percent -> coreset fit (the first selection seed's).

    Returns:
        The arrays, or None when ``viz.enabled`` is false.
    """
    vcfg = VizConfig.from_cfg(cfg)
    if not vcfg.enabled:
        return None
    indices = choose_images(ctx.val.labels, vcfg.heatmap_classes, vcfg.heatmap_images, vcfg.seed)
    k = vcfg.heatmap_k
    out = JobHeatmaps(
        meta={
            "dataset": str(cfg["dataset"]["name"]),
            "model": str(cfg["model"]["name"]),
            "selector": str(cfg["selector"]["name"]),
            "interpreter": interp.name,
            "k": k,
            "percents": sorted(int(p) for p in fits),
            "labels": ctx.val.labels[indices].tolist(),
        },
        indices=indices,
        full=fit_heatmaps(interp, fit_full, ctx, indices, k),
    )
    for p, fit in sorted(fits.items()):
        out.per_percent[int(p)] = fit_heatmaps(interp, fit, ctx, indices, k)
        if interp.name == "vebi" and hasattr(interp, "unit_maps"):
            out.vebi[int(p)] = vebi_unit_panels(
                interp, fit_full, fit, ctx, vcfg.vebi_units, vcfg.heatmap_images
            )
    wanted = set(indices.tolist())
    for panels in out.vebi.values():
        for panel in panels:
            wanted.update(panel.images.tolist())
    order = np.asarray(sorted(wanted), dtype=np.int64)
    pics = display_images(ctx.dataset, order)
    out.images = {int(i): pic for i, pic in zip(order.tolist(), pics, strict=True)}
    out.meta["input_size"] = list(pics.shape[1:3])
    return out
