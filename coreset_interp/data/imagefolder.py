"""Image datasets stored on disk in ImageFolder layout (ImageNet and any other)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

from coreset_interp.data.base import ImageDataset

# torchvision's ImageNet normalisation, which its pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderDataset(ImageDataset):
    """``<root>/<train_dir>/<class>/*`` and ``<root>/<val_dir>/<class>/*``, with torchvision's evaluation
    transform (resize, centre crop, normalise). Both splits must have the same class folders.

    Args:
        root: dataset folder.
        train_dir: sub-folder of the train split.
        val_dir: sub-folder of the val split.
        image_size: centre-crop size.
        resize: shorter side after resizing, before the crop.
        max_per_class_train: keep at most this many images per class of ``train`` (the first ones in
            sorted file order); None keeps all.
        max_per_class_val: the same for ``val``.
        name: dataset name for logs and cache keys.
    """

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        val_dir: str = "val",
        image_size: int = 224,
        resize: int = 256,
        max_per_class_train: int | None = None,
        max_per_class_val: int | None = None,
        name: str = "imagefolder",
    ) -> None:
        self.name = name
        self.root = Path(os.path.expanduser(str(root)))
        self.dirs = {"train": train_dir, "val": val_dir}
        self.image_size = int(image_size)
        self.resize = int(resize)
        self.caps = {"train": max_per_class_train, "val": max_per_class_val}
        for split, sub in self.dirs.items():
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(
                    f"{name}: no {split} folder at {self.root / sub}; set dataset.root (or the env var "
                    "named in conf/dataset/) to a folder in ImageFolder layout"
                )
        transform = transforms.Compose(
            [
                transforms.Resize(self.resize),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        self._folders = {
            split: datasets.ImageFolder(str(self.root / sub), transform=transform)
            for split, sub in self.dirs.items()
        }
        classes = self._folders["train"].classes
        if self._folders["val"].classes != classes:
            raise ValueError(f"{name}: train and val have different class folders")
        self.class_names = list(classes)
        self.num_classes = len(classes)
        self._index = {split: self._capped(split) for split in self.dirs}

    def _capped(self, split: str) -> np.ndarray:
        targets = np.asarray(self._folders[split].targets, dtype=np.int64)
        cap = self.caps[split]
        if cap is None:
            return np.arange(len(targets))
        keep = [np.flatnonzero(targets == c)[: int(cap)] for c in range(self.num_classes)]
        return np.sort(np.concatenate(keep))

    def split(self, split: str) -> Dataset:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            The (possibly capped) ImageFolder split.
        """
        self.check_split(split)
        return Subset(self._folders[split], self._index[split].tolist())

    def labels(self, split: str) -> np.ndarray:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            int64 labels in the split's order.
        """
        self.check_split(split)
        return np.asarray(self._folders[split].targets, dtype=np.int64)[self._index[split]]

    def fingerprint(self) -> dict[str, Any]:
        """Returns:
        Root, transform and caps, plus the file count per split (a changed folder changes the key).
        """
        return {
            "name": self.name,
            "root": str(self.root.resolve()),
            "dirs": self.dirs,
            "image_size": self.image_size,
            "resize": self.resize,
            "caps": self.caps,
            "n": {s: int(len(self._index[s])) for s in self.dirs},
        }
