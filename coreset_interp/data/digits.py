"""The embedded default dataset: scikit-learn's bundled handwritten digits (no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from coreset_interp.data.base import DATASETS, ImageDataset


@DATASETS.register
class DigitsDataset(ImageDataset):
    """1797 8x8 grey digits, split 80/20 stratified and seeded, upsampled to ``image_size`` with bilinear
    interpolation, repeated to 3 channels and normalised with the train split's mean and std.

    Args:
        image_size: side of the square images fed to the model.
        val_fraction: share of each class held out as ``val``.
        split_seed: seed of the stratified split.
    """

    def __init__(self, image_size: int = 32, val_fraction: float = 0.2, split_seed: int = 0) -> None:
        if image_size < 8:
            raise ValueError(f"digits image_size must be at least 8, got {image_size}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.image_size = int(image_size)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        bunch = load_digits()
        images = bunch.images.astype(np.float32) / 16.0
        labels = bunch.target.astype(np.int64)
        idx = np.arange(len(labels))
        tr, va = train_test_split(
            idx, test_size=self.val_fraction, stratify=labels, random_state=self.split_seed
        )
        # Sorted so that the split order does not depend on the splitter's internal shuffling.
        self._index = {"train": np.sort(tr), "val": np.sort(va)}
        self._labels = labels
        x = torch.from_numpy(images)[:, None]
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        mean = x[self._index["train"]].mean()
        std = x[self._index["train"]].std()
        self._images = ((x - mean) / std).repeat(1, 3, 1, 1).contiguous()
        self.num_classes = 10
        self.class_names = [str(d) for d in range(10)]

    def split(self, split: str) -> Dataset:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            A TensorDataset of (3 x image_size x image_size float tensor, label).
        """
        self.check_split(split)
        idx = torch.from_numpy(self._index[split])
        return TensorDataset(self._images[idx], torch.from_numpy(self._labels[self._index[split]]))

    def labels(self, split: str) -> np.ndarray:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            int64 labels of the split.
        """
        self.check_split(split)
        return self._labels[self._index[split]].copy()

    def fingerprint(self) -> dict[str, Any]:
        """Returns:
        The parameters that determine the images.
        """
        return {
            "name": self.name,
            "image_size": self.image_size,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "n": int(len(self._labels)),
        }
