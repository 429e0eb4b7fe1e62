"""Train an architecture on a dataset's train split (the embedded default has no pretrained weights)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coreset_interp.models.adapter import ModelAdapter

log = logging.getLogger(__name__)

#: The fields of ``model.train``: all but the two caps are needed to train (``model.weights=train``).
TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "max_per_class",
    "val_max_per_class",
    "target_accuracy",
    "min_accuracy",
)
OPTIONAL_TRAIN_FIELDS = ("max_per_class", "val_max_per_class")


@torch.no_grad()
def evaluate_accuracy(
    model: ModelAdapter, data: Dataset, device: torch.device, batch_size: int = 256
) -> float:
    """Args:
        model: the classifier.
        data: (image, label) pairs.
        device: where to run.
        batch_size: evaluation batch size.

    Returns:
        Top-1 accuracy in [0, 1].
    """
    model.eval()
    correct = 0
    total = 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        pred = model(x.to(device)).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def train_classifier(
    model: ModelAdapter,
    train: Dataset,
    val: Dataset,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` in place with SGD + Nesterov momentum and a one-cycle schedule, light random
    translations as augmentation, stopping early once val accuracy reaches ``target_accuracy``.

    Args:
        model: the adapter to train (its weights are updated).
        train: training pairs.
        val: validation pairs (only for early stopping and the report).
        cfg: ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``, ``seed``,
            ``target_accuracy``, ``min_accuracy``.
        device: where to train.
        progress: show a progress bar.

    Returns:
        ``{"val_accuracy", "epochs", "history"}``.
    """
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    loader = DataLoader(
        train, batch_size=int(cfg["batch_size"]), shuffle=True, generator=gen, drop_last=False
    )
    epochs = int(cfg["epochs"])
    opt = torch.optim.SGD(
        model.parameters(),
        lr=float(cfg["lr"]),
        momentum=float(cfg["momentum"]),
        weight_decay=float(cfg["weight_decay"]),
        nesterov=True,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(cfg["lr"]), total_steps=epochs * len(loader), pct_start=0.25
    )
    history: list[float] = []
    bar = tqdm(total=epochs * len(loader), desc=f"train {model.arch}", disable=not progress, leave=False)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            x = _random_shift(x.to(device), gen)
            loss = F.cross_entropy(model(x), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = evaluate_accuracy(model, val, device)
        history.append(acc)
        log.info("epoch %d: val accuracy %.4f", epoch + 1, acc)
        if epoch >= 1 and acc >= float(cfg["target_accuracy"]):
            break
    bar.close()
    model.eval()
    final = history[-1]
    if final < float(cfg["min_accuracy"]):
        log.warning(
            "%s reached only %.1f%% val accuracy (min_accuracy %.1f%%); raise model.train.epochs",
            model.arch,
            100 * final,
            100 * float(cfg["min_accuracy"]),
        )
    return {"val_accuracy": final, "epochs": len(history), "history": history}


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each batch by up to ``max_shift`` pixels (zero fill), drawn from ``gen``."""
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=gen)).tolist()
    if dx == 0 and dy == 0:
        return x
    return torch.roll(F.pad(x, (max_shift,) * 4), shifts=(dy, dx), dims=(2, 3))[
        :, :, max_shift:-max_shift, max_shift:-max_shift
    ]
