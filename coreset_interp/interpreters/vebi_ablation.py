"""VEBI's evaluation (the paper's Sec. 4.2): val accuracy with each class's relevant units zeroed, and a
control that zeroes as many random units per layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from coreset_interp.interpreters.base import InterpretContext
from coreset_interp.interpreters.vebi_capture import val_images
from coreset_interp.interpreters.vebi_fit import VEBIFit
from coreset_interp.interpreters.vebi_units import ReluCalls, StagedModel


def random_units(fit: VEBIFit, c: int, draw: int) -> np.ndarray:
    """As many random units per layer as class ``c`` has relevant ones there, among its other units.

    Args:
        fit: the fit (its seed seeds the draw).
        c: the class.
        draw: the draw's number.

    Returns:
        Sorted global unit indices, layer by layer.
    """
    rng = np.random.default_rng([fit.seed, draw, c])
    relevant = fit.by_layer(fit.top(c))
    picked = []
    for call, chans in relevant.items():
        layer = fit.layers[call]
        others = np.setdiff1d(np.arange(layer.channels), chans)
        take = rng.choice(others, size=min(len(chans), len(others)), replace=False)
        picked.append(layer.offset + np.sort(take))
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def ablated_logits(
    ctx: InterpretContext,
    staged_model: Callable[[torch.Tensor], StagedModel],
    fit: VEBIFit,
    indices: np.ndarray,
    unit_sets: list[np.ndarray],
) -> list[np.ndarray]:
    """Logits of some val images with each set of units zeroed in turn; the network up to the first
    stage holding a zeroed unit runs once and is shared by all sets.

    Args:
        ctx: the context.
        staged_model: the context's model cut into stages, given a sample batch (built once per model).
        fit: the fit (its unit layers).
        indices: val indices.
        unit_sets: the sets of global unit indices to zero, one pass each.

    Returns:
        Per set, the logits (len(indices), classes).
    """
    results: list[list[np.ndarray]] = [[] for _ in unit_sets]
    masks = [fit.by_layer(u) for u in unit_sets]
    for x in val_images(ctx, indices):
        staged = staged_model(x)
        first_call = min((min(m) for m in masks if m), default=staged.n_calls)
        start = staged.stage_of_call(first_call)
        with torch.no_grad():
            h0 = staged.prefix(x, start)
            for k, mask in enumerate(masks):
                zeroed = {c: torch.as_tensor(ch, device=x.device) for c, ch in mask.items()}

                def ablate(i: int, a: torch.Tensor, zeroed: dict[int, torch.Tensor] = zeroed) -> Any:
                    if i not in zeroed:
                        return None
                    out = a.clone()
                    out[:, zeroed[i]] = 0
                    return out

                with ReluCalls(ctx.model, ablate) as hooks:
                    hooks.reset(staged.calls_before(start))
                    logits = staged.suffix(h0, start)
                    hooks.check(staged.n_calls)
                results[k].append(logits.float().cpu().numpy())
    return [np.concatenate(r) for r in results]


def ablation_scores(
    ctx: InterpretContext,
    staged_model: Callable[[torch.Tensor], StagedModel],
    fit: VEBIFit,
    random_draws: int,
) -> dict[str, float]:
    """Accuracy with each val image's class's relevant units zeroed, and the random-unit control.

    Args:
        ctx: the context.
        staged_model: as for :func:`ablated_logits`.
        fit: the fit.
        random_draws: draws of the random-unit control.

    Returns:
        ``accuracy`` (ablated), ``intact_accuracy``, ``ablation_drop`` (intact minus ablated accuracy),
        ``ablation_prob_drop`` (mean drop of the true class's softmax probability), and
        ``random_ablation_accuracy``, ``random_ablation_drop``, ``random_ablation_prob_drop`` (means
        over ``random_draws`` draws).
    """
    labels = ctx.val.labels
    intact = torch.from_numpy(np.asarray(ctx.val.logits, dtype=np.float32))
    p_intact = torch.softmax(intact, dim=1).numpy()[np.arange(len(labels)), labels]
    ablated = np.zeros(len(labels), dtype=bool)
    p_ablated = np.zeros(len(labels))
    rand_correct = np.zeros((random_draws, len(labels)), dtype=bool)
    p_rand = np.zeros((random_draws, len(labels)))
    for c in ctx.val.classes():
        idx = ctx.val.class_indices(int(c))
        sets = [fit.top(int(c))] + [random_units(fit, int(c), d) for d in range(random_draws)]
        if len(sets[0]) == 0:
            outs = [np.asarray(ctx.val.logits[idx], dtype=np.float32)] * len(sets)
        else:
            outs = ablated_logits(ctx, staged_model, fit, idx, sets)
        probs = [torch.softmax(torch.from_numpy(o), dim=1).numpy()[:, int(c)] for o in outs]
        ablated[idx] = outs[0].argmax(1) == c
        p_ablated[idx] = probs[0]
        for d in range(random_draws):
            rand_correct[d, idx] = outs[d + 1].argmax(1) == c
            p_rand[d, idx] = probs[d + 1]
    intact_acc = float(np.mean(ctx.val.preds == labels))
    acc = float(ablated.mean())
    rand_acc = rand_correct.mean(axis=1)
    return {
        "accuracy": acc,
        "intact_accuracy": intact_acc,
        "ablation_drop": intact_acc - acc,
        "ablation_prob_drop": float(np.mean(p_intact - p_ablated)),
        "random_ablation_accuracy": float(rand_acc.mean()),
        "random_ablation_drop": float(np.mean(intact_acc - rand_acc)),
        "random_ablation_prob_drop": float(np.mean(p_intact[None, :] - p_rand)),
    }
