"""Architectures and weights: torchvision models with ImageNet weights, checkpoints, or trained here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from coreset_interp.models.adapter import ModelAdapter, resnet_adapter, vgg_adapter
from coreset_interp.registry import Registry

log = logging.getLogger(__name__)


class ArchSpec:
    """How to build one architecture.

    Args:
        builder: torchvision constructor.
        weights: torchvision's ImageNet weights enum member.
        adapter: function cutting the model into features and head.
        small_stem: adapts the model to small inputs in place.
    """

    def __init__(
        self,
        builder: Callable[..., nn.Module],
        weights: Any,
        adapter: Callable[[nn.Module, str], ModelAdapter],
        small_stem: Callable[[nn.Module, int], None],
    ) -> None:
        self.builder = builder
        self.weights = weights
        self.adapter = adapter
        self.small_stem = small_stem


def _resnet_small_stem(model: nn.Module, num_classes: int) -> None:
    # A 7x7 stride-2 stem leaves 1x1 maps at layer4 for 32x32 inputs; 3x3 stride 1 keeps 2x2.
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)


def _vgg_small_stem(model: nn.Module, num_classes: int) -> None:
    # The 25088-wide classifier exists for 7x7 maps of 224 inputs; small inputs pool to one vector.
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)


ARCHS: Registry[ArchSpec] = Registry("model")
for _name, _builder, _weights, _adapter, _stem in [
    ("resnet18", tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, resnet_adapter, _resnet_small_stem),
    ("resnet50", tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, resnet_adapter, _resnet_small_stem),
    ("vgg19", tvm.vgg19, tvm.VGG19_Weights.IMAGENET1K_V1, vgg_adapter, _vgg_small_stem),
]:
    ARCHS.register(_name)(lambda b=_builder, w=_weights, a=_adapter, s=_stem: ArchSpec(b, w, a, s))


def list_models() -> list[str]:
    """Returns:
    The registered architecture names (= YAML names in ``conf/model/``).
    """
    return ARCHS.names()


def build_architecture(arch: str, num_classes: int, stem: str, seed: int = 0) -> ModelAdapter:
    """Build an architecture with freshly initialised weights, deterministically from ``seed``.

    Args:
        arch: registered architecture name.
        num_classes: classifier outputs.
        stem: ``standard`` or ``small`` (small inputs such as 32x32 digits).
        seed: seed of the weight initialisation.

    Returns:
        The adapter (eval mode).
    """
    spec = ARCHS.get(arch)
    if stem not in ("standard", "small"):
        raise ValueError(f"model.stem must be 'standard' or 'small', got {stem!r}")
    # fork_rng keeps torch's global generator untouched: initialisation depends on `seed` only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.builder(weights=None, num_classes=num_classes)
        if stem == "small":
            spec.small_stem(model, num_classes)
    return spec.adapter(model, arch).eval()


def imagenet_checkpoint_path(arch: str) -> Path:
    """Args:
        arch: registered architecture name.

    Returns:
        Where torchvision looks for the ImageNet weights in the torch hub cache ($TORCH_HOME).
    """
    url = ARCHS.get(arch).weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_imagenet(arch: str) -> ModelAdapter:
    """Build ``arch`` with torchvision's ImageNet weights from the local torch hub cache.

    Args:
        arch: registered architecture name.

    Returns:
        The adapter (eval mode).

    Raises:
        FileNotFoundError: when the weights file is not in the cache (nothing is downloaded here, so a
            missing file is reported at once instead of hanging on the network).
    """
    spec = ARCHS.get(arch)
    path = imagenet_checkpoint_path(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch} are not in the torch hub cache: expected {path} "
            f"(torchvision's {spec.weights}); copy the file there or set TORCH_HOME"
        )
    model = spec.builder(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return spec.adapter(model, arch).eval()


def load_checkpoint(arch: str, path: str | Path, num_classes: int, stem: str) -> ModelAdapter:
    """Build ``arch`` and load a checkpoint into it.

    Args:
        arch: registered architecture name.
        path: a file holding a state dict, a dict with ``state_dict``/``model`` key, or a pickled module.
        num_classes: classifier outputs the checkpoint was trained with.
        stem: ``standard`` or ``small``.

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
    adapter = build_architecture(arch, num_classes, stem)
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
            f"checkpoint {path} does not fit {arch} (stem={stem}, classes={num_classes}): {err}"
        ) from err
    return adapter.eval()
