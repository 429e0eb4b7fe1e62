"""Weights sources of a model (``model.weights``): one small class each, with what goes into the model's
cache key (:meth:`WeightsSource.spec`) and how the weights are obtained (:meth:`WeightsSource.load`).

``imagenet``, ``train`` and ``random`` are names; any other value is a checkpoint path.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from coreset_interp.models.adapter import ModelAdapter

if TYPE_CHECKING:
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.data import ImageDataset
    from coreset_interp.models.base import Model


def _file_stat(path: Path) -> dict[str, Any]:
    # A replaced file must not reuse artifacts cached for the old one.
    stat = path.stat() if path.is_file() else None
    return {"size": stat.st_size if stat else None, "mtime": stat.st_mtime_ns if stat else None}


@dataclass(frozen=True)
class LoadRequest:
    """What a weights source reads to load a model.

    Args:
        model: the model.
        dataset: the dataset it is used on.
        cache: the artifact cache (trained checkpoints).
        spec: the model's full spec (:meth:`Model.spec`), the key of a trained checkpoint.
        device: where the model runs.
        progress: show progress bars.
    """

    model: Model
    dataset: ImageDataset
    cache: ArtifactCache
    spec: dict[str, Any]
    device: torch.device
    progress: bool


class WeightsSource(ABC):
    """Where a model's weights come from."""

    #: The ``model.weights`` value naming this source (None for checkpoint paths).
    key: ClassVar[str | None] = None

    @classmethod
    def from_train(cls, train: Mapping[str, Any]) -> WeightsSource:
        """Args:
            train: the ``model.train`` settings.

        Returns:
            The named source built from what it needs of them (nothing by default).
        """
        return cls()

    @abstractmethod
    def spec(self, model: Model, dataset: ImageDataset) -> dict[str, Any]:
        """Args:
            model: the model.
            dataset: the dataset it is used on.

        Returns:
            What determines the weights beyond the model's name, weights value and stem (cache key fields).
        """

    @abstractmethod
    def load(self, req: LoadRequest) -> tuple[ModelAdapter, dict[str, Any]]:
        """Args:
            req: the model, dataset, cache, spec, device and progress switch of this load.

        Returns:
            (the adapter, extra info for the job's result).
        """


class ImageNetWeights(WeightsSource):
    """torchvision's ImageNet weights from the local torch hub cache (nothing is downloaded here, so a
    missing file is reported at once instead of hanging on the network)."""

    key = "imagenet"

    def spec(self, model: Model, dataset: ImageDataset) -> dict[str, Any]:  # noqa: D102
        path = model.imagenet_checkpoint()
        return {"file": path.name, **_file_stat(path)}

    def load(self, req: LoadRequest) -> tuple[ModelAdapter, dict[str, Any]]:  # noqa: D102
        if req.dataset.num_classes != 1000:
            raise ValueError(
                f"ImageNet weights have 1000 classes but dataset {req.dataset.name} has "
                f"{req.dataset.num_classes}; use model.weights=train or a checkpoint"
            )
        return load_imagenet(req.model), {}


class RandomWeights(WeightsSource):
    """Untrained weights, initialised from ``seed`` (the null reference's model).

    Args:
        seed: seed of the initialisation.
    """

    key = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    @classmethod
    def from_train(cls, train: Mapping[str, Any]) -> WeightsSource:  # noqa: D102
        return cls(int(train.get("seed", 0)))

    def spec(self, model: Model, dataset: ImageDataset) -> dict[str, Any]:  # noqa: D102
        return {"seed": self.seed, "num_classes": dataset.num_classes}

    def load(self, req: LoadRequest) -> tuple[ModelAdapter, dict[str, Any]]:  # noqa: D102
        return req.model.architecture(req.dataset.num_classes, self.seed), {}


class TrainedWeights(WeightsSource):
    """Trained here on the dataset's train split once, the checkpoint cached under the model's spec.

    Args:
        settings: ``model.train`` (:data:`coreset_interp.models.base.TRAIN_FIELDS`).
    """

    key = "train"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from coreset_interp.models.train import OPTIONAL_TRAIN_FIELDS, TRAIN_FIELDS

        missing = [k for k in TRAIN_FIELDS if k not in settings and k not in OPTIONAL_TRAIN_FIELDS]
        if missing:
            raise ValueError(f"model.weights=train needs model.train.{', model.train.'.join(missing)}")
        self.settings = dict(settings)

    @classmethod
    def from_train(cls, train: Mapping[str, Any]) -> WeightsSource:  # noqa: D102
        return cls(train)

    def spec(self, model: Model, dataset: ImageDataset) -> dict[str, Any]:  # noqa: D102
        return {
            # Unset (null) options leave the key as it was before they existed.
            "train": {k: v for k, v in self.settings.items() if v is not None},
            "dataset": dataset.fingerprint(),
            "num_classes": dataset.num_classes,
        }

    def load(self, req: LoadRequest) -> tuple[ModelAdapter, dict[str, Any]]:  # noqa: D102
        from coreset_interp.data.classes import capped_split
        from coreset_interp.models.train import train_classifier

        cfg = self.settings
        model, dataset, device = req.model, req.dataset, req.device

        def compute(folder: Path) -> None:
            net = model.architecture(dataset.num_classes, int(cfg["seed"])).to(device)
            report = train_classifier(
                net,
                capped_split(dataset, "train", cfg.get("max_per_class")),
                capped_split(dataset, "val", cfg.get("val_max_per_class")),
                cfg,
                device,
                req.progress,
            )
            torch.save(net.model.state_dict(), folder / "model.pt")
            (folder / "train.json").write_text(json.dumps(report, indent=1))

        folder, computed = req.cache.get_or_compute("checkpoint", req.spec, compute)
        net = model.architecture(dataset.num_classes)
        net.model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
        return net, {"train": json.loads((folder / "train.json").read_text()), "trained_here": computed}


class CheckpointWeights(WeightsSource):
    """A checkpoint file: a state dict, a dict with a ``state_dict``/``model`` entry, or a pickled module.

    Args:
        path: the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def spec(self, model: Model, dataset: ImageDataset) -> dict[str, Any]:  # noqa: D102
        return {"num_classes": dataset.num_classes, "path": str(self.path.resolve()), **_file_stat(self.path)}

    def load(self, req: LoadRequest) -> tuple[ModelAdapter, dict[str, Any]]:  # noqa: D102
        return load_checkpoint(req.model, self.path, req.dataset.num_classes), {}


#: The named sources; any other ``model.weights`` value is a checkpoint path.
NAMED_SOURCES: dict[str, type[WeightsSource]] = {
    str(cls.key): cls for cls in (ImageNetWeights, TrainedWeights, RandomWeights)
}


def weights_source(weights: str, train: Mapping[str, Any]) -> WeightsSource:
    """Args:
        weights: the ``model.weights`` value.
        train: the ``model.train`` settings (training, and the seed of random weights).

    Returns:
        The source.
    """
    if weights in NAMED_SOURCES:
        return NAMED_SOURCES[weights].from_train(train)
    return CheckpointWeights(weights)


def load_imagenet(model: Model) -> ModelAdapter:
    """Build ``model``'s architecture with torchvision's ImageNet weights from the local torch hub cache.

    Args:
        model: the model (its stem is ignored: the ImageNet weights are for the standard one).

    Returns:
        The adapter (eval mode).

    Raises:
        FileNotFoundError: when the weights file is not in the cache.
    """
    path = model.imagenet_checkpoint()
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {model.name} are not in the torch hub cache: expected {path} "
            f"(torchvision's {model.imagenet_weights}); copy the file there or set TORCH_HOME"
        )
    module = model.torchvision()
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.cut(module, model.name).eval()


def load_checkpoint(model: Model, path: str | Path, num_classes: int) -> ModelAdapter:
    """Build ``model``'s architecture and load a checkpoint into it.

    Args:
        model: the model (architecture and stem).
        path: a file holding a state dict, a dict with ``state_dict``/``model`` key, or a pickled module.
        num_classes: classifier outputs the checkpoint was trained with.

    Returns:
        The adapter (eval mode).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a bad model.weights value
        raise ValueError(f"model checkpoint {path} is not a readable torch file: {err}") from err
    adapter = model.architecture(num_classes)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict | nn.Module):
                obj = obj[key]
                break
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(
            f"model checkpoint {path} does not hold a state dict (got {type(obj).__name__}); expected a "
            "state dict, a dict with a 'state_dict' or 'model' entry, or a pickled module"
        )
    # Checkpoints saved from DataParallel prefix every key.
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    try:
        adapter.model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {path} does not fit {model.name} (stem={model.stem}, classes={num_classes}): {err}"
        ) from err
    return adapter.eval()
