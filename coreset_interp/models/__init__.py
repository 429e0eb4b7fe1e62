"""Models: torchvision architectures cut at the last conv block, one module per ``conf/model/`` YAML,
with their weights sources (:mod:`coreset_interp.models.weights`)."""

from __future__ import annotations

# Each model module registers its class with MODELS when imported.
from coreset_interp.models import resnet18, resnet50, vgg19  # noqa: F401
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.base import MODELS, Model, build_architecture, get_model, list_models
from coreset_interp.models.train import evaluate_accuracy
from coreset_interp.models.weights import WeightsSource

__all__ = [
    "MODELS",
    "Model",
    "ModelAdapter",
    "WeightsSource",
    "build_architecture",
    "evaluate_accuracy",
    "get_model",
    "list_models",
]
