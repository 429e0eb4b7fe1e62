"""The model group: the :class:`Model` base class, its registry and the group's verbs.

One module per ``conf/model/<name>.yaml`` (``resnet18.py``, ...) defines one :class:`Model` subclass,
registered with ``@MODELS.register`` under the module's name. A model is the YAML's fields: which weights
(:mod:`coreset_interp.models.weights`), which stem, and the training settings used when the weights are
trained here; :meth:`Model.load` turns it into a ready :class:`ModelAdapter` for a dataset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.train import TRAIN_FIELDS
from coreset_interp.models.weights import LoadRequest, WeightsSource, weights_source
from coreset_interp.registry import Registry, RegistryError

if TYPE_CHECKING:
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.data import ImageDataset

STEMS = ("standard", "small")


class Model(ABC):
    """A torchvision classifier cut at its last conv block, with its weights source.

    Args:
        weights: ``imagenet`` (torchvision's file in the local torch hub cache), ``train`` (trained here on
            the dataset's train split, cached), ``random`` (untrained, seeded by ``train.seed``) or a
            checkpoint path.
        stem: ``standard`` (torchvision's) or ``small`` (for small inputs such as 32x32 digits).
        train: training settings (:data:`TRAIN_FIELDS`); ``seed`` also seeds ``random`` weights.
    """

    name: ClassVar[str]
    #: torchvision's ImageNet weights enum member of this architecture.
    imagenet_weights: ClassVar[Any]

    def __init__(
        self, weights: str = "imagenet", stem: str = "standard", train: Mapping[str, Any] | None = None
    ) -> None:
        if stem not in STEMS:
            raise ValueError(f"model.stem must be 'standard' or 'small', got {stem!r}")
        train = dict(train or {})
        unknown = [k for k in train if k not in TRAIN_FIELDS]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise RegistryError(f"model.train has no field(s) {names}; valid: {', '.join(TRAIN_FIELDS)}")
        self.weights = str(weights)
        self.stem = stem
        self.train = train
        self.source: WeightsSource = weights_source(self.weights, train)

    @staticmethod
    @abstractmethod
    def torchvision(num_classes: int = 1000) -> nn.Module:
        """Args:
            num_classes: classifier outputs.

        Returns:
            torchvision's architecture with freshly initialised weights.
        """

    @staticmethod
    @abstractmethod
    def cut(module: nn.Module, name: str) -> ModelAdapter:
        """Args:
            module: the torchvision model.
            name: the model's name (for logs).

        Returns:
            The model cut at its last conv block.
        """

    @staticmethod
    @abstractmethod
    def small_stem(module: nn.Module, num_classes: int) -> None:
        """Adapt ``module`` to small inputs in place.

        Args:
            module: the torchvision model.
            num_classes: classifier outputs.
        """

    def architecture(self, num_classes: int, seed: int = 0) -> ModelAdapter:
        """Build the architecture with freshly initialised weights, deterministically from ``seed``.

        Args:
            num_classes: classifier outputs.
            seed: seed of the weight initialisation.

        Returns:
            The adapter (eval mode).
        """
        # fork_rng keeps torch's global generator untouched: initialisation depends on `seed` only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.torchvision(num_classes=num_classes)
            if self.stem == "small":
                self.small_stem(module, num_classes)
        return self.cut(module, self.name).eval()

    def imagenet_checkpoint(self) -> Path:
        """Returns:
        Where torchvision looks for this architecture's ImageNet weights in the torch hub cache ($TORCH_HOME).
        """
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(self.imagenet_weights.url).name

    def spec(self, dataset: ImageDataset) -> dict[str, Any]:
        """What determines the model's weights (the key of its checkpoint and of everything downstream).

        Args:
            dataset: the dataset the model is used (and maybe trained) on.

        Returns:
            A JSON-serialisable specification.
        """
        # "arch" is the model's name: the key keeps the field name it had, so cached artifacts stay valid.
        own = {"arch": self.name, "weights": self.weights, "stem": self.stem}
        return {**own, **self.source.spec(self, dataset)}

    def load(
        self, dataset: ImageDataset, cache: ArtifactCache, device: torch.device, progress: bool = True
    ) -> tuple[ModelAdapter, dict[str, Any]]:
        """Resolve the weights and return the ready model.

        Args:
            dataset: the dataset.
            cache: the artifact cache (trained checkpoints).
            device: where the model runs.
            progress: show progress bars.

        Returns:
            (adapter on ``device`` in eval mode, info with ``spec`` and training details when trained).
        """
        spec = self.spec(dataset)
        adapter, extra = self.source.load(LoadRequest(self, dataset, cache, spec, device, progress))
        return adapter.to(device).eval(), {"spec": spec, **extra}

    def with_weights(self, weights: str, seed: int | None = None) -> Model:
        """Args:
            weights: another weights source.
            seed: another ``train.seed`` (the seed of ``random`` weights), or None to keep it.

        Returns:
            The same architecture and stem with those weights (e.g. the null reference's random model).
        """
        train = dict(self.train) if seed is None else {**self.train, "seed": int(seed)}
        return type(self)(weights=weights, stem=self.stem, train=train)


MODELS: Registry[Model] = Registry("model")


#: ``get_model(name, **fields)``: build the entry of ``conf/model/<name>.yaml`` from its flat fields
#: (:meth:`Registry.get`: an unknown name or field is a one-line error listing the valid ones).
get_model = MODELS.get
#: ``list_models()``: the registered names (= the YAML names in ``conf/model/``).
list_models = MODELS.names


def build_architecture(name: str, num_classes: int, stem: str = "standard", seed: int = 0) -> ModelAdapter:
    """Args:
        name: a registered model.
        num_classes: classifier outputs.
        stem: ``standard`` or ``small``.
        seed: seed of the weight initialisation.

    Returns:
        The architecture with freshly initialised weights (eval mode).
    """
    return get_model(name, weights="random", stem=stem).architecture(num_classes, seed)
