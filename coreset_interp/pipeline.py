"""One job: model -> activations -> coreset per rho -> interpretation -> comparison with the full data.

Every step is a function of its inputs plus config, cached in the artifact cache under a hash of exactly
the config that determines it, so the jobs of a sweep share checkpoints, activations, coresets and the
full-data fit (the most expensive artifact).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.comparisons import ComparedFit, compare_class_outer, resolve_backend
from coreset_interp.data import ImageDataset, get_dataset
from coreset_interp.devices import job_gpu
from coreset_interp.interpreters import INTERPRETERS, ClassPhi, InterpretContext, Interpreter
from coreset_interp.models import ModelAdapter, get_model
from coreset_interp.models.activations import ActivationStore
from coreset_interp.models.extraction import ExtractSettings, ensure_store
from coreset_interp.models.loader import resolve_num_workers
from coreset_interp.parallel import resolve_n_jobs
from coreset_interp.selectors import SELECTORS

log = logging.getLogger(__name__)

#: Callback receiving each finished rho's entry (for trackers and metrics.jsonl).
RatioCallback = Callable[[dict[str, Any]], None]


class ConfigError(ValueError):
    """A bad value in the job's configuration (reported in one line, without a traceback)."""


def resolve_device(name: str) -> torch.device:
    """Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The torch device (``auto`` = cuda when available; ``auto``/``cuda`` in a parallel joblib sweep on
        a node with several GPUs = a GPU of the worker's own, see :mod:`coreset_interp.devices`).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or auto")
    if name == "cuda":
        # A worker of a parallel joblib sweep on a multi-GPU node takes a GPU of its own.
        gpu = job_gpu(torch.cuda.device_count())
        if gpu is not None:
            torch.cuda.set_device(gpu)
            return torch.device(f"cuda:{gpu}")
    return torch.device(name)


def ratios_from_percents(percents: Any) -> list[float]:
    """Validate the ``ratio.percents`` list.

    Args:
        percents: integer percentages (a single number is accepted too).

    Returns:
        Ratios rho in (0, 1], in the given order, without duplicates.
    """
    if isinstance(percents, int | float):
        percents = [percents]
    out: list[float] = []
    for p in list(percents):
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            raise ConfigError(f"ratio percents must be numbers in (0, 100], got {p!r}")
        if not 0 < p <= 100:
            raise ConfigError(f"ratio must be in (0, 1]: got {p}% (ratio.percents are integer percentages)")
        if float(p) != int(p):
            # Integer percents keep run names, cache keys and report rows exact (no 0.15000000000000002).
            raise ConfigError(f"ratio.percents are integer percentages, got {p}")
        rho = round(float(p) / 100.0, 6)
        if rho not in out:
            out.append(rho)
    if not out:
        raise ConfigError("ratio.percents is empty")
    return out


@dataclass
class Workspace:
    """The shared, cached inputs of a job: model, dataset and both splits' activations."""

    cache: ArtifactCache
    dataset: ImageDataset
    model: ModelAdapter
    model_info: dict[str, Any]
    train: ActivationStore
    val: ActivationStore
    activation_keys: dict[str, str]
    device: torch.device
    extras: dict[str, Any] = field(default_factory=dict)
    #: One entry per extraction pass this job ran (result.json ``extraction``: images/s per pass).
    extraction: list[dict[str, Any]] = field(default_factory=list)

    def context(self, cfg: dict[str, Any]) -> InterpretContext:
        """Args:
            cfg: the job config (``batch_size``, ``num_workers``, ``progress``, ``n_jobs``).

        Returns:
            The interpreters' view of this workspace.
        """
        return InterpretContext(
            model=self.model,
            dataset=self.dataset,
            train=self.train,
            val=self.val,
            device=self.device,
            cache=self.cache,
            model_key=self.activation_keys["train"],
            batch_size=int(cfg.get("batch_size", 128)),
            num_workers=resolve_num_workers(cfg.get("num_workers", 0), self.dataset.split("val")),
            progress=bool(cfg.get("progress", True)),
            n_jobs=_n_jobs(cfg),
        )


def _n_jobs(cfg: dict[str, Any]) -> int:
    """The job's ``n_jobs`` as a worker count (``auto`` = the CPUs this job may use)."""
    try:
        return resolve_n_jobs(cfg.get("n_jobs", "auto"))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def activations_for(
    cache: ArtifactCache,
    model: ModelAdapter,
    mspec: dict[str, Any],
    dataset: ImageDataset,
    split: str,
    device: torch.device,
    cfg: dict[str, Any],
    parts: frozenset[str] = frozenset({"maps"}),
    stats: list[dict[str, Any]] | None = None,
    tag: str = "model",
) -> tuple[ActivationStore, str]:
    """Cached activations of one split, extracted in one chunked, resumable pass when missing
    (:func:`coreset_interp.models.extraction.ensure_store`).

    Args:
        cache: the artifact cache.
        model: the adapter.
        mspec: the model's specification (:meth:`coreset_interp.models.Model.spec`).
        dataset: the dataset.
        split: ``train`` or ``val``.
        device: torch device.
        cfg: the job config (``activation_dtype``, ``batch_size``, ``num_workers``, ``progress``,
            ``extract``).
        parts: what the caller reads besides g, labels and preds: ``maps``, ``energy`` (VEBI's).
        stats: receives one entry per extraction pass that ran.
        tag: the model's role in ``stats``.

    Returns:
        (store, key).
    """
    dtype = str(cfg.get("activation_dtype", "float32"))
    # A job builds every chunk it lacks; shards are for coreset-interp-extract.
    settings = replace(ExtractSettings.from_config(cfg), shard=0, num_shards=1)
    store, key = ensure_store(cache, model, mspec, dataset, split, device, dtype, parts, settings, stats, tag)
    if store is None:  # cannot happen with one shard; guards a future change of the settings above
        raise RuntimeError(f"activation store {key} ({split}) is incomplete after its extraction pass")
    return store, key


def build_workspace(cfg: dict[str, Any], cache: ArtifactCache) -> Workspace:
    """Resolve dataset, model and activations for a job config.

    Args:
        cfg: the resolved job config (a plain dict).
        cache: the artifact cache.

    Returns:
        The workspace.
    """
    device = resolve_device(str(cfg.get("device", "auto")))
    dataset = get_dataset(**cfg["dataset"])
    progress = bool(cfg.get("progress", True))
    model, info = get_model(**cfg["model"]).load(dataset, cache, device, progress)
    mspec = info["spec"]
    # The trained model's maps serve every interpreter of a sweep; the job's interpreter adds its own
    # parts (VEBI's energies) to the same pass.
    icfg = cfg["interpreter"]
    interp = INTERPRETERS.build(icfg)
    stats: list[dict[str, Any]] = []
    stores, keys = {}, {}
    for split in ("train", "val"):
        parts = frozenset({"maps"}) | interp.store_parts(split)
        stores[split], keys[split] = activations_for(
            cache, model, mspec, dataset, split, device, cfg, parts, stats
        )
    train, val = stores["train"], stores["val"]
    for split, store in (("train", train), ("val", val)):
        # The chosen classes (dataset.classes), which keep their index among all num_classes.
        present = set(store.classes().tolist())
        missing = sorted(set(dataset.class_ids) - present)
        if missing:
            raise ConfigError(f"{dataset.name} {split} split has no samples of class(es) {missing[:10]}")
        strangers = sorted(present - set(dataset.class_ids))
        if strangers:
            raise ConfigError(
                f"{dataset.name} {split} split has samples of unchosen class(es) {strangers[:10]}"
            )
    return Workspace(cache, dataset, model, info, train, val, keys, device, extraction=stats)


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
        progress = bool(cfg.get("progress", True))
        model, info = get_model(**source_cfg).load(ws.dataset, ws.cache, ws.device, progress)
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
    return {
        "interpreter": interp.name,
        "version": interp.version,
        "params": interp.evaluation_params(),
        "seed": seed,
        "train": train_key,
        "val": val_name,
    }


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


class PhiComparer:
    """Per-class angular distances between full-data maps and other fits' maps, class-outer: the full side
    of a class is prepared once, compared with every fit passed together, and freed (see
    :mod:`coreset_interp.comparisons`, which also caches each (pair, class) result when keys are given).

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
        "angular_distance": float(np.mean(finite)) if finite else None,
        "angular_distance_per_class": {str(c): v.phi for c, v in per_class.items()},
        "angular_distance_missing": sum(v.phi is None for v in per_class.values()),
    }
    layers: dict[str, list[float]] = {}
    for v in per_class.values():
        for name, phi in v.per_layer.items():
            layers.setdefault(name, [])
            if phi is not None:
                layers[name].append(phi)
    if layers:
        out["angular_distance_per_layer"] = {
            name: {"mean": float(np.mean(vals)) if vals else None, "n_classes": len(vals)}
            for name, vals in layers.items()
        }
    return out


def null_model_config(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Args:
        cfg: the job config.
        seed: the interpretation seed (also the random weights' seed).

    Returns:
        The ``model`` config of the null reference: the job's architecture with random weights.
    """
    return {**dict(cfg["model"]), "weights": "random", "train": {**dict(cfg["model"]["train"]), "seed": seed}}


def null_reference(
    ws: Workspace,
    cfg: dict[str, Any],
    interp: Interpreter,
    ctx: InterpretContext,
    comparer: PhiComparer,
    seed: int,
) -> dict[str, Any]:
    """Phi between the full-data interpretation of the model and that of the same architecture with
    randomised weights (the model-parameter randomisation test), a scale for "unrelated" beside Phi.

    Args:
        ws: the workspace.
        cfg: the job config.
        interp: the interpreter.
        ctx: the trained model's context.
        comparer: the comparer holding the trained model's full-data fit.
        seed: interpretation seed (also the random weights' seed).

    Returns:
        ``angular_distance`` (mean over classes), ``angular_distance_per_class``, ``missing``.
    """
    null = null_fit(ws, cfg, interp, ctx, seed)
    return null_summary(comparer.compare_many([null])[0])


def null_fit(
    ws: Workspace, cfg: dict[str, Any], interp: Interpreter, ctx: InterpretContext, seed: int
) -> ComparedFit:
    """The null reference's full-data fit on the randomised-weights model (see :func:`null_reference`).

    Args:
        ws: the workspace.
        cfg: the job config.
        interp: the interpreter.
        ctx: the trained model's context.
        seed: interpretation seed (also the random weights' seed).

    Returns:
        The fit with its cache key and its context.
    """
    rcfg = null_model_config(cfg, seed)
    model, info = get_model(**rcfg).load(ws.dataset, ws.cache, ws.device, progress=False)
    mspec = info["spec"]
    # Only what the interpreter reads (ICE, topic: maps; VEBI: train energies), one pass per split.
    train, ktrain = activations_for(
        ws.cache, model, mspec, ws.dataset, "train", ws.device, cfg, interp.store_parts("train"),
        ws.extraction, "null",
    )
    val, _ = activations_for(
        ws.cache, model, mspec, ws.dataset, "val", ws.device, cfg, interp.store_parts("val"),
        ws.extraction, "null",
    )
    rctx = replace(ctx, model=model, train=train, val=val, model_key=ktrain)
    fit_null, _ = fit_interpreter(interp, rctx, np.arange(train.n, dtype=np.int64), seed, None)
    return ComparedFit(fit_null, fit_key(interp, rctx, seed, None), rctx)


def null_summary(per_class: dict[int, ClassPhi]) -> dict[str, Any]:
    """Args:
        per_class: the null reference's phi per class.

    Returns:
        ``angular_distance`` (mean over classes), ``angular_distance_per_class``, ``missing``.
    """
    summary = summarise_phi(per_class)
    summary["missing"] = summary.pop("angular_distance_missing")
    return summary


def _mean_std(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(values)}


def run(cfg: dict[str, Any], on_ratio: RatioCallback | None = None) -> dict[str, Any]:
    """Run one job and return its results (the body of ``result.json``, without status and config).

    Args:
        cfg: the resolved job config as a plain dict (``cache_dir`` absolute or relative to the cwd).
        on_ratio: called with each rho's entry as soon as it is done.

    Returns:
        model/dataset/selector/interpreter names, ``model_accuracy``, ``full``, ``ratios``, ``table1``,
        ``cost``, ``artifacts``, ``warnings``.
    """
    seed = int(cfg.get("seed", 0))
    ratios = ratios_from_percents(cfg["ratio"]["percents"])
    alpha = float(cfg["metric"]["alpha"])
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"metric.alpha must be in [0, 1], got {alpha}")
    icfg = cfg["interpreter"]
    interp = INTERPRETERS.build(icfg)
    # Fail on a bad selector name or field before any expensive work.
    SELECTORS.build(cfg["selector"])

    cache = ArtifactCache.from_config(cfg)
    log.info(cache.check())
    ws = build_workspace(cfg, cache)
    interp.bind(ws.device)
    progress = bool(cfg.get("progress", True))
    ctx = ws.context(cfg)
    model_accuracy = float(np.mean(ws.val.preds == ws.val.labels))
    job_warnings: list[str] = []

    # Shared per-model work (cached artifacts) stays out of the timed fits; its time is reported beside them.
    prepared = _timed(lambda: interp.prepare(ctx))
    all_idx = np.arange(ws.train.n, dtype=np.int64)
    fit_full, full_seconds = fit_interpreter(interp, ctx, all_idx, seed, None)
    full = {
        "accuracy": None,
        "fit_seconds": full_seconds,
        "prepare_seconds": prepared["seconds"],
        **prepared["value"],
        **interp.describe(fit_full),
    }
    full.update(evaluate_fit(interp, ctx, fit_full, None, seed))
    backend = str(cfg["metric"].get("backend", "auto"))
    comparer = PhiComparer(interp, ctx, fit_full, alpha, fit_key(interp, ctx, seed, None), backend)

    from coreset_interp import reality
    from coreset_interp.heatmaps import job_heatmaps

    sseeds = reality.selection_seeds(cfg)
    # (a) every rho's selection and fit (and the null fit) first, (b) one class-outer comparison of all of
    # them (full side of each class prepared once, per-class results cached), (c) the entries.
    fits: list[tuple[float, np.ndarray, float, str, Any, float]] = []
    for rho in tqdm(ratios, desc=f"{cfg['selector']['name']} x {interp.name}", disable=not progress):
        indices, select_seconds, ckey = select_coreset(ws, cfg, rho, sseeds[0])
        fit, fit_seconds = fit_interpreter(interp, ctx, indices, seed, ckey)
        fits.append((rho, indices, select_seconds, ckey, fit, fit_seconds))
    others = [ComparedFit(f[4], fit_key(interp, ctx, seed, f[3])) for f in fits]
    if cfg["metric"].get("null_reference"):
        others.append(null_fit(ws, cfg, interp, ctx, seed))
    compared = comparer.compare_many(others)

    entries: list[dict[str, Any]] = []
    for (rho, indices, select_seconds, ckey, fit, fit_seconds), per_class in zip(
        fits, compared[: len(fits)], strict=True
    ):
        missing = [c for c, v in per_class.items() if v.phi is None]
        if missing:
            msg = (
                f"rho={rho:g}: angular distance undefined (zero variance, or no layer common to both fits) "
                f"for {len(missing)} class(es) "
                f"{missing[:10]}; left out of the mean"
            )
            warnings.warn(msg, stacklevel=1)
            job_warnings.append(msg)
        t_rho = select_seconds + fit_seconds
        entry = {
            "ratio": rho,
            "percent": int(round(rho * 100)),
            "n_selected": int(len(indices)),
            **evaluate_fit(interp, ctx, fit, ckey, seed),
            **summarise_phi(per_class),
            "select_seconds": select_seconds,
            "fit_seconds": fit_seconds,
            "speedup": full_seconds / t_rho if t_rho > 0 else None,
            **interp.describe(fit),
            **interp.compare(fit_full, fit),
        }
        entry = reality.with_selection_seeds(entry, ws, cfg, interp, ctx, comparer, sseeds, seed)
        entries.append(entry)
        if on_ratio is not None:
            on_ratio(entry)

    null = null_summary(compared[-1]) if cfg["metric"].get("null_reference") else None
    floor = reality.noise_floor(cfg, interp, ctx, seed, alpha, comparer)
    cascade = reality.cascade(ws, cfg, interp, ctx, comparer, seed, alpha)
    reality.normalise(entries, floor, null)
    try:
        heatmaps = job_heatmaps(cfg, interp, ctx, fit_full, {int(round(f[0] * 100)): f[4] for f in fits})
    except Exception as err:  # noqa: BLE001 - a figure's data must never fail the numbers
        heatmaps = None
        job_warnings.append(f"heatmaps not computed: {type(err).__name__}: {err}")
        log.warning(job_warnings[-1])

    table_percents = {int(p) for p in cfg["metric"].get("table1_percents", [10, 20, 30, 40, 50])}
    phis = [
        e["angular_distance"]
        for e in entries
        if e["percent"] in table_percents and e["angular_distance"] is not None
    ]
    return {
        "model": str(cfg["model"]["name"]),
        "dataset": str(cfg["dataset"]["name"]),
        "selector": str(cfg["selector"]["name"]),
        "interpreter": interp.name,
        "model_accuracy": model_accuracy,
        "model_info": ws.model_info,
        "extraction": ws.extraction,
        "dataset_info": ws.dataset.describe(),
        "full": full,
        "ratios": entries,
        "null_reference": null,
        "noise_floor": floor,
        "cascade": cascade,
        "table1": {
            **_mean_std(phis),
            "percents": sorted(e["percent"] for e in entries if e["percent"] in table_percents),
        },
        "table1_phi_normalised": reality.normalised_value(_mean_std(phis)["mean"], floor, null),
        "artifacts": [
            {"kind": r.kind, "key": r.key, "computed": r.computed, "seconds": round(r.seconds, 3)}
            for r in cache.records
        ],
        "warnings": job_warnings,
        # Arrays for <job dir>/heatmaps.npz, taken out by run_job before result.json is written.
        "_heatmaps": heatmaps,
    }


def run_job(cfg: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Run one job with its files and tracker: the body of the ``coreset-interp`` command.

    ``result.json`` is written at start (status ``running``), and at the end with status ``completed``,
    or ``failed`` with the error; every finished rho is appended to ``metrics.jsonl`` at once.

    Args:
        cfg: the resolved job config (plain dict).
        job: ``dir`` (job output folder), ``name``, ``group``, ``tags``, ``job_type``.

    Returns:
        The full result payload (``status`` tells whether it failed).
    """
    from coreset_interp.jobstate import JobHeartbeat, code_version, skip_completed
    from coreset_interp.trackers import get_logger
    from coreset_interp.tracking import JobFiles

    code = code_version()
    if (done := skip_completed(cfg, Path(job["dir"]), code)) is not None:
        return done
    files = JobFiles(Path(job["dir"]))
    payload: dict[str, Any] = {
        "status": "running", "error": None, "config": cfg, "job": _job_meta(job), "code": code,
    }  # fmt: skip
    heartbeat = JobHeartbeat(files.write_result, payload, cfg.get("job_heartbeat"))
    files.write_result(payload)
    tracker = get_logger(**cfg["logger"])
    start = time.perf_counter()

    def on_ratio(entry: dict[str, Any]) -> None:
        files.append_metrics(entry)
        tracker.log_ratio(entry)

    try:
        with heartbeat:
            tracker.start(cfg, job)
            payload.update(run(cfg, on_ratio))
            payload["warnings"] = payload.get("warnings", []) + list(getattr(tracker, "warnings", []))
            heatmaps = payload.pop("_heatmaps", None)
            if heatmaps is not None:
                from coreset_interp.heatmaps import save_heatmaps

                save_heatmaps(heatmaps, files.folder)
        payload["status"] = "completed"
    except Exception as err:  # noqa: BLE001 - every failure must end up in result.json
        import traceback

        payload["status"] = "failed"
        payload["error"] = f"{type(err).__name__}: {err}"
        payload["traceback"] = traceback.format_exc()
        log.error("job failed: %s", payload["error"])
    finally:
        payload["wall_seconds"] = time.perf_counter() - start
        files.write_result(payload)
        images = {}
        if payload["status"] == "completed":
            try:
                from coreset_interp.viz import job_figures

                images = job_figures(payload, files.folder)
                from coreset_interp.viz_heatmaps import job_heatmap_figures
                from coreset_interp.viz_reality import job_reality_figures

                images.update(job_heatmap_figures(files.folder))
                images.update(job_reality_figures(payload, files.folder))
            except Exception as err:  # noqa: BLE001 - a figure must never fail a finished job
                log.warning("job figures failed: %s", err)
        try:
            tracker.finish(payload, images)
        except Exception as err:  # noqa: BLE001
            log.warning("tracker failed to finish: %s", err)
    return payload


def _job_meta(job: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in job.items()}
