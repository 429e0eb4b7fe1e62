"""Models: torchvision architectures cut at the last conv block, with their weights resolved."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from coreset_interp.cache import ArtifactCache
from coreset_interp.data import ImageDataset
from coreset_interp.data.classes import capped_split
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.train import evaluate_accuracy, train_classifier
from coreset_interp.models.zoo import (
    ARCHS,
    build_architecture,
    imagenet_checkpoint_path,
    list_models,
    load_checkpoint,
    load_imagenet,
)

log = logging.getLogger(__name__)


def model_spec(cfg: dict[str, Any], dataset: ImageDataset) -> dict[str, Any]:
    """What determines a model's weights (the key of its checkpoint and of everything downstream).

    Args:
        cfg: the resolved ``model`` config.
        dataset: the dataset the model is used (and maybe trained) on.

    Returns:
        A JSON-serialisable specification.
    """
    weights = str(cfg["weights"])
    spec: dict[str, Any] = {"arch": cfg["arch"], "weights": weights, "stem": cfg["stem"]}
    if weights == "train":
        # Unset (null) options leave the key as it was before they existed.
        spec["train"] = {k: v for k, v in dict(cfg["train"]).items() if v is not None}
        spec["dataset"] = dataset.fingerprint()
        spec["num_classes"] = dataset.num_classes
    elif weights == "random":
        spec["seed"] = int(cfg["train"]["seed"])
        spec["num_classes"] = dataset.num_classes
    elif weights == "imagenet":
        # A replaced hub file must not reuse activations cached for the old one.
        path = imagenet_checkpoint_path(str(cfg["arch"]))
        stat = path.stat() if path.is_file() else None
        spec.update(
            file=path.name, size=stat.st_size if stat else None, mtime=stat.st_mtime_ns if stat else None
        )
    else:
        path = Path(weights).expanduser()
        stat = path.stat() if path.is_file() else None
        spec.update(
            num_classes=dataset.num_classes,
            path=str(path.resolve()),
            size=stat.st_size if stat else None,
            mtime=stat.st_mtime_ns if stat else None,
        )
    return spec


def load_model(
    cfg: dict[str, Any],
    dataset: ImageDataset,
    cache: ArtifactCache,
    device: torch.device,
    progress: bool = True,
) -> tuple[ModelAdapter, dict[str, Any]]:
    """Resolve the ``model`` config to a ready adapter.

    ``weights: train`` trains the architecture on the dataset's train split once and caches the
    checkpoint under a hash of everything that determines it; later jobs load it.

    Args:
        cfg: the resolved ``model`` config (``arch``, ``weights``, ``stem``, ``train``).
        dataset: the dataset.
        cache: the artifact cache.
        device: where the model runs.
        progress: show progress bars.

    Returns:
        (adapter on ``device`` in eval mode, info with ``spec`` and training details when trained).
    """
    arch = str(cfg["arch"])
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of: {', '.join(list_models())}")
    weights = str(cfg["weights"])
    stem = str(cfg["stem"])
    spec = model_spec(cfg, dataset)
    info: dict[str, Any] = {"spec": spec}
    if weights == "imagenet":
        if dataset.num_classes != 1000:
            raise ValueError(
                f"ImageNet weights have 1000 classes but dataset {dataset.name} has {dataset.num_classes}; "
                "use model.weights=train or a checkpoint"
            )
        return load_imagenet(arch).to(device), info
    if weights == "random":
        return build_architecture(arch, dataset.num_classes, stem, int(cfg["train"]["seed"])).to(device), info
    if weights != "train":
        return load_checkpoint(arch, weights, dataset.num_classes, stem).to(device), info

    def compute(folder: Path) -> None:
        model = build_architecture(arch, dataset.num_classes, stem, int(cfg["train"]["seed"])).to(device)
        tcfg = dict(cfg["train"])
        report = train_classifier(
            model,
            capped_split(dataset, "train", tcfg.get("max_per_class")),
            capped_split(dataset, "val", tcfg.get("val_max_per_class")),
            tcfg,
            device,
            progress,
        )
        torch.save(model.model.state_dict(), folder / "model.pt")
        (folder / "train.json").write_text(json.dumps(report, indent=1))

    folder, computed = cache.get_or_compute("checkpoint", spec, compute)
    model = build_architecture(arch, dataset.num_classes, stem)
    model.model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    info["train"] = json.loads((folder / "train.json").read_text())
    info["trained_here"] = computed
    return model.to(device).eval(), info


__all__ = [
    "ModelAdapter",
    "build_architecture",
    "evaluate_accuracy",
    "imagenet_checkpoint_path",
    "list_models",
    "load_checkpoint",
    "load_imagenet",
    "load_model",
    "model_spec",
]
