"""A job's per-rho results: the coreset fits the pipeline computes and the result entries built from them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from coreset_interp.interpreters import ClassPhi, Interpreter
from coreset_interp.metrics.compare import summarise_phi
from coreset_interp.results import ANGULAR_DISTANCE, PHI_MISSING, PHI_PER_CLASS, RatioEntry


@dataclass(frozen=True)
class CoresetFit:
    """One rho's coreset and its fit."""

    ratio: float
    indices: np.ndarray
    select_seconds: float
    key: str
    fit: Any
    fit_seconds: float


def ratio_entry(
    interp: Interpreter,
    fit_full: Any,
    full_seconds: float,
    f: CoresetFit,
    per_class: dict[int, ClassPhi],
    evaluation: dict[str, Any],
    job_warnings: list[str],
) -> dict[str, Any]:
    """One rho's entry of result.json (before the selection-seed and normalisation keys).

    Args:
        interp: the interpreter.
        fit_full: the full-data fit.
        full_seconds: its fit time.
        f: the rho's coreset and fit.
        per_class: its phi per val class.
        evaluation: its evaluation on the val split (:func:`coreset_interp.pipeline.evaluate_fit`).
        job_warnings: receives a warning when phi is undefined for some class.

    Returns:
        The entry (:meth:`RatioEntry.to_json`).
    """
    missing = [c for c, v in per_class.items() if v.phi is None]
    if missing:
        msg = (
            f"rho={f.ratio:g}: angular distance undefined (zero variance, or no layer common to both fits) "
            f"for {len(missing)} class(es) {missing[:10]}; left out of the mean"
        )
        warnings.warn(msg, stacklevel=1)
        job_warnings.append(msg)
    phi = summarise_phi(per_class)
    t_rho = f.select_seconds + f.fit_seconds
    entry = RatioEntry(
        ratio=f.ratio,
        percent=int(round(f.ratio * 100)),
        n_selected=int(len(f.indices)),
        angular_distance=phi.pop(ANGULAR_DISTANCE),
        angular_distance_per_class=phi.pop(PHI_PER_CLASS),
        angular_distance_missing=phi.pop(PHI_MISSING),
        select_seconds=f.select_seconds,
        fit_seconds=f.fit_seconds,
        speedup=full_seconds / t_rho if t_rho > 0 else None,
        metrics={
            **evaluation,
            **phi,
            **interp.describe(f.fit),
            **interp.compare(fit_full, f.fit),
        },
    )
    return entry.to_json()
