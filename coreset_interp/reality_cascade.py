"""Cascading randomisation (the model-parameter randomisation test from the top down, SPEC section 5).

Step 1 re-initialises the classifier head, step k+1 the head and the last k conv stages (ResNet layer4,
layer3, ..., the stem last; VGG's conv blocks from the last); each step's model gets its own cached
activations and full-data fit, compared with the trained model's full-data fit. The fresh weights come from
the null reference's seed, so the last step (everything re-initialised) is the null model. Cached per model x
interpreter (``metric.cascade``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from torch import nn

from coreset_interp import results
from coreset_interp.interpreters import InterpretContext, Interpreter
from coreset_interp.metrics.compare import phi_summary
from coreset_interp.models import ModelAdapter, get_model
from coreset_interp.reality_floor import REALITY_VERSION

log = logging.getLogger(__name__)


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

    if not cfg["metric"]["cascade"]:
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
            summary = phi_summary(comparer.per_class(fit, rctx))
            steps.append({"step": k, "reinit": labels, **summary})
            log.info("cascade step %d (%s): Phi = %s", k, "+".join(labels), summary[results.ANGULAR_DISTANCE])
        return {"steps": steps}

    result, _ = ctx.cache.get_or_compute_pickle("cascade", spec, compute)
    return dict(result)
