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
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.data import ImageDataset, build_dataset
from coreset_interp.interpreters import ClassPhi, InterpretContext, Interpreter, get_interpreter
from coreset_interp.metrics.shape import angular_distance_prepared, prepare
from coreset_interp.models import ModelAdapter, load_model, model_spec
from coreset_interp.models.activations import ActivationStore, extract_activations
from coreset_interp.selectors import get_selector

log = logging.getLogger(__name__)

#: Callback receiving each finished rho's entry (for trackers and metrics.jsonl).
RatioCallback = Callable[[dict[str, Any]], None]


class ConfigError(ValueError):
    """A bad value in the job's configuration (reported in one line, without a traceback)."""


def resolve_device(name: str) -> torch.device:
    """Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The torch device (``auto`` = cuda when available).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or auto")
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

    def context(self, cfg: dict[str, Any]) -> InterpretContext:
        """Args:
            cfg: the job config (``batch_size``, ``num_workers``, ``progress``).

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
            num_workers=int(cfg.get("num_workers", 0)),
            progress=bool(cfg.get("progress", True)),
        )


def activations_for(
    cache: ArtifactCache,
    model: ModelAdapter,
    mspec: dict[str, Any],
    dataset: ImageDataset,
    split: str,
    device: torch.device,
    cfg: dict[str, Any],
) -> tuple[ActivationStore, str]:
    """Cached activations of one split.

    Args:
        cache: the artifact cache.
        model: the adapter.
        mspec: the model's specification (:func:`coreset_interp.models.model_spec`).
        dataset: the dataset.
        split: ``train`` or ``val``.
        device: torch device.
        cfg: the job config (``batch_size``, ``num_workers``, ``progress``).

    Returns:
        (store, key).
    """
    dtype = str(cfg.get("activation_dtype", "float32"))
    spec = {
        "model": mspec,
        "dataset": dataset.fingerprint(),
        "split": split,
        "dtype": dtype,
        "layer": "last_conv",
    }

    def compute(folder: Path) -> None:
        extract_activations(
            model,
            dataset.split(split),
            folder,
            device,
            batch_size=int(cfg.get("batch_size", 128)),
            num_workers=int(cfg.get("num_workers", 0)),
            dtype=dtype,
            progress=bool(cfg.get("progress", True)),
            desc=f"activations {split}",
        )

    folder, _ = cache.get_or_compute("activations", spec, compute)
    return ActivationStore.open(folder), spec_key(spec)


def build_workspace(cfg: dict[str, Any], cache: ArtifactCache) -> Workspace:
    """Resolve dataset, model and activations for a job config.

    Args:
        cfg: the resolved job config (a plain dict).
        cache: the artifact cache.

    Returns:
        The workspace.
    """
    device = resolve_device(str(cfg.get("device", "auto")))
    dataset = build_dataset(cfg["dataset"])
    progress = bool(cfg.get("progress", True))
    model, info = load_model(cfg["model"], dataset, cache, device, progress)
    mspec = model_spec(cfg["model"], dataset)
    train, ktrain = activations_for(cache, model, mspec, dataset, "train", device, cfg)
    val, kval = activations_for(cache, model, mspec, dataset, "val", device, cfg)
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
    return Workspace(cache, dataset, model, info, train, val, {"train": ktrain, "val": kval}, device)


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
    scfg = cfg["selector"]
    params = dict(scfg.get("params") or {})
    features, labels, feat_key = ws.train.g, ws.train.labels, ws.activation_keys["train"]
    source = params.pop("source_model", None)
    if source is not None:
        features, feat_key = _source_features(ws, cfg, dict(source))
    selector = get_selector(str(scfg["name"]), **params)
    spec = {
        "selector": str(scfg["name"]),
        "params": params,
        "ratio": ratio,
        "seed": seed,
        "features": feat_key,
    }
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
        model, _ = load_model(source_cfg, ws.dataset, ws.cache, ws.device, bool(cfg.get("progress", True)))
        store, skey = activations_for(
            ws.cache, model, model_spec(source_cfg, ws.dataset), ws.dataset, "train", ws.device, cfg
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
    spec = {
        "interpreter": interp.name,
        "params": interp.params(),
        "seed": seed,
        "train": ctx.model_key,
        "coreset": coreset_key if coreset_key is not None else "full",
    }
    kind = "fit_full" if coreset_key is None else "fit"
    result, _ = ctx.cache.get_or_compute_pickle(
        kind, spec, lambda: _timed(lambda: interp.fit(ctx, indices, seed))
    )
    return result["value"], float(result["seconds"])


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
        "interpreter": interp.name,
        "params": interp.params(),
        "seed": seed,
        "train": ctx.model_key,
        "val": ctx.val.path.name,
        "coreset": coreset_key if coreset_key is not None else "full",
    }
    result, _ = ctx.cache.get_or_compute_pickle("evaluation", spec, lambda: interp.evaluate(fit, ctx))
    return dict(result)


class PhiComparer:
    """Per-class angular distances between full-data maps and coreset maps, with the full side of each
    class prepared once and reused for every coreset (when the interpreter's maps allow it).

    Args:
        interp: the interpreter.
        ctx: its context.
        fit_full: the full-data fit.
        alpha: partial-whitening alpha.
    """

    def __init__(self, interp: Interpreter, ctx: InterpretContext, fit_full: Any, alpha: float) -> None:
        self.interp = interp
        self.ctx = ctx
        self.fit_full = fit_full
        self.alpha = alpha
        self._prepared: dict[int, Any] = {}

    def per_class(self, fit_other: Any, ctx_other: InterpretContext | None = None) -> dict[int, ClassPhi]:
        """Args:
            fit_other: a coreset fit (or the null reference's fit).
            ctx_other: the context of ``fit_other`` when it belongs to another model; None = same model.

        Returns:
            phi per val class (``phi`` None where a side has zero variance and the angle is undefined).
        """
        # One BLAS thread for these per-class problems (a few hundred rows): measured under load on this
        # 2-core machine, prepare + compare of a (144, 512) pair took 1.9 s with 2 OpenBLAS threads, 0.023 s
        # with 1.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._per_class(fit_other, ctx_other)

    def _per_class(self, fit_other: Any, ctx_other: InterpretContext | None) -> dict[int, ClassPhi]:
        out: dict[int, ClassPhi] = {}
        for c in self.ctx.val.classes():
            c = int(c)
            idx = self.ctx.val.class_indices(c)
            if self.interp.paired:
                out[c] = self.interp.paired_phi(
                    self.fit_full, fit_other, self.ctx, idx, self.alpha, ctx_other
                )
                continue
            if c not in self._prepared:
                z_full = self.interp.maps(self.fit_full, self.ctx, idx)
                self._prepared[c] = prepare(np.asarray(z_full, dtype=np.float64), self.alpha)
            z_other = self.interp.maps(fit_other, ctx_other or self.ctx, idx)
            phi = angular_distance_prepared(
                self._prepared[c], prepare(np.asarray(z_other, dtype=np.float64), self.alpha)
            )
            out[c] = ClassPhi(None if not math.isfinite(phi) else float(phi))
        return out


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
    rcfg = {**dict(cfg["model"]), "weights": "random", "train": {**dict(cfg["model"]["train"]), "seed": seed}}
    model, _ = load_model(rcfg, ws.dataset, ws.cache, ws.device, progress=False)
    mspec = model_spec(rcfg, ws.dataset)
    train, ktrain = activations_for(ws.cache, model, mspec, ws.dataset, "train", ws.device, cfg)
    val, _ = activations_for(ws.cache, model, mspec, ws.dataset, "val", ws.device, cfg)
    rctx = replace(ctx, model=model, train=train, val=val, model_key=ktrain)
    fit_null, _ = fit_interpreter(interp, rctx, np.arange(train.n, dtype=np.int64), seed, None)
    summary = summarise_phi(comparer.per_class(fit_null, rctx))
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
    interp = get_interpreter(str(icfg["name"]), **dict(icfg.get("params") or {}))
    # Fail on a bad selector name before any expensive work.
    sparams = {k: v for k, v in dict(cfg["selector"].get("params") or {}).items() if k != "source_model"}
    get_selector(str(cfg["selector"]["name"]), **sparams)

    cache = ArtifactCache(Path(cfg["cache_dir"]))
    ws = build_workspace(cfg, cache)
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
    comparer = PhiComparer(interp, ctx, fit_full, alpha)

    entries: list[dict[str, Any]] = []
    for rho in tqdm(ratios, desc=f"{cfg['selector']['name']} x {interp.name}", disable=not progress):
        indices, select_seconds, ckey = select_coreset(ws, cfg, rho, seed)
        fit, fit_seconds = fit_interpreter(interp, ctx, indices, seed, ckey)
        per_class = comparer.per_class(fit)
        missing = [c for c, v in per_class.items() if v.phi is None]
        if missing:
            msg = (
                f"rho={rho:g}: angular distance undefined (zero variance) for {len(missing)} class(es) "
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
        entries.append(entry)
        if on_ratio is not None:
            on_ratio(entry)

    null = (
        null_reference(ws, cfg, interp, ctx, comparer, seed) if cfg["metric"].get("null_reference") else None
    )

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
        "dataset_info": ws.dataset.describe(),
        "full": full,
        "ratios": entries,
        "null_reference": null,
        "table1": {
            **_mean_std(phis),
            "percents": sorted(e["percent"] for e in entries if e["percent"] in table_percents),
        },
        "artifacts": [
            {"kind": r.kind, "key": r.key, "computed": r.computed, "seconds": round(r.seconds, 3)}
            for r in cache.records
        ],
        "warnings": job_warnings,
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
    from coreset_interp.tracking import JobFiles, make_tracker

    files = JobFiles(Path(job["dir"]))
    payload: dict[str, Any] = {"status": "running", "error": None, "config": cfg, "job": _job_meta(job)}
    files.write_result(payload)
    tracker = make_tracker(cfg["logger"])
    start = time.perf_counter()

    def on_ratio(entry: dict[str, Any]) -> None:
        files.append_metrics(entry)
        tracker.log_ratio(entry)

    try:
        tracker.start(cfg, job)
        payload.update(run(cfg, on_ratio))
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
            except Exception as err:  # noqa: BLE001 - a figure must never fail a finished job
                log.warning("job figures failed: %s", err)
        try:
            tracker.finish(payload, images)
        except Exception as err:  # noqa: BLE001
            log.warning("tracker failed to finish: %s", err)
    return payload


def _job_meta(job: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in job.items()}
