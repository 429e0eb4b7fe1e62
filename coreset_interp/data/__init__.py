"""Datasets, one module and one registry entry per YAML in ``conf/dataset/``."""

from __future__ import annotations

# Each dataset module registers its class with DATASETS when imported.
from coreset_interp.data import digits, fashion_mnist, imagefolder, imagenet  # noqa: F401
from coreset_interp.data.base import DATASETS, SPLITS, ImageDataset, get_dataset, list_datasets

__all__ = ["DATASETS", "SPLITS", "ImageDataset", "get_dataset", "list_datasets"]
