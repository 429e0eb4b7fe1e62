"""The dataset group: the :class:`ImageDataset` interface (two labelled image splits and what identifies
them for the cache), its registry and the group's verbs.

One module per ``conf/dataset/<name>.yaml`` (``digits.py``, ...) registers its class with
``@DATASETS.register`` under the module's name; the YAML holds only that constructor's fields. What a model
on the data defaults to (weights, stem, training budget) and the activation store's dtype are the
dataset's preset ``conf/dataset_defaults/<name>.yaml``, which the model group and ``activation_dtype`` read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from coreset_interp.registry import Registry

SPLITS = ("train", "val")


class ImageDataset(ABC):
    """A labelled image dataset with a ``train`` split (interpretation is learned there) and a ``val``
    split (evaluation happens there).

    Subclasses set ``num_classes`` and ``class_names``; ``name`` is set by ``@DATASETS.register`` (the
    module's name).
    """

    name: str
    num_classes: int
    class_names: list[str]

    @abstractmethod
    def split(self, split: str) -> Dataset:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            A torch Dataset of (image tensor C x H x W, int label) in a fixed order.
        """

    @abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            int64 labels of the split, in the Dataset's order.
        """

    @property
    def class_ids(self) -> list[int]:
        """The classes a job runs on (``dataset.classes``), sorted indices into ``class_names``; labels keep
        their index among all ``num_classes`` (a 1000-way head still applies to an ImageNet subset).
        """
        return list(getattr(self, "_class_ids", range(self.num_classes)))

    def describe(self) -> dict[str, Any]:
        """Returns:
        What a job's result records about the data (classes run on, files left out); {} by default.
        """
        return {}

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Returns:
        Everything that determines the images and their order (for cache keys).
        """

    @staticmethod
    def check_split(split: str) -> None:
        """Raise a clear error for an unknown split name.

        Args:
            split: the split name to check.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")


DATASETS: Registry[ImageDataset] = Registry("dataset")


#: ``get_dataset(name, **fields)``: build the entry of ``conf/dataset/<name>.yaml`` from its flat fields
#: (:meth:`Registry.get`: an unknown name or field is a one-line error listing the valid ones).
get_dataset = DATASETS.get
#: ``list_datasets()``: the registered names (= the YAML names in ``conf/dataset/``).
list_datasets = DATASETS.names
