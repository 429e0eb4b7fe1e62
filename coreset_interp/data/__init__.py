"""Datasets, one registry entry per YAML in ``conf/dataset/``."""

from __future__ import annotations

from typing import Any

from coreset_interp.data.base import SPLITS, ImageDataset
from coreset_interp.data.digits import DigitsDataset
from coreset_interp.data.fashion_mnist import FashionMNISTDataset
from coreset_interp.data.imagefolder import ImageFolderDataset
from coreset_interp.data.imagenet import ImageNetDataset
from coreset_interp.registry import Registry

DATASETS: Registry[ImageDataset] = Registry("dataset")
# Config keys that describe how a dataset pairs with models, not the data itself.
_MODEL_KEYS = (
    "name",
    "model_weights",
    "stem",
    "activation_dtype",
    "train_epochs",
    "train_target_accuracy",
    "train_min_accuracy",
    "train_max_per_class",
    "train_val_max_per_class",
)


@DATASETS.register("digits")
def _digits(image_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0) -> ImageDataset:
    return DigitsDataset(image_size=image_size, val_fraction=val_fraction, split_seed=split_seed)


@DATASETS.register("fashion_mnist")
def _fashion_mnist(**params: Any) -> ImageDataset:
    return FashionMNISTDataset(**params)


@DATASETS.register("imagenet")
def _imagenet(**params: Any) -> ImageDataset:
    return ImageNetDataset(name="imagenet", **params)


@DATASETS.register("imagefolder")
def _imagefolder(**params: Any) -> ImageDataset:
    return ImageFolderDataset(name="imagefolder", **params)


def build_dataset(cfg: dict[str, Any]) -> ImageDataset:
    """Build the dataset a ``dataset`` config group entry describes.

    Args:
        cfg: the resolved ``dataset`` config (``name`` plus its parameters).

    Returns:
        The dataset.
    """
    params = {k: v for k, v in cfg.items() if k not in _MODEL_KEYS}
    return DATASETS.get(cfg["name"], **params)


def list_datasets() -> list[str]:
    """Returns:
    The registered dataset names.
    """
    return DATASETS.names()


__all__ = ["DATASETS", "SPLITS", "ImageDataset", "build_dataset", "list_datasets"]
