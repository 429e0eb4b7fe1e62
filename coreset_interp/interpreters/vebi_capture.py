"""Forward passes that capture some VEBI units' activation maps of val images (one job: the hooks).

A pass stops after the last wanted ReLU call (:func:`capture_calls`); :func:`pooled_maps` pools the units
to the last conv block's size (display maps), :func:`layer_maps` keeps each layer's own resolution (Phi).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from coreset_interp.interpreters.base import InterpretContext
from coreset_interp.interpreters.vebi_fit import VEBIFit
from coreset_interp.interpreters.vebi_units import ReluCalls, StopForward


def val_images(ctx: InterpretContext, indices: np.ndarray) -> Iterator[torch.Tensor]:
    """Args:
        ctx: the context.
        indices: val indices.

    Returns:
        The images in batches of ``ctx.batch_size``, on the context's device.
    """
    data = Subset(ctx.dataset.split("val"), np.asarray(indices).tolist())
    loader = DataLoader(data, batch_size=ctx.batch_size, shuffle=False, num_workers=ctx.num_workers)
    for x, _ in loader:
        yield x.to(ctx.device)


def rows(z: np.ndarray) -> np.ndarray:
    """Args:
        z: (n, k, h, w) maps.

    Returns:
        Image-major positions as rows (n*h*w, k), the layout of ActivationStore.positions.
    """
    return z.transpose(0, 2, 3, 1).reshape(-1, z.shape[1])


def empty_maps(ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
    """Args:
        ctx: the context.
        indices: val indices.

    Returns:
        One constant column: a side without units has no variance, so Phi reports it as missing.
    """
    _, h, w = ctx.val.map_shape
    return np.zeros((len(indices) * h * w, 1), dtype=np.float32)


def pooled_maps(ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Activation maps of some units for some val images, pooled to the last conv block's h x w.

    Args:
        ctx: the context (its model runs the forward passes).
        fit: a fit (its unit layers).
        indices: val indices.
        units: global unit indices.

    Returns:
        (n, len(units), h, w) float32, channels in the order of ``units``.
    """
    _, h, w = ctx.val.map_shape
    wanted = fit.by_layer(units)
    calls, channels = fit.unit_positions(units)
    sel = {call: torch.as_tensor(ch, dtype=torch.int64) for call, ch in wanted.items()}
    out: list[np.ndarray] = []
    for x in val_images(ctx, indices):
        got = capture_calls(
            ctx.model,
            x,
            {
                call: lambda a, s=s: F.adaptive_avg_pool2d(a.index_select(1, s.to(a.device)).float(), (h, w))
                for call, s in sel.items()
            },
        )
        cols = [
            got[int(c)][:, int(np.searchsorted(wanted[int(c)], ch))]
            for c, ch in zip(calls, channels, strict=True)
        ]
        out.append(torch.stack(cols, dim=1).cpu().numpy())
    return np.concatenate(out)


def layer_maps(
    ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, wanted: dict[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """Activation maps of some channels of some layers at each layer's own resolution.

    Args:
        ctx: the context (its model runs the forward passes).
        fit: a fit (its unit layers).
        indices: val indices.
        wanted: call index -> sorted channels of that call.

    Returns:
        call index -> (n, len(channels), h_call, w_call) float32.
    """
    sel = {call: torch.as_tensor(ch, dtype=torch.int64) for call, ch in wanted.items()}
    parts: dict[int, list[np.ndarray]] = {call: [] for call in wanted}
    for x in val_images(ctx, indices):
        # index_select copies: the output of an in-place ReLU is modified later in the pass.
        got = capture_calls(
            ctx.model,
            x,
            {call: lambda a, s=s: a.index_select(1, s.to(a.device)).float().cpu() for call, s in sel.items()},
        )
        for call, t in got.items():
            parts[call].append(t.numpy())
    return {call: np.concatenate(p) for call, p in parts.items()}


def capture_calls(
    model: torch.nn.Module, x: torch.Tensor, take: dict[int, Callable[[torch.Tensor], torch.Tensor]]
) -> dict[int, torch.Tensor]:
    """One forward pass of a batch, stopped after the last wanted ReLU call.

    Args:
        model: the adapter.
        x: the batch (on the model's device).
        take: ReLU call index -> what to keep of that call's output.

    Returns:
        call index -> ``take[call](output)``.
    """
    last = max(take)
    got: dict[int, torch.Tensor] = {}

    def grab(i: int, a: torch.Tensor) -> None:
        if i in take:
            got[i] = take[i](a)
        if i == last:
            raise StopForward

    with torch.no_grad(), ReluCalls(model, grab) as hooks:
        hooks.reset()
        with contextlib.suppress(StopForward):
            model(x)
    if set(got) != set(take):
        raise RuntimeError(f"vebi: ReLU calls {sorted(set(take) - set(got))} never happened")
    return got
