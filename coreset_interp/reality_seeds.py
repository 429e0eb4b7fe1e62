"""Selection seeds: a rho's entry over several seeds of the coreset selection (``selection_seeds``), mean and
std, with one entry per seed kept in ``by_selection_seed``; the interpretation seed stays the job's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from coreset_interp import results
from coreset_interp.interpreters import InterpretContext, Interpreter
from coreset_interp.reality_floor import finite

_SEED_KEYS = (
    "selection_seed",
    results.N_SELECTED,
    "accuracy",
    results.ANGULAR_DISTANCE,
    results.PHI_PER_CLASS,
)


def selection_seeds(cfg: dict[str, Any]) -> list[int]:
    """Args:
        cfg: the job config (``selection_seeds``; default ``[seed]``).

    Returns:
        The selection seeds, unique, in order.
    """
    from coreset_interp.pipeline import ConfigError

    raw = cfg["selection_seeds"]
    if raw is None:
        raw = [cfg["seed"]]
    if isinstance(raw, int | float | str):
        raw = [raw]
    out: list[int] = []
    for s in list(raw):
        try:
            value = int(s)
        except (TypeError, ValueError):
            raise ConfigError(f"selection_seeds must be integers, got {s!r}") from None
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError("selection_seeds is empty")
    return out


def combine_selection_seeds(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One rho's entry over several selection seeds.

    Args:
        entries: the rho's entries, one per selection seed (each with ``selection_seed``).

    Returns:
        The first seed's entry with the numbers every seed reports replaced by their means over seeds
        (method extras stay the first seed's), plus
        ``angular_distance_std`` and ``accuracy_std`` (std over seeds; 0 for one seed),
        ``selection_seeds`` and ``by_selection_seed`` (each seed's own values).
    """
    out = dict(entries[0])
    if len(entries) > 1:
        for key, value in entries[0].items():
            if isinstance(value, bool) or not isinstance(value, int | float) or key == "selection_seed":
                continue
            vals = [e.get(key) for e in entries]
            if all(isinstance(v, int | float) and math.isfinite(v) for v in vals):
                out[key] = float(np.mean(vals))
        classes = entries[0].get(results.PHI_PER_CLASS) or {}
        out[results.PHI_PER_CLASS] = {
            c: (
                float(np.mean(vals))
                if (vals := finite(e[results.PHI_PER_CLASS].get(c) for e in entries))
                else None
            )
            for c in classes
        }
        phis = finite(e.get(results.ANGULAR_DISTANCE) for e in entries)
        out[results.ANGULAR_DISTANCE] = float(np.mean(phis)) if phis else None
    for key in (results.ANGULAR_DISTANCE, "accuracy"):
        vals = finite(e.get(key) for e in entries)
        out[f"{key}_std"] = float(np.std(vals)) if vals else None
    out["selection_seeds"] = [int(e["selection_seed"]) for e in entries]
    out[results.BY_SELECTION_SEED] = [{k: e.get(k) for k in _SEED_KEYS} for e in entries]
    out.pop("selection_seed", None)
    return out


def with_selection_seeds(
    entry: dict[str, Any],
    ws: Any,
    cfg: dict[str, Any],
    interp: Interpreter,
    ctx: InterpretContext,
    comparer: Any,
    seeds: list[int],
    seed: int,
) -> dict[str, Any]:
    """A rho's entry (computed with the first selection seed) extended by the other selection seeds.

    Each further seed repeats only the selection and the coreset fit (interpretation seed ``seed``).

    Args:
        entry: the rho's entry from ``seeds[0]``.
        ws: the workspace.
        cfg: the job config.
        interp: the interpreter.
        ctx: the context.
        comparer: the :class:`~coreset_interp.pipeline.PhiComparer` of the full-data fit.
        seeds: the selection seeds (``seeds[0]`` made ``entry``).
        seed: the interpretation seed.

    Returns:
        :func:`combine_selection_seeds` over all seeds (means of the numbers every seed reports).
    """
    from coreset_interp.pipeline import evaluate_fit, fit_interpreter, select_coreset, summarise_phi

    rho = float(entry["ratio"])
    out = [{**entry, "selection_seed": int(seeds[0])}]
    for sseed in seeds[1:]:
        indices, select_seconds, ckey = select_coreset(ws, cfg, rho, sseed)
        fit, fit_seconds = fit_interpreter(interp, ctx, indices, seed, ckey)
        out.append(
            {
                "selection_seed": int(sseed),
                results.N_SELECTED: int(len(indices)),
                **evaluate_fit(interp, ctx, fit, ckey, seed),
                **summarise_phi(comparer.per_class(fit)),
                results.SELECT_SECONDS: select_seconds,
                results.FIT_SECONDS: fit_seconds,
            }
        )
    return combine_selection_seeds(out)
