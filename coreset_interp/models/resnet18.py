"""torchvision ResNet18. Last conv block = output of layer4 (after its final ReLU)."""

from __future__ import annotations

from torchvision import models as tvm

from coreset_interp.models.base import MODELS
from coreset_interp.models.resnet_base import ResNet


@MODELS.register
class ResNet18(ResNet):
    """torchvision ResNet18. Last conv block = output of layer4 (after its final ReLU)."""

    imagenet_weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    torchvision = staticmethod(tvm.resnet18)
