"""Split a torchvision classifier into ``features`` (up to the last conv block) and ``head`` (the rest).

``head(features(x))`` reproduces ``model(x)`` exactly, because both run the model's own modules in the
model's own order; only the cut point is chosen here.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class ModelAdapter(nn.Module):
    """A classifier cut at its last convolutional block.

    Args:
        model: the full torchvision model (kept intact; ``forward`` calls it).
        features: modules from the input to the last conv block's output (after its ReLU).
        head: modules from there to the logits.
        arch: architecture name (for logs).
    """

    def __init__(self, model: nn.Module, features: nn.Module, head: nn.Module, arch: str) -> None:
        super().__init__()
        self.model = model
        self._features = features
        self._head = head
        self.arch = arch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: images (N x 3 x H x W).

        Returns:
            Activation maps A of the last conv block (N x d x h x w), post-ReLU.
        """
        return self._features(x)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        """Args:
            a: activation maps as returned by :meth:`features` (or a modified version of them).

        Returns:
            Logits (N x classes).
        """
        return self._head(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: images.

        Returns:
            The model's logits.
        """
        return self.model(x)

    def relu_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Yields:
        (qualified name, module) of every ReLU module, in registration order. A module may be called
        several times per forward pass (ResNet blocks reuse theirs), so hook by call order.
        """
        for name, module in self.model.named_modules():
            if isinstance(module, nn.ReLU):
                yield name, module


def resnet_adapter(model: nn.Module, arch: str) -> ModelAdapter:
    """Cut a torchvision ResNet after ``layer4``.

    Args:
        model: a torchvision ResNet.
        arch: its name.

    Returns:
        The adapter.
    """
    features = nn.Sequential(
        model.conv1,
        model.bn1,
        model.relu,
        model.maxpool,
        model.layer1,
        model.layer2,
        model.layer3,
        model.layer4,
    )
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)
    return ModelAdapter(model, features, head, arch)


def vgg_adapter(model: nn.Module, arch: str) -> ModelAdapter:
    """Cut a torchvision VGG before the final max-pool of ``features`` (after the last conv's ReLU).

    Args:
        model: a torchvision VGG.
        arch: its name.

    Returns:
        The adapter.
    """
    convs = model.features
    features = nn.Sequential(*list(convs.children())[:-1])
    head = nn.Sequential(list(convs.children())[-1], model.avgpool, nn.Flatten(1), model.classifier)
    return ModelAdapter(model, features, head, arch)


def resnet_small_stem(model: nn.Module, num_classes: int) -> None:
    """Adapt a torchvision ResNet to small inputs in place.

    Args:
        model: a torchvision ResNet.
        num_classes: classifier outputs (unchanged here).
    """
    # A 7x7 stride-2 stem leaves 1x1 maps at layer4 for 32x32 inputs; 3x3 stride 1 keeps 2x2.
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)


def vgg_small_stem(model: nn.Module, num_classes: int) -> None:
    """Adapt a torchvision VGG to small inputs in place.

    Args:
        model: a torchvision VGG.
        num_classes: classifier outputs.
    """
    # The 25088-wide classifier exists for 7x7 maps of 224 inputs; small inputs pool to one vector.
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)
