"""The noise floor and the normalised score (SPEC section 5).

- **Noise floor** (:func:`noise_floor`): Phi between two fits on two bootstrap resamples of the full train
  split (per class, the class's size, with replacement), each with its own interpretation seed; with more
  resamples, the mean over all pairs. A seed alone is not enough: ICE's nndsvda start and VEBI's lasso are
  deterministic, so two seeds would give a floor of 0. The resamples keep their duplicates: every
  interpreter takes repeated indices (ICE stacks a repeated image's positions twice, so NMF weights it
  twice; VEBI's Gram counts its row twice; topic draws it twice as often), which is what a bootstrap means.
  Cached per model x interpreter.
- **Normalised score** (:func:`normalise`): phi_normalised = (Phi - floor) / (null - floor), 0 = as good as
  a fresh sample of the full data, 1 = as unrelated as a random model.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from coreset_interp import results
from coreset_interp.cache import spec_key
from coreset_interp.interpreters import InterpretContext, Interpreter
from coreset_interp.metrics.compare import phi_summary

# Bumped when what the floor or the cascade computes changes (their cached results are keyed by it).
REALITY_VERSION = 2


def bootstrap_key(model_key: str, seed: int, draw: int) -> str:
    """Args:
        model_key: the train activations' key.
        seed: the job's interpretation seed.
        draw: the resample's number.

    Returns:
        The coreset key of bootstrap resample ``draw`` (its fit is keyed like a coreset fit).
    """
    return "bootstrap-" + spec_key({"train": model_key, "seed": seed, "draw": draw})


def bootstrap_seed(seed: int, draw: int) -> int:
    """Args:
        seed: the job's interpretation seed.
        draw: the resample's number.

    Returns:
        The interpretation seed of resample ``draw``'s fit (each resample has its own).
    """
    return seed + 1 + draw


def bootstrap_indices(labels: np.ndarray, seed: int, draw: int) -> np.ndarray:
    """A class-stratified bootstrap resample of the train split.

    Args:
        labels: train labels.
        seed: the job's interpretation seed.
        draw: which resample.

    Returns:
        Sorted train indices with repeats, each class as many times as it has images.
    """
    rng = np.random.default_rng([int(seed), int(draw), 0xB007])
    out = [rng.choice(np.flatnonzero(labels == c), size=int(np.sum(labels == c))) for c in np.unique(labels)]
    return np.sort(np.concatenate(out)).astype(np.int64)


def noise_floor(
    cfg: dict[str, Any],
    interp: Interpreter,
    ctx: InterpretContext,
    seed: int,
    alpha: float,
    comparer: Any | None = None,
) -> dict[str, Any] | None:
    """Phi between fits on bootstrap resamples of the full train split (cached per model x interpreter).

    Args:
        cfg: the job config (``metric.floor``, ``metric.floor_resamples``).
        interp: the interpreter.
        ctx: the trained model's context.
        seed: interpretation seed (resample b is fitted with seed + 1 + b).
        alpha: partial-whitening alpha.
        comparer: the :class:`~coreset_interp.pipeline.PhiComparer` of the full-data fit, to also report
            how far each resample's fit is from it (``vs_full``); None = not reported.

    Returns:
        ``angular_distance`` (mean over pairs of the class mean), ``angular_distance_per_class`` (mean
        over pairs), ``pairs`` (each pair's mean), ``std_over_pairs``, ``resamples``, ``missing``, and
        ``vs_full`` (Phi between the full-data fit and each resample's fit: a bootstrap fit is one noisy
        copy, a pair two, so ``vs_full`` is the smaller); None when ``metric.floor`` is false.
    """
    from coreset_interp.pipeline import ConfigError, PhiComparer, evaluation_spec, fit_interpreter

    mcfg = cfg["metric"]
    if not mcfg["floor"]:
        return None
    resamples = int(mcfg["floor_resamples"])
    if resamples < 2:
        raise ConfigError(f"metric.floor_resamples must be >= 2 (a floor compares two fits), got {resamples}")
    spec = {
        **evaluation_spec(interp, ctx.model_key, ctx.val.path.name, seed),
        "alpha": alpha,
        "resamples": resamples,
        "vs_full": comparer is not None,
        "version": REALITY_VERSION,
    }

    def compute() -> dict[str, Any]:
        fits = []
        for b in range(resamples):
            idx = bootstrap_indices(ctx.train.labels, seed, b)
            key = bootstrap_key(ctx.model_key, seed, b)
            fits.append(fit_interpreter(interp, ctx, idx, bootstrap_seed(seed, b), key)[0])
        pairs = [
            phi_summary(PhiComparer(interp, ctx, fits[a], alpha).per_class(fits[b]))
            for a, b in itertools.combinations(range(resamples), 2)
        ]
        means = [p[results.ANGULAR_DISTANCE] for p in pairs if p[results.ANGULAR_DISTANCE] is not None]
        classes = sorted({c for p in pairs for c in p[results.PHI_PER_CLASS]}, key=int)
        per_class = {}
        for c in classes:
            vals = [v for p in pairs if (v := p[results.PHI_PER_CLASS].get(c)) is not None]
            per_class[c] = float(np.mean(vals)) if vals else None
        vs_full = (
            [phi_summary(comparer.per_class(f))[results.ANGULAR_DISTANCE] for f in fits] if comparer else []
        )
        return {
            "vs_full": vs_full,
            results.ANGULAR_DISTANCE: float(np.mean(means)) if means else None,
            results.PHI_PER_CLASS: per_class,
            "pairs": means,
            "std_over_pairs": float(np.std(means)) if means else None,
            "resamples": resamples,
            "missing": sum(v is None for v in per_class.values()),
        }

    result, _ = ctx.cache.get_or_compute_pickle("noise_floor", spec, compute)
    return dict(result)


def finite(values: Any) -> list[float]:
    """Args:
        values: numbers, None or anything else.

    Returns:
        The finite real numbers among them (booleans left out), as floats.
    """
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


# ------------------------------------------------------------------------------------- normalised Phi
def _norm(phi: Any, floor: Any, null: Any) -> float | None:
    vals = finite([phi, floor, null])
    if len(vals) < 3 or not null - floor > 0:
        return None
    return float((phi - floor) / (null - floor))


def normalise(
    entries: list[dict[str, Any]], floor: dict[str, Any] | None, null: dict[str, Any] | None
) -> None:
    """Add ``phi_normalised`` (class means) and ``phi_normalised_per_class`` to every rho entry, in place.

    Args:
        entries: the rho entries.
        floor: the noise floor (None = not computed: nothing is added).
        null: the null reference (None = not computed: nothing is added).
    """
    if not floor or not null:
        return
    f_c = floor.get(results.PHI_PER_CLASS) or {}
    n_c = null.get(results.PHI_PER_CLASS) or {}
    for e in entries:
        e[results.PHI_NORMALISED] = _norm(
            e.get(results.ANGULAR_DISTANCE),
            floor.get(results.ANGULAR_DISTANCE),
            null.get(results.ANGULAR_DISTANCE),
        )
        e[results.PHI_NORMALISED_PER_CLASS] = {
            c: _norm(v, f_c.get(c), n_c.get(c)) for c, v in (e.get(results.PHI_PER_CLASS) or {}).items()
        }


def normalised_value(phi: Any, floor: dict[str, Any] | None, null: dict[str, Any] | None) -> float | None:
    """Args:
        phi: a Phi (e.g. Table 1's mean).
        floor: the noise floor.
        null: the null reference.

    Returns:
        (phi - floor) / (null - floor), or None when a part is missing.
    """
    if not floor or not null:
        return None
    return _norm(phi, floor.get(results.ANGULAR_DISTANCE), null.get(results.ANGULAR_DISTANCE))
