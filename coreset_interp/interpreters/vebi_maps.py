"""VEBI units' activation maps at their own layer's resolution (the heatmaps of SPEC section 4b).

:meth:`VEBI.maps` pools every unit to the last conv block's size for the shape metric; a heatmap wants
each unit where it fires, at its layer's resolution.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from coreset_interp.interpreters.base import InterpretContext
from coreset_interp.interpreters.vebi_units import ReluCalls, StopForward


def native_unit_maps(
    ctx: InterpretContext, fit: Any, indices: np.ndarray, units: np.ndarray
) -> dict[int, np.ndarray]:
    """Unpooled maps of some units for some val images.

    Args:
        ctx: the context.
        fit: a VEBI fit (for the units' layers).
        indices: val indices.
        units: global unit indices.

    Returns:
        ReLU call -> (len(indices), units of that call in the order of ``units``, h_call, w_call).
    """
    units = np.asarray(units, dtype=np.int64)
    calls, channels = fit.unit_positions(units)
    wanted: dict[int, np.ndarray] = {}
    for call in dict.fromkeys(calls.tolist()):
        wanted[int(call)] = channels[calls == call]
    last = max(wanted)
    parts: dict[int, list[np.ndarray]] = {c: [] for c in wanted}
    data = Subset(ctx.dataset.split("val"), np.asarray(indices).tolist())
    loader = DataLoader(data, batch_size=ctx.batch_size, shuffle=False, num_workers=ctx.num_workers)
    for x, _ in loader:
        got: dict[int, torch.Tensor] = {}

        def grab(i: int, a: torch.Tensor, got: dict[int, torch.Tensor] = got) -> None:
            if i in wanted:
                # Copied at once: an in-place ReLU's output is modified by later operations.
                got[i] = a.index_select(1, torch.as_tensor(wanted[i], device=a.device)).float().clone()
            if i == last:
                raise StopForward

        with torch.no_grad(), ReluCalls(ctx.model, grab) as hooks:
            hooks.reset()
            with contextlib.suppress(StopForward):
                ctx.model(x.to(ctx.device))
        if set(got) != set(wanted):
            raise RuntimeError(f"vebi: ReLU calls {sorted(set(wanted) - set(got))} never happened")
        for c in wanted:
            parts[c].append(got[c].cpu().numpy())
    return {c: np.concatenate(p) for c, p in parts.items()}


def image_unit_maps(ctx: InterpretContext, fit: Any, indices: np.ndarray) -> list[list[np.ndarray]]:
    """Each val image's class's relevant units, one group per layer (the heatmaps' Z^i for VEBI).

    Args:
        ctx: the context.
        fit: a VEBI fit.
        indices: val indices (any classes).

    Returns:
        Per image, groups (units of one layer, h, w); a single zero map for a class without units.
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = ctx.val.labels[indices]
    _, h, w = ctx.val.map_shape
    out: list[list[np.ndarray]] = [[] for _ in indices]
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        units = fit.top(int(c))
        if len(units) == 0:
            for p in pos:
                out[p] = [np.zeros((1, h, w), dtype=np.float32)]
            continue
        groups = native_unit_maps(ctx, fit, indices[pos], units)
        for j, p in enumerate(pos):
            out[p] = [g[j] for g in groups.values()]
    return out
