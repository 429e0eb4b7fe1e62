"""One job's stages: model -> activations -> coreset per rho -> interpretation -> comparison with the full
data, reading like lightning-hydra-template's ``train()``: :func:`run_stages`.

Every step is a function of its inputs plus config, cached in the artifact cache under a hash of exactly
the config that determines it, so the jobs of a sweep share checkpoints, activations, coresets and the
full-data fit (the most expensive artifact). The config is the typed :class:`~coreset_interp.config.JobConfig`
(validated before any work); the job's files and tracker are :mod:`coreset_interp.job`'s, the workspace
:mod:`coreset_interp.workspace`'s, the comparison :mod:`coreset_interp.metrics.compare`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from coreset_interp import reality
from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.config import ConfigError, JobConfig, ratios_from_percents
from coreset_interp.entries import CoresetFit, ratio_entry
from coreset_interp.interpreters import InterpretContext, Interpreter
from coreset_interp.job import run_job
from coreset_interp.metrics.compare import (
    ComparedFit,
    PhiComparer,
    null_fit,
    null_model_config,
    phi_summary,
    summarise_phi,
)
from coreset_interp.models import get_model
from coreset_interp.results import (
    ACCURACY,
    COMPLETED,
    FIT_SECONDS,
    PREPARE_SECONDS,
    JobResult,
    RatioEntry,
    table1_summary,
)
from coreset_interp.selectors import SELECTORS
from coreset_interp.workspace import Workspace, activations_for, build_workspace, resolve_device

log = logging.getLogger(__name__)

#: Callback receiving each finished rho's entry (for trackers and metrics.jsonl).
RatioCallback = Callable[[dict[str, Any]], None]

# Re-exported: callers import these from the pipeline.
__all__ = [
    "ConfigError", "PhiComparer", "RatioCallback", "Workspace", "activations_for", "build_workspace",
    "evaluate_fit", "evaluation_spec", "fit_interpreter", "fit_key", "null_fit", "null_model_config",
    "phi_summary", "ratios_from_percents", "resolve_device", "run", "run_job",
    "run_stages", "select_coreset", "summarise_phi",
]  # fmt: skip


def _timed(fn: Callable[[], Any]) -> dict[str, Any]:
    start = time.perf_counter()
    value = fn()
    return {"value": value, "seconds": time.perf_counter() - start}


def select_coreset(
    ws: Workspace, cfg: dict[str, Any], ratio: float, seed: int
) -> tuple[np.ndarray, float, str]:
    """The cached coreset of the job's selector at one ratio.

    Args:
        ws: the workspace.
        cfg: the job config (``selector`` group).
        ratio: rho.
        seed: selection seed.

    Returns:
        (sorted train indices, selection seconds when it was computed, coreset key).
    """
    features, labels, feat_key = ws.train.g, ws.train.labels, ws.activation_keys["train"]
    # One selector per (node, features) and job: selectors may keep per-class work that does not depend on
    # rho (DGPruning's kNN graphs) for the job's other ratios.
    node_key = ("selector", spec_key(dict(cfg["selector"])), feat_key)
    if node_key not in ws.extras:
        ws.extras[node_key] = SELECTORS.build(cfg["selector"])
    selector = ws.extras[node_key]
    source = selector.source_model()
    if source is not None:
        features, feat_key = _source_features(ws, cfg, source)
    # The key holds every parameter (defaults included) and the code version, not the raw YAML.
    spec = {**selector.key(), "ratio": ratio, "seed": seed, "features": feat_key}
    result, _ = ws.cache.get_or_compute_pickle(
        "coreset", spec, lambda: _timed(lambda: selector.select(features, labels, ratio, seed))
    )
    return np.asarray(result["value"], dtype=np.int64), float(result["seconds"]), spec_key(spec)


def _source_features(
    ws: Workspace, cfg: dict[str, Any], source_cfg: dict[str, Any]
) -> tuple[np.ndarray, str]:
    """Train GAP features of another model (the transfer selector, the paper's Sec. 4.5)."""
    key = spec_key(source_cfg)
    if key not in ws.extras:
        model, info = get_model(**source_cfg).load(ws.dataset, ws.cache, ws.device, bool(cfg["progress"]))
        store, skey = activations_for(
            ws.cache,
            model,
            info["spec"],
            ws.dataset,
            "train",
            ws.device,
            cfg,
            frozenset(),
            ws.extraction,
            "source",
        )
        if not np.array_equal(store.labels, ws.train.labels):
            raise ConfigError("transfer: the source model's train split does not match the target's")
        ws.extras[key] = (store.g, skey)
    return ws.extras[key]


def fit_interpreter(
    interp: Interpreter,
    ctx: InterpretContext,
    indices: np.ndarray,
    seed: int,
    coreset_key: str | None,
) -> tuple[Any, float]:
    """The cached fit of an interpreter on some train indices.

    Args:
        interp: the interpreter.
        ctx: its context (its cache and ``model_key``, the train activations' key, address the fit).
        indices: train indices.
        seed: interpretation seed.
        coreset_key: the coreset's key, or None for the full-data fit (kind ``fit_full``).

    Returns:
        (fit, fit seconds when it was computed).
    """
    spec = _fit_spec(interp, ctx, seed, coreset_key)
    kind = "fit_full" if coreset_key is None else "fit"
    result, _ = ctx.cache.get_or_compute_pickle(
        kind, spec, lambda: _timed(lambda: interp.fit(ctx, indices, seed))
    )
    return result["value"], float(result["seconds"])


def _fit_spec(
    interp: Interpreter, ctx: InterpretContext, seed: int, coreset_key: str | None
) -> dict[str, Any]:
    return {
        "interpreter": interp.name,
        "version": interp.version,
        "params": interp.fit_params(),
        "seed": seed,
        "train": ctx.model_key,
        "coreset": coreset_key if coreset_key is not None else "full",
    }


def fit_key(interp: Interpreter, ctx: InterpretContext, seed: int, coreset_key: str | None) -> str:
    """The cache key of :func:`fit_interpreter`'s artifact (what comparison results are keyed by).

    Args:
        interp: the interpreter.
        ctx: its context.
        seed: interpretation seed.
        coreset_key: the coreset's key, or None for the full-data fit.

    Returns:
        The key.
    """
    return spec_key(_fit_spec(interp, ctx, seed, coreset_key))


def evaluation_spec(interp: Interpreter, train_key: str, val_name: str, seed: int) -> dict[str, Any]:
    """What every artifact computed on the val split from full-data fits shares in its cache key.

    Args:
        interp: the interpreter (name and parameters).
        train_key: the train activations' key (``ctx.model_key``).
        val_name: the val store's folder name (its key).
        seed: interpretation seed.

    Returns:
        The common part of the spec (evaluations, noise floor, cascade add their own fields).
    """
    spec: dict[str, Any] = {
        "interpreter": interp.name,
        "version": interp.version,
        "params": interp.evaluation_params(),
        "seed": seed,
        "train": train_key,
        "val": val_name,
    }
    if interp.evaluation_version != 1:
        spec["evaluation_version"] = interp.evaluation_version
    return spec


def evaluate_fit(
    interp: Interpreter, ctx: InterpretContext, fit: Any, coreset_key: str | None, seed: int
) -> dict[str, Any]:
    """The cached evaluation of a fit on the val split (forward passes, e.g. VEBI's ablations, dominate
    a warm sweep's time otherwise).

    Args:
        interp: the interpreter.
        ctx: its context.
        fit: the fit.
        coreset_key: the coreset's key, or None for the full-data fit.
        seed: interpretation seed (the fit's, and any randomness of the evaluation).

    Returns:
        The interpreter's evaluation dict.
    """
    spec = {
        **evaluation_spec(interp, ctx.model_key, ctx.val.path.name, seed),
        "coreset": coreset_key if coreset_key is not None else "full",
    }
    result, _ = ctx.cache.get_or_compute_pickle("evaluation", spec, lambda: interp.evaluate(fit, ctx))
    return dict(result)


def run(cfg: JobConfig | Mapping[str, Any], on_ratio: RatioCallback | None = None) -> dict[str, Any]:
    """Run one job's stages and return its results as result.json holds them (without the job's header).

    Args:
        cfg: the job config (a resolved mapping is validated into one first).
        on_ratio: called with each rho's entry as soon as it is done.

    Returns:
        :meth:`JobResult.to_json` of :func:`run_stages`'s result.
    """
    return run_stages(cfg, on_ratio)[0].to_json()


def run_stages(
    cfg: JobConfig | Mapping[str, Any], on_ratio: RatioCallback | None = None
) -> tuple[JobResult, Any]:
    """The job's stages, in order.

    Args:
        cfg: the job config (a resolved mapping is validated into one before any work).
        on_ratio: called with each rho's entry as soon as it is done.

    Returns:
        (the result, the heatmap arrays for ``heatmaps.npz`` or None).
    """
    cfg = JobConfig.from_dict(cfg)
    seed, alpha = cfg.seed, float(cfg.metric.alpha)
    interp = cfg.build_interpreter()
    cache = ArtifactCache.from_config(cfg.raw)
    log.info(cache.check())
    ws = build_workspace(cfg, cache)
    interp.bind(ws.device)
    ctx = ws.context(cfg)
    job_warnings: list[str] = []

    # Shared per-model work (cached artifacts) stays out of the timed fits; its time is reported beside them.
    prepared = _timed(lambda: interp.prepare(ctx))
    fit_full, full_seconds = fit_interpreter(interp, ctx, np.arange(ws.train.n, dtype=np.int64), seed, None)
    full = {ACCURACY: None, FIT_SECONDS: full_seconds, PREPARE_SECONDS: prepared["seconds"]}
    full.update({**prepared["value"], **interp.describe(fit_full)})
    full.update(evaluate_fit(interp, ctx, fit_full, None, seed))
    comparer = PhiComparer(interp, ctx, fit_full, alpha, fit_key(interp, ctx, seed, None), cfg.metric.backend)

    # (a) every rho's selection and fit (and the null fit) first, (b) one class-outer comparison of all of
    # them (full side of each class prepared once, per-class results cached), (c) the entries.
    sseeds = reality.selection_seeds(cfg.raw)
    fits = fit_coresets(ws, cfg, interp, ctx, sseeds[0])
    others = [ComparedFit(f.fit, fit_key(interp, ctx, seed, f.key)) for f in fits]
    if cfg.metric.null_reference:
        others.append(null_fit(ws, cfg, interp, ctx, seed))
    compared = comparer.compare_many(others)
    entries: list[dict[str, Any]] = []
    for f, per_class in zip(fits, compared[: len(fits)], strict=True):
        evaluation = evaluate_fit(interp, ctx, f.fit, f.key, seed)
        entry = ratio_entry(interp, fit_full, full_seconds, f, per_class, evaluation, job_warnings)
        entry = reality.with_selection_seeds(entry, ws, cfg.raw, interp, ctx, comparer, sseeds, seed)
        entries.append(entry)
        if on_ratio is not None:
            on_ratio(entry)

    null = phi_summary(compared[-1]) if cfg.metric.null_reference else None
    floor = reality.noise_floor(cfg.raw, interp, ctx, seed, alpha, comparer)
    cascade = reality.cascade(ws, cfg.raw, interp, ctx, comparer, seed, alpha)
    reality.normalise(entries, floor, null)
    heatmaps = _heatmaps(cfg, interp, ctx, fit_full, fits, job_warnings)
    table1 = table1_summary(entries, cfg.metric.table1_percents)
    result = JobResult(
        status=COMPLETED,
        provenance={"device": str(ws.device)},
        model=cfg.model.name,
        dataset=cfg.dataset.name,
        selector=cfg.selector.name,
        interpreter=interp.name,
        model_accuracy=float(np.mean(ws.val.preds == ws.val.labels)),
        model_info=ws.model_info,
        extraction=ws.extraction,
        dataset_info=ws.dataset.describe(),
        full=full,
        ratios=[RatioEntry.from_json(e) for e in entries],
        null_reference=null,
        noise_floor=floor,
        cascade=cascade,
        table1=table1,
        table1_phi_normalised=reality.normalised_value(table1["mean"], floor, null),
        artifacts=[
            {"kind": r.kind, "key": r.key, "computed": r.computed, "seconds": round(r.seconds, 3)}
            for r in cache.records
        ],
        warnings=job_warnings,
    )
    return result, heatmaps


def fit_coresets(
    ws: Workspace, cfg: JobConfig, interp: Interpreter, ctx: InterpretContext, selection_seed: int
) -> list[CoresetFit]:
    """Every rho's cached coreset and cached fit.

    Args:
        ws: the workspace.
        cfg: the job config.
        interp: the interpreter.
        ctx: its context.
        selection_seed: the (first) selection seed.

    Returns:
        One :class:`CoresetFit` per rho, in the config's order.
    """
    out: list[CoresetFit] = []
    desc = f"{cfg.selector.name} x {interp.name}"
    for rho in tqdm(cfg.ratio.ratios, desc=desc, disable=not cfg.progress):
        indices, select_seconds, ckey = select_coreset(ws, cfg.raw, rho, selection_seed)
        fit, fit_seconds = fit_interpreter(interp, ctx, indices, cfg.seed, ckey)
        out.append(CoresetFit(rho, indices, select_seconds, ckey, fit, fit_seconds))
    return out


def _heatmaps(
    cfg: JobConfig,
    interp: Interpreter,
    ctx: InterpretContext,
    fit_full: Any,
    fits: list[CoresetFit],
    job_warnings: list[str],
) -> Any:
    """The job's heatmap arrays, or None with a warning (a figure's data never fails the numbers)."""
    from coreset_interp.heatmaps import job_heatmaps

    try:
        return job_heatmaps(cfg.raw, interp, ctx, fit_full, {int(round(f.ratio * 100)): f.fit for f in fits})
    except Exception as err:  # noqa: BLE001 - a figure's data must never fail the numbers
        job_warnings.append(f"heatmaps not computed: {type(err).__name__}: {err}")
        log.warning(job_warnings[-1])
        return None
