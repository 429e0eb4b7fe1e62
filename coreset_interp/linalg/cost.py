"""Operation counts of the torch NMF (:mod:`coreset_interp.linalg.nmf`: its ``sketched`` solver on a CPU,
``hals`` on a GPU), for the planner (:mod:`coreset_interp.plan_costs`), whose profiles hold the two
per-device constants.
"""

from __future__ import annotations

from coreset_interp.linalg.nmf import SKETCH_OVERSAMPLES
from coreset_interp.linalg.sketch import auto_power_iterations


def nmf_units(rows: float, d: float, r: int, solver: str = "sketched") -> tuple[float, float]:
    """Multiply-adds of one fit: (the sketch and the final objective, one sweep).

    The sketch (k = r + 10 columns, 7 power iterations), which both solvers' nndsvda initialisation
    computes, is 16 products of X with an n x k or d x k matrix, the objective one rows x d x r product
    plus a few passes over X. A ``sketched`` sweep works on the sketch only, (rows + d) r (2 k + r); a
    ``hals`` sweep multiplies X itself twice (X H^T and W^T X, 2 rows d r) and updates from the r x r
    Grams, (rows + d) r^2.

    Args:
        rows: rows of X.
        d: columns.
        r: components.
        solver: ``sketched`` or ``hals``.

    Returns:
        (multiply-adds paid once, multiply-adds per sweep).
    """
    k = min(rows, d, r + SKETCH_OVERSAMPLES)
    power = auto_power_iterations(r, int(rows), int(d))
    once = rows * d * ((2 * power + 2) * k + r + 4)
    if solver == "hals":
        return once, 2 * rows * d * r + (rows + d) * r * r
    return once, (rows + d) * r * (2 * k + r)


def nmf_seconds(
    unit: float,
    sweep_latency: float,
    rows: float,
    d: float,
    r: int,
    iters: int,
    fit: bool = True,
    solver: str = "sketched",
) -> float:
    """Seconds of one torch NMF fit (or, ``fit=False``, one transform with fixed components).

    Args:
        unit: seconds per multiply-add of the products with X on the device.
        sweep_latency: fixed seconds per sweep (its ~4 r short kernels).
        rows: rows of X.
        d: columns.
        r: components.
        iters: sweeps.
        fit: a fit (sketch + sweeps + objective) or a transform (one rows x d x r product, then sweeps on
            W only: r^2 per row and half the fit's short kernels).
        solver: the fit's solver (``sketched`` on a CPU, ``hals`` on a GPU).

    Returns:
        Estimated seconds.
    """
    if fit:
        once, sweep = nmf_units(rows, d, r, solver)
        return unit * (once + iters * sweep) + iters * sweep_latency
    return unit * rows * r * (d + iters * r) + iters * sweep_latency / 2
