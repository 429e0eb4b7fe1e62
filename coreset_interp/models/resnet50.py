"""torchvision ResNet50. Last conv block = output of layer4 (after its final ReLU)."""

from __future__ import annotations

from torchvision import models as tvm

from coreset_interp.models.adapter import resnet_adapter, resnet_small_stem
from coreset_interp.models.base import MODELS, Model


@MODELS.register
class ResNet50(Model):
    """torchvision ResNet50. Last conv block = output of layer4 (after its final ReLU)."""

    imagenet_weights = tvm.ResNet50_Weights.IMAGENET1K_V1
    torchvision = staticmethod(tvm.resnet50)
    cut = staticmethod(resnet_adapter)
    small_stem = staticmethod(resnet_small_stem)
