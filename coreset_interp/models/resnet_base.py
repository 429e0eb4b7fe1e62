"""What torchvision's ResNets share here: the cut after layer4 and the small-input stem."""

from __future__ import annotations

from coreset_interp.models.adapter import resnet_adapter, resnet_small_stem
from coreset_interp.models.base import Model


class ResNet(Model):
    """A torchvision ResNet cut at the output of layer4 (after its final ReLU); subclasses name the
    torchvision builder and its ImageNet weights."""

    cut = staticmethod(resnet_adapter)
    small_stem = staticmethod(resnet_small_stem)
