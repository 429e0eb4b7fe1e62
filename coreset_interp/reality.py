"""Reality checks beside every Phi (SPEC section 5): where a Phi lies between "the method's own run-to-run
noise" and "an unrelated model".

- **Noise floor** (:func:`noise_floor`): Phi between two fits on two bootstrap resamples of the full train
  split (per class, the class's size, with replacement), each with its own interpretation seed; with more
  resamples, the mean over all pairs. A seed alone is not enough: ICE's nndsvda start and VEBI's lasso are
  deterministic, so two seeds would give a floor of 0. The resamples keep their duplicates: every
  interpreter takes repeated indices (ICE stacks a repeated image's positions twice, so NMF weights it
  twice; VEBI's Gram counts its row twice; topic draws it twice as often), which is what a bootstrap means.
- **Cascading randomisation** (:func:`cascade`, the model-parameter randomisation test from the top down):
  step 1 re-initialises the classifier head, step k+1 the head and the last k conv stages (ResNet layer4,
  layer3, ..., the stem last; VGG's conv blocks from the last); each step's model gets its own cached
  activations and full-data fit, compared with the trained model's full-data fit. The fresh weights come
  from the null reference's seed, so the last step (everything re-initialised) is the null model.
- **Selection seeds** (:func:`combine_selection_seeds`): a rho's entry over several selection seeds, mean
  and std, with one entry per seed kept in ``by_selection_seed``.
- **Normalised score** (:func:`normalise`): phi_normalised = (Phi - floor) / (null - floor), 0 = as good as
  a fresh sample of the full data, 1 = as unrelated as a random model.

Floor and cascade are cached artifacts keyed by model x interpreter (not by selector or rho), so a sweep
computes each once.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from coreset_interp.cache import spec_key
from coreset_interp.interpreters import InterpretContext, Interpreter
from coreset_interp.models import ModelAdapter, get_model

log = logging.getLogger(__name__)

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


def _summary(per_class: dict[int, Any]) -> dict[str, Any]:
    from coreset_interp.pipeline import summarise_phi

    out = summarise_phi(per_class)
    out["missing"] = out.pop("angular_distance_missing")
    return out


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
    if not mcfg.get("floor", True):
        return None
    resamples = int(mcfg.get("floor_resamples", 2))
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
            _summary(PhiComparer(interp, ctx, fits[a], alpha).per_class(fits[b]))
            for a, b in itertools.combinations(range(resamples), 2)
        ]
        means = [p["angular_distance"] for p in pairs if p["angular_distance"] is not None]
        classes = sorted({c for p in pairs for c in p["angular_distance_per_class"]}, key=int)
        per_class = {}
        for c in classes:
            vals = [v for p in pairs if (v := p["angular_distance_per_class"].get(c)) is not None]
            per_class[c] = float(np.mean(vals)) if vals else None
        vs_full = [_summary(comparer.per_class(f))["angular_distance"] for f in fits] if comparer else []
        return {
            "vs_full": vs_full,
            "angular_distance": float(np.mean(means)) if means else None,
            "angular_distance_per_class": per_class,
            "pairs": means,
            "std_over_pairs": float(np.std(means)) if means else None,
            "resamples": resamples,
            "missing": sum(v is None for v in per_class.values()),
        }

    result, _ = ctx.cache.get_or_compute_pickle("noise_floor", spec, compute)
    return dict(result)


def cascade_stages(model: ModelAdapter) -> list[tuple[str, list[str]]]:
    """The cascade's stages from the top down: (label, state-dict prefixes re-initialised by that stage).

    Args:
        model: the adapter (ResNet or VGG).

    Returns:
        Stages, the classifier head first, the input stem last.
    """
    net = model.model
    if hasattr(net, "layer4") and hasattr(net, "fc"):
        stages = [("head", ["fc"])]
        stages += [(name, [name]) for name in ("layer4", "layer3", "layer2", "layer1")]
        return stages + [("stem", ["conv1", "bn1"])]
    if hasattr(net, "features") and hasattr(net, "classifier"):
        blocks: list[list[str]] = [[]]
        for i, module in enumerate(net.features.children()):
            blocks[-1].append(f"features.{i}")
            if isinstance(module, nn.MaxPool2d):
                blocks.append([])
        blocks = [b for b in blocks if any(_has_params(net, p) for p in b)]
        stages = [("head", ["classifier"])]
        n = len(blocks)
        return stages + [(f"conv{n - j}", blocks[n - 1 - j]) for j in range(n)]
    raise ValueError(f"cascade: no stage list for architecture {model.arch!r} (ResNet and VGG are supported)")


def _has_params(net: nn.Module, prefix: str) -> bool:
    return any(k == prefix or k.startswith(prefix + ".") for k in net.state_dict())


def cascade_model(
    cfg: dict[str, Any], ws: Any, step: int, seed: int
) -> tuple[ModelAdapter, dict[str, Any], list[str]]:
    """The trained model with its top ``step`` stages re-initialised.

    Args:
        cfg: the job config (``model``).
        ws: the workspace (dataset, cache, device).
        step: how many stages (1 = the head only).
        seed: seed of the fresh weights (the null reference's).

    Returns:
        (adapter in eval mode, its model spec for the activation cache, the stage labels re-initialised).
    """
    trained = get_model(**cfg["model"])
    model, info = trained.load(ws.dataset, ws.cache, ws.device, progress=False)
    every = cascade_stages(model)
    stages = every[:step]
    if step >= len(every):
        # Everything re-initialised from the null's seed is the null model: share its cached activations.
        null_model = trained.with_weights("random", seed)
        null, ninfo = null_model.load(ws.dataset, ws.cache, ws.device, progress=False)
        return null, ninfo["spec"], [label for label, _ in every]
    prefixes = [p for _, ps in stages for p in ps]
    fresh = trained.architecture(ws.dataset.num_classes, seed)
    state = model.model.state_dict()
    new = fresh.model.state_dict()
    for key in state:
        if any(key == p or key.startswith(p + ".") for p in prefixes):
            state[key] = new[key].to(state[key].device)
    model.model.load_state_dict(state)
    model.eval()
    labels = [label for label, _ in stages]
    mspec = {**info["spec"], "cascade": {"reinit": labels, "seed": seed}}
    return model, mspec, labels


def cascade(
    ws: Any,
    cfg: dict[str, Any],
    interp: Interpreter,
    ctx: InterpretContext,
    comparer: Any,
    seed: int,
    alpha: float,
) -> dict[str, Any] | None:
    """Phi of the trained model's full-data fit against each cascade step's full-data fit.

    Args:
        ws: the workspace.
        cfg: the job config (``metric.cascade``).
        interp: the interpreter.
        ctx: the trained model's context.
        comparer: the :class:`~coreset_interp.pipeline.PhiComparer` holding the trained full-data fit.
        seed: interpretation seed (also the fresh weights' seed, as the null reference's).
        alpha: partial-whitening alpha.

    Returns:
        ``steps``: per step ``step``, ``reinit`` (stage labels), ``angular_distance``,
        ``angular_distance_per_class``, ``missing``; None when ``metric.cascade`` is false.
    """
    from coreset_interp.pipeline import activations_for, evaluation_spec, fit_interpreter

    if not cfg["metric"].get("cascade", False):
        return None
    n_steps = len(cascade_stages(ws.model))
    spec = {
        **evaluation_spec(interp, ctx.model_key, ctx.val.path.name, seed),
        "alpha": alpha,
        "steps": n_steps,
        "version": REALITY_VERSION,
    }

    def compute() -> dict[str, Any]:
        steps = []
        for k in range(1, n_steps + 1):
            model, mspec, labels = cascade_model(cfg, ws, k, seed)
            train, ktrain = activations_for(ws.cache, model, mspec, ws.dataset, "train", ws.device, cfg)
            val, _ = activations_for(ws.cache, model, mspec, ws.dataset, "val", ws.device, cfg)
            rctx = replace(ctx, model=model, train=train, val=val, model_key=ktrain)
            fit, _ = fit_interpreter(interp, rctx, np.arange(train.n, dtype=np.int64), seed, None)
            summary = _summary(comparer.per_class(fit, rctx))
            steps.append({"step": k, "reinit": labels, **summary})
            log.info("cascade step %d (%s): Phi = %s", k, "+".join(labels), summary["angular_distance"])
        return {"steps": steps}

    result, _ = ctx.cache.get_or_compute_pickle("cascade", spec, compute)
    return dict(result)


# ------------------------------------------------------------------------------------ selection seeds
_SEED_KEYS = ("selection_seed", "n_selected", "accuracy", "angular_distance", "angular_distance_per_class")


def selection_seeds(cfg: dict[str, Any]) -> list[int]:
    """Args:
        cfg: the job config (``selection_seeds``; default ``[seed]``).

    Returns:
        The selection seeds, unique, in order.
    """
    from coreset_interp.pipeline import ConfigError

    raw = cfg.get("selection_seeds")
    if raw is None:
        raw = [cfg.get("seed", 0)]
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
        classes = entries[0].get("angular_distance_per_class") or {}
        out["angular_distance_per_class"] = {
            c: (
                float(np.mean(vals))
                if (vals := _finite(e["angular_distance_per_class"].get(c) for e in entries))
                else None
            )
            for c in classes
        }
        phis = _finite(e.get("angular_distance") for e in entries)
        out["angular_distance"] = float(np.mean(phis)) if phis else None
    for key in ("angular_distance", "accuracy"):
        vals = _finite(e.get(key) for e in entries)
        out[f"{key}_std"] = float(np.std(vals)) if vals else None
    out["selection_seeds"] = [int(e["selection_seed"]) for e in entries]
    out["by_selection_seed"] = [{k: e.get(k) for k in _SEED_KEYS} for e in entries]
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
                "n_selected": int(len(indices)),
                **evaluate_fit(interp, ctx, fit, ckey, seed),
                **summarise_phi(comparer.per_class(fit)),
                "select_seconds": select_seconds,
                "fit_seconds": fit_seconds,
            }
        )
    return combine_selection_seeds(out)


def _finite(values: Any) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


# ------------------------------------------------------------------------------------- normalised Phi
def _norm(phi: Any, floor: Any, null: Any) -> float | None:
    vals = _finite([phi, floor, null])
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
    f_c = floor.get("angular_distance_per_class") or {}
    n_c = null.get("angular_distance_per_class") or {}
    for e in entries:
        e["phi_normalised"] = _norm(
            e.get("angular_distance"), floor.get("angular_distance"), null.get("angular_distance")
        )
        e["phi_normalised_per_class"] = {
            c: _norm(v, f_c.get(c), n_c.get(c))
            for c, v in (e.get("angular_distance_per_class") or {}).items()
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
    return _norm(phi, floor.get("angular_distance"), null.get("angular_distance"))
