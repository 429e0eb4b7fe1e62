"""Fashion-MNIST (60k train / 10k test, 28x28 grey, 10 classes) read from the standard IDX files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from coreset_interp.data.base import DATASETS, ImageDataset
from coreset_interp.data.classes import cap_per_class, choose_classes

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
#: Environment variable naming a folder with the IDX files (used when ``root`` is not given).
ENV_VAR = "FASHION_MNIST_ROOT"
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type code 0x08 = unsigned byte, the only one Fashion-MNIST uses.
_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not).

    Args:
        path: the file.

    Returns:
        The uint8 array with the shape the header declares.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != _UBYTE:
        raise ValueError(f"{path}: IDX type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    n = int(np.prod(shape)) if shape else 0
    if len(data) - header != n:
        raise ValueError(f"{path}: IDX header declares {shape} ({n} bytes) but holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_root(root: str | None) -> Path:
    """The folder holding the four IDX files: ``root``, else ``$FASHION_MNIST_ROOT``, else Debian's.

    Args:
        root: an explicit folder, or None.

    Returns:
        The folder.
    """
    candidates = [root] if root else [os.environ.get(ENV_VAR) or DEBIAN_ROOT]
    for cand in candidates:
        folder = Path(os.path.expanduser(str(cand)))
        if all(_locate(folder, f) is not None for pair in _FILES.values() for f in pair):
            return folder
    raise FileNotFoundError(
        f"fashion_mnist: no IDX files (train-images-idx3-ubyte[.gz] ...) in {candidates[0]}; "
        "install them with "
        f"`apt-get install dataset-fashion-mnist` (-> {DEBIAN_ROOT}) or download them from "
        f"https://github.com/zalandoresearch/fashion-mnist and set dataset.root or ${ENV_VAR}"
    )


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


class _PreparedSplit(Dataset):
    """Raw uint8 images, each upsampled, normalised and repeated to 3 channels when it is read."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, mean: float, std: float) -> None:
        self.images = images
        self.labels = labels
        self.size = size
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i].astype(np.float32) / 255.0)[None, None]
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = ((x[0] - self.mean) / self.std).expand(3, -1, -1).contiguous()
        return x, int(self.labels[i])


@DATASETS.register
class FashionMNISTDataset(ImageDataset):
    """Fashion-MNIST's train (60k) and test (10k, used as ``val``) splits, upsampled to ``image_size``
    with bilinear interpolation, repeated to 3 channels and normalised with the train split's pixel mean
    and std (the digits preparation), one image at a time when it is read.

    Args:
        root: folder with the IDX files; None = ``$FASHION_MNIST_ROOT`` or Debian's folder.
        image_size: side of the square images fed to the model.
        max_per_class_train: keep at most this many train images per class (the first ones); None keeps all.
        max_per_class_val: the same for ``val``.
        classes: a list of class indices or names, an integer k (the first k, or k drawn with
            ``classes_seed``), or None for all ten.
        classes_seed: seed of a random choice of k classes; None = the first k.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 32,
        max_per_class_train: int | None = None,
        max_per_class_val: int | None = None,
        classes: Any = None,
        classes_seed: int | None = None,
    ) -> None:
        if image_size < 8:
            raise ValueError(f"fashion_mnist image_size must be at least 8, got {image_size}")
        self.root = find_root(root)
        self.image_size = int(image_size)
        self.caps = {"train": max_per_class_train, "val": max_per_class_val}
        self.num_classes = 10
        self.class_names = list(CLASS_NAMES)
        self._class_ids = choose_classes(classes, CLASS_NAMES, classes_seed, "fashion_mnist")
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._files: dict[str, list[dict[str, Any]]] = {}
        for split, (img_name, lab_name) in _FILES.items():
            img_path, lab_path = _locate(self.root, img_name), _locate(self.root, lab_name)
            assert img_path is not None and lab_path is not None
            images, labels = read_idx(img_path), read_idx(lab_path).astype(np.int64)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(
                    f"fashion_mnist {split}: images {images.shape} and labels {labels.shape} do not match"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= 10):
                raise ValueError(f"fashion_mnist {split}: labels outside 0..9 in {lab_path}")
            keep = cap_per_class(labels, self._class_ids, self.caps[split])
            self._images[split] = images[keep]
            self._labels[split] = labels[keep]
            self._files[split] = [
                {"file": p.name, "size": p.stat().st_size, "mtime": p.stat().st_mtime_ns}
                for p in (img_path, lab_path)
            ]
        train = self._images["train"]
        self.mean = float(train.mean() / 255.0) if train.size else 0.0
        self.std = float(train.std() / 255.0) if train.size else 1.0

    def split(self, split: str) -> Dataset:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            A Dataset of (3 x image_size x image_size float tensor, label), prepared per sample.
        """
        self.check_split(split)
        return _PreparedSplit(self._images[split], self._labels[split], self.image_size, self.mean, self.std)

    def labels(self, split: str) -> np.ndarray:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            int64 labels of the split.
        """
        self.check_split(split)
        return self._labels[split].copy()

    def describe(self) -> dict[str, Any]:
        """Returns:
        The classes run on and the split sizes.
        """
        return {
            "classes": [CLASS_NAMES[c] for c in self._class_ids],
            "n": {s: int(len(v)) for s, v in self._labels.items()},
        }

    def fingerprint(self) -> dict[str, Any]:
        """Returns:
        The files (name, size, mtime), preparation, caps and classes.
        """
        return {
            "name": self.name,
            "files": self._files,
            "image_size": self.image_size,
            "caps": self.caps,
            "classes": self._class_ids,
            "n": {s: int(len(v)) for s, v in self._labels.items()},
        }
