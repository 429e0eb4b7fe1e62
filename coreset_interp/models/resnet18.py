"""torchvision ResNet18. Last conv block = output of layer4 (after its final ReLU)."""

from __future__ import annotations

from torchvision import models as tvm

from coreset_interp.models.adapter import resnet_adapter, resnet_small_stem
from coreset_interp.models.base import MODELS, Model


@MODELS.register
class ResNet18(Model):
    """torchvision ResNet18. Last conv block = output of layer4 (after its final ReLU)."""

    imagenet_weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    torchvision = staticmethod(tvm.resnet18)
    cut = staticmethod(resnet_adapter)
    small_stem = staticmethod(resnet_small_stem)
