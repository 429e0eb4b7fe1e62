"""torchvision VGG19. Last conv block = model.features without its final max-pool (after the last ReLU)."""

from __future__ import annotations

from torchvision import models as tvm

from coreset_interp.models.adapter import vgg_adapter, vgg_small_stem
from coreset_interp.models.base import MODELS, Model


@MODELS.register
class VGG19(Model):
    """torchvision VGG19. Last conv block = model.features without its final max-pool (after the last ReLU);
    head = that max-pool + avgpool + classifier. With ``stem=small`` the classifier is a single linear layer
    on the globally pooled 512 channels, the usual small-image VGG variant.
    """

    imagenet_weights = tvm.VGG19_Weights.IMAGENET1K_V1
    torchvision = staticmethod(tvm.vgg19)
    cut = staticmethod(vgg_adapter)
    small_stem = staticmethod(vgg_small_stem)
