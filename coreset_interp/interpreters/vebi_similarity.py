"""VEBI's Phi of one class, layer by layer: each fit's top-N units of every layer both fits use."""

from __future__ import annotations

import logging

import numpy as np

from coreset_interp.interpreters.base import ClassPhi, InterpretContext
from coreset_interp.interpreters.vebi_capture import layer_maps, rows
from coreset_interp.interpreters.vebi_fit import VEBIFit

log = logging.getLogger("coreset_interp.interpreters.vebi")


def layer_pairs(fit_full: VEBIFit, fit_other: VEBIFit, c: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The units compared per layer for one class.

    Args:
        fit_full: the full-data fit.
        fit_other: the other fit (same architecture).
        c: the class.

    Returns:
        call index -> (full fit's, other fit's) top-N global unit indices of that layer by weight,
        N = the smaller count in that layer; only layers where both fits have a unit of class ``c``.
    """
    if [la.key for la in fit_full.layers] != [la.key for la in fit_other.layers]:
        raise ValueError("vebi: the two fits have different unit layers (different architectures)")
    a, b = fit_full.top(c), fit_other.top(c)
    calls_a, _ = fit_full.unit_positions(a)
    calls_b, _ = fit_other.unit_positions(b)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for call in sorted(set(calls_a.tolist()) & set(calls_b.tolist())):
        # top() is by decreasing weight, so the first units of a layer are its top ones.
        ua, ub = a[calls_a == call], b[calls_b == call]
        n = min(len(ua), len(ub))
        out[int(call)] = (ua[:n], ub[:n])
    return out


def layer_phi(
    fit_full: VEBIFit,
    fit_coreset: VEBIFit,
    ctx: InterpretContext,
    indices: np.ndarray,
    alpha: float,
    ctx_other: InterpretContext | None = None,
) -> ClassPhi:
    """Phi of one class, layer by layer (see :mod:`coreset_interp.interpreters.vebi`).

    Args:
        fit_full: the full-data fit.
        fit_coreset: the other fit (a coreset's, or the null reference's on another model).
        ctx: the context of ``fit_full``.
        indices: val indices of one class.
        alpha: partial-whitening alpha.
        ctx_other: the context of ``fit_coreset`` when it belongs to another model; None = ``ctx``.

    Returns:
        phi_c = the mean of the defined per-layer phi (None when no layer is common to both fits or
        none is defined), and ``per_layer`` = layer key -> phi (None where a side has no variance).
    """
    from coreset_interp.metrics.shape import angular_distance_prepared, prepare

    c = int(ctx.val.labels[indices[0]])
    pairs = layer_pairs(fit_full, fit_coreset, c)
    if not pairs:
        log.warning("vebi: class %d has no layer with relevant units in both fits; phi is missing", c)
        return ClassPhi(None, {})
    chans_a = {call: fit_full.unit_positions(ua)[1] for call, (ua, _) in pairs.items()}
    chans_b = {call: fit_coreset.unit_positions(ub)[1] for call, (_, ub) in pairs.items()}
    if ctx_other is None or ctx_other.model is ctx.model:
        # One forward pass serves both sides when they share the model.
        union = {call: np.union1d(chans_a[call], chans_b[call]) for call in pairs}
        maps_a = layer_maps(ctx, fit_full, indices, union)
        maps_b = maps_a
        pos_a = {call: np.searchsorted(union[call], chans_a[call]) for call in pairs}
        pos_b = {call: np.searchsorted(union[call], chans_b[call]) for call in pairs}
    else:
        sorted_a = {call: np.sort(ch) for call, ch in chans_a.items()}
        sorted_b = {call: np.sort(ch) for call, ch in chans_b.items()}
        maps_a = layer_maps(ctx, fit_full, indices, sorted_a)
        maps_b = layer_maps(ctx_other, fit_coreset, indices, sorted_b)
        pos_a = {call: np.searchsorted(sorted_a[call], chans_a[call]) for call in pairs}
        pos_b = {call: np.searchsorted(sorted_b[call], chans_b[call]) for call in pairs}
    per_layer: dict[str, float | None] = {}
    for call in pairs:
        z_a = rows(maps_a[call][:, pos_a[call]]).astype(np.float64)
        z_b = rows(maps_b[call][:, pos_b[call]]).astype(np.float64)
        phi = angular_distance_prepared(prepare(z_a, alpha), prepare(z_b, alpha))
        per_layer[fit_full.layers[call].key] = float(phi) if np.isfinite(phi) else None
    defined = [v for v in per_layer.values() if v is not None]
    return ClassPhi(float(np.mean(defined)) if defined else None, per_layer)
