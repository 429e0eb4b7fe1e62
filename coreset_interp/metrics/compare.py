"""Comparing interpretations: Phi per class between a full-data fit and other fits, and the references
that put Phi on a scale (the null reference of a random-weights model; the noise floor lives in
:mod:`coreset_interp.reality` for now).

The class-outer loop: for each val class c the full-data side (maps of the full fit, centred and whitened)
is prepared once, compared with every other fit (each rho's coreset fit and the null reference) and dropped
before the next class, so memory holds one class, never all of them. Paired methods (VEBI, whose full-side
maps depend on the coreset fit) go through ``Interpreter.paired_phi`` per pair instead. Each (pair, class)
result is cached in a per-pair log (:mod:`coreset_interp.metrics.compare_log`), so a killed job resumes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from coreset_interp.interpreters import ClassPhi, InterpretContext, Interpreter
from coreset_interp.metrics.compare_log import (
    COMPARISON_DIR,
    COMPARISON_VERSION,
    ComparisonLog,
    comparison_key,
)
from coreset_interp.metrics.shape import angular_distance_prepared, prepare
from coreset_interp.metrics.shape_torch import angular_distance_prepared_torch, prepare_torch
from coreset_interp.results import ANGULAR_DISTANCE, PHI_MISSING, PHI_PER_CLASS, PHI_PER_LAYER

if TYPE_CHECKING:
    from coreset_interp.config import JobConfig
    from coreset_interp.workspace import Workspace

log = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "torch")
__all__ = [
    "BACKENDS",
    "COMPARISON_DIR",
    "COMPARISON_VERSION",
    "ComparedFit",
    "ComparisonLog",
    "PhiComparer",
    "compare_class_outer",
    "comparison_key",
    "null_fit",
    "null_model_config",
    "phi_summary",
    "resolve_backend",
    "summarise_phi",
]


@dataclass(frozen=True)
class ComparedFit:
    """One fit to compare with the full-data fit.

    Attributes:
        fit: the fit.
        key: its cache key (the fit artifact's key), or None to compute without caching the results.
        ctx: its context when it belongs to another model (the null reference); None = the full fit's.
    """

    fit: Any
    key: str | None = None
    ctx: InterpretContext | None = None


def _log_path(
    interp: Interpreter, ctx: InterpretContext, full_key: str | None, other: ComparedFit, alpha: float
) -> Path | None:
    if full_key is None or other.key is None:
        return None
    val_other = (other.ctx or ctx).val.path.name
    key = comparison_key(interp, full_key, other.key, alpha, ctx.val.path.name, val_other)
    return ctx.cache.root / COMPARISON_DIR / f"{key}.jsonl"


def resolve_backend(backend: str, device: torch.device) -> str:
    """Args:
        backend: ``auto`` (torch on CUDA, numpy on the CPU, where both measure alike), ``numpy`` or ``torch``.
        device: the job's device.

    Returns:
        ``numpy`` or ``torch``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"metric.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "torch" if device.type == "cuda" else "numpy"
    return backend


def _finite_or_none(phi: float) -> float | None:
    return float(phi) if math.isfinite(phi) else None


def compare_class_outer(
    interp: Interpreter,
    ctx: InterpretContext,
    fit_full: Any,
    full_key: str | None,
    others: Sequence[ComparedFit],
    alpha: float,
    *,
    backend: str = "numpy",
    desc: str = "compare",
) -> list[dict[int, ClassPhi]]:
    """Phi per val class between ``fit_full`` and each of ``others``, class-outer, with cached results.

    Args:
        interp: the interpreter.
        ctx: the full fit's context (its val split defines the classes).
        fit_full: the full-data fit.
        full_key: its cache key; None disables result caching for every pair.
        others: the fits to compare with.
        alpha: partial-whitening alpha.
        backend: ``numpy`` or ``torch`` (float64 on ``ctx.device``).
        desc: progress bar label.

    Returns:
        For each of ``others`` in order, phi per class.
    """
    logs = [ComparisonLog(_log_path(interp, ctx, full_key, o, alpha)) for o in others]
    results = [entry.load() for entry in logs]
    classes = [int(c) for c in ctx.val.classes()]
    reused = sum(len(r) for r in results)
    if reused:
        log.info("comparisons: reusing %d cached (pair, class) results", reused)
    if backend == "torch":
        prep: Any = lambda z: prepare_torch(np.asarray(z), alpha, ctx.device)  # noqa: E731
        distance: Any = angular_distance_prepared_torch
    else:
        prep = lambda z: prepare(np.asarray(z, dtype=np.float64), alpha)  # noqa: E731
        distance = angular_distance_prepared
    # One BLAS thread for these per-class problems (a few hundred rows): measured under load on this
    # 2-core machine, prepare + compare of a (144, 512) pair took 1.9 s with 2 OpenBLAS threads, 0.023 s
    # with 1.
    with threadpool_limits(limits=1, user_api="blas"):
        for c in tqdm(classes, desc=desc, disable=not ctx.progress, leave=False):
            pending = [i for i in range(len(others)) if c not in results[i]]
            if not pending:
                continue
            idx = ctx.val.class_indices(c)
            if interp.paired:
                for i in pending:
                    o = others[i]
                    value = interp.paired_phi(fit_full, o.fit, ctx, idx, alpha, o.ctx)
                    results[i][c] = value
                    logs[i].append(c, value)
                continue
            full_side = prep(interp.maps(fit_full, ctx, idx))
            for i in pending:
                o = others[i]
                other_side = prep(interp.maps(o.fit, o.ctx or ctx, idx))
                value = ClassPhi(_finite_or_none(distance(full_side, other_side)))
                del other_side
                results[i][c] = value
                logs[i].append(c, value)
            # Dropped before the next class: peak memory is one class's, whatever the class count.
            del full_side
    return [{c: r[c] for c in classes if c in r} for r in results]


class PhiComparer:
    """Per-class angular distances between full-data maps and other fits' maps, class-outer: the full side
    of a class is prepared once, compared with every fit passed together, and freed (see
    :func:`compare_class_outer`, which also caches each (pair, class) result when keys are given).

    Args:
        interp: the interpreter.
        ctx: its context.
        fit_full: the full-data fit.
        alpha: partial-whitening alpha.
        full_key: the full fit's cache key (None: results are not cached).
        backend: ``auto``, ``numpy`` or ``torch`` (``metric.backend``).
    """

    def __init__(
        self,
        interp: Interpreter,
        ctx: InterpretContext,
        fit_full: Any,
        alpha: float,
        full_key: str | None = None,
        backend: str = "auto",
    ) -> None:
        self.interp = interp
        self.ctx = ctx
        self.fit_full = fit_full
        self.alpha = alpha
        self.full_key = full_key
        self.backend = resolve_backend(backend, ctx.device)

    def per_class(self, fit_other: Any, ctx_other: InterpretContext | None = None) -> dict[int, ClassPhi]:
        """Args:
            fit_other: a coreset fit (or the null reference's fit).
            ctx_other: the context of ``fit_other`` when it belongs to another model; None = same model.

        Returns:
            phi per val class (``phi`` None where a side has zero variance and the angle is undefined).
        """
        return self.compare_many([ComparedFit(fit_other, None, ctx_other)])[0]

    def compare_many(self, others: list[ComparedFit]) -> list[dict[int, ClassPhi]]:
        """Compare the full fit with several fits in one class-outer pass.

        Args:
            others: the fits (with their cache keys to cache and resume per class).

        Returns:
            For each fit in order, phi per val class.
        """
        return compare_class_outer(
            self.interp,
            self.ctx,
            self.fit_full,
            self.full_key,
            others,
            self.alpha,
            backend=self.backend,
            desc=f"compare {self.interp.name}",
        )


def summarise_phi(per_class: dict[int, ClassPhi]) -> dict[str, Any]:
    """The result keys of one comparison (Eq. 1: Phi = the mean over classes of the defined phi_c).

    Args:
        per_class: phi per class from :meth:`PhiComparer.per_class`.

    Returns:
        ``angular_distance``, ``angular_distance_per_class``, ``angular_distance_missing`` and, for methods
        compared per layer, ``angular_distance_per_layer`` (layer -> ``mean`` over the classes where that
        layer was defined, and ``n_classes``).
    """
    finite = [v.phi for v in per_class.values() if v.phi is not None]
    out: dict[str, Any] = {
        ANGULAR_DISTANCE: float(np.mean(finite)) if finite else None,
        PHI_PER_CLASS: {str(c): v.phi for c, v in per_class.items()},
        PHI_MISSING: sum(v.phi is None for v in per_class.values()),
    }
    layers: dict[str, list[float]] = {}
    for v in per_class.values():
        for name, phi in v.per_layer.items():
            layers.setdefault(name, [])
            if phi is not None:
                layers[name].append(phi)
    if layers:
        out[PHI_PER_LAYER] = {
            name: {"mean": float(np.mean(vals)) if vals else None, "n_classes": len(vals)}
            for name, vals in layers.items()
        }
    return out


def null_model_config(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Args:
        cfg: the job config.
        seed: the interpretation seed (also the random weights' seed).

    Returns:
        The ``model`` config of the null reference: the job's architecture with random weights.
    """
    return {**dict(cfg["model"]), "weights": "random", "train": {**dict(cfg["model"]["train"]), "seed": seed}}


def null_fit(
    ws: Workspace, cfg: JobConfig | Mapping[str, Any], interp: Interpreter, ctx: InterpretContext, seed: int
) -> ComparedFit:
    """The null reference's full-data fit on the randomised-weights model (the model-parameter
    randomisation test: Phi against it is a scale for "unrelated" beside Phi).

    Args:
        ws: the workspace.
        cfg: the job config.
        interp: the interpreter.
        ctx: the trained model's context.
        seed: interpretation seed (also the random weights' seed).

    Returns:
        The fit with its cache key and its context.
    """
    # Imported here: the workspace and the fit stages import this module.
    from coreset_interp.config import raw_config
    from coreset_interp.models import get_model
    from coreset_interp.pipeline import fit_interpreter, fit_key
    from coreset_interp.workspace import activations_for

    rcfg = null_model_config(raw_config(cfg), seed)
    model, info = get_model(**rcfg).load(ws.dataset, ws.cache, ws.device, progress=False)
    mspec = info["spec"]
    # Only what the interpreter reads (ICE, topic: maps; VEBI: train energies), one pass per split.
    train, ktrain = activations_for(
        ws.cache, model, mspec, ws.dataset, "train", ws.device, cfg, interp.store_parts("train"),
        ws.extraction, "null",
    )  # fmt: skip
    val, _ = activations_for(
        ws.cache, model, mspec, ws.dataset, "val", ws.device, cfg, interp.store_parts("val"),
        ws.extraction, "null",
    )  # fmt: skip
    rctx = replace(ctx, model=model, train=train, val=val, model_key=ktrain)
    fit_null, _ = fit_interpreter(interp, rctx, np.arange(train.n, dtype=np.int64), seed, None)
    return ComparedFit(fit_null, fit_key(interp, rctx, seed, None), rctx)


def phi_summary(per_class: dict[int, ClassPhi]) -> dict[str, Any]:
    """A reference's Phi summary (the null reference, the noise floor's resamples, the cascade's steps).

    Args:
        per_class: phi per class of one pair of fits.

    Returns:
        ``angular_distance`` (mean over classes), ``angular_distance_per_class``, ``missing``.
    """
    summary = summarise_phi(per_class)
    summary["missing"] = summary.pop(PHI_MISSING)
    return summary
