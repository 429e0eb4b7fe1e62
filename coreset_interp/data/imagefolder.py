"""Image datasets stored on disk in ImageFolder layout (any dataset; ImageNet builds on it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision import transforms

from coreset_interp.data.base import DATASETS, ImageDataset
from coreset_interp.data.classes import cap_per_class, choose_classes
from coreset_interp.data.files import (
    BAD_IMAGE_POLICIES,
    FileEntry,
    ImageFiles,
    check_files,
    listing_digest,
    scan_tree,
)

# torchvision's ImageNet normalisation, which its pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _names(items: list[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


@DATASETS.register
class ImageFolderDataset(ImageDataset):
    """``<root>/<train_dir>/<class>/*`` and ``<root>/<val_dir>/<class>/*``, with torchvision's evaluation
    transform (resize, centre crop, normalise). Class indices are the train class folders in sorted
    order; val's folders must be among them.

    Each split is listed in one walk with a stat per file; the listing (relative path, label, size,
    mtime of every kept file) is the cache identity, so moving, adding or re-encoding a file changes it.

    Args:
        root: dataset folder.
        train_dir: sub-folder of the train split.
        val_dir: sub-folder of the val split.
        image_size: centre-crop size.
        resize: shorter side after resizing, before the crop.
        max_per_class_train: keep at most this many images per class of ``train`` (the first ones in
            sorted file order); None keeps all.
        max_per_class_val: the same for ``val``.
        classes: None (every class folder), an integer k (the first k classes, or k drawn with
            ``classes_seed``) or a list of class folder names. Labels keep their index among all classes.
        classes_seed: seed of a random choice of k classes; None = the first k.
        on_bad_image: ``error`` (a file that fails to decode stops the job with its path), ``check``
            (also a cheap scan of every file before any work: empty, truncated or unreadable headers stop
            the job, listing them), ``skip`` (the cheap scan's failures are left out and counted).
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
        classes: Any = None,
        classes_seed: int | None = None,
        on_bad_image: str = "error",
    ) -> None:
        self.root = Path(os.path.expanduser(str(root)))
        self.dirs = {"train": train_dir, "val": val_dir}
        self.image_size = int(image_size)
        self.resize = int(resize)
        self.caps = {"train": max_per_class_train, "val": max_per_class_val}
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(
                f"{self.name}: on_bad_image={on_bad_image!r}; choose one of {BAD_IMAGE_POLICIES}"
            )
        self.on_bad_image = on_bad_image
        for split, sub in self.dirs.items():
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(
                    f"{self.name}: no {split} folder at {self.root / sub}; set dataset.root (or the env var "
                    "named in conf/dataset/) to a folder in ImageFolder layout"
                )
        self._transform = transforms.Compose(
            [
                transforms.Resize(self.resize),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        train_dirs, train_files = scan_tree(self.root / train_dir)
        self.keys, self.class_names = self._class_index(train_dirs)
        self.num_classes = len(self.keys)
        index = {k: i for i, k in enumerate(self.keys)}
        strangers = [d for d in train_dirs if d not in index]
        if strangers:
            raise ValueError(self._strangers_message("train", strangers))
        folders = [index[d] for d in train_dirs]
        self._class_ids = choose_classes(classes, self.keys, classes_seed, self.name, candidates=folders)
        samples = {"train": self._folder_samples("train", train_files, index)}
        samples["val"] = self._val_samples(index)
        self.skipped: dict[str, list[str]] = {"train": [], "val": []}
        self._entries: dict[str, list[FileEntry]] = {}
        self._labels: dict[str, np.ndarray] = {}
        for split, (entries, labels) in samples.items():
            keep = cap_per_class(labels, self._class_ids, self.caps[split])
            self._entries[split] = [entries[i] for i in keep]
            self._labels[split] = labels[keep]
        self._check_presence()
        if self.on_bad_image != "error":
            self._check_images()
        self._digest = {s: listing_digest(self._entries[s], self._labels[s]) for s in self.dirs}

    # ------------------------------------------------------------------ hooks for ImageNet
    def _class_index(self, train_dirs: list[str]) -> tuple[list[str], list[str]]:
        """Returns:
        (class keys in index order, display names): here the train folders themselves.
        """
        return list(train_dirs), list(train_dirs)

    def _strangers_message(self, split: str, strangers: list[str]) -> str:
        return (
            f"{self.name}: {split} has class folder(s) that train does not have: {_names(strangers)}; "
            f"classes come from {self.root / self.dirs['train']}"
        )

    def _val_samples(self, index: dict[str, int]) -> tuple[list[FileEntry], np.ndarray]:
        val_dirs, val_files = scan_tree(self.root / self.dirs["val"])
        strangers = [d for d in val_dirs if d not in index]
        if strangers:
            raise ValueError(self._strangers_message("val", strangers))
        return self._folder_samples("val", val_files, index)

    # ------------------------------------------------------------------ listing
    def _folder_samples(
        self, split: str, files: list[FileEntry], index: dict[str, int]
    ) -> tuple[list[FileEntry], np.ndarray]:
        """Files of ``<split>/<class>/...`` with the label of their class folder."""
        loose = [f.rel for f in files if "/" not in f.rel]
        if loose:
            raise ValueError(
                f"{self.name}: {split} holds image files outside class folders ({_names(loose, 3)}); "
                "expected <split>/<class>/<image>"
            )
        labels = np.asarray([index[f.rel.split("/", 1)[0]] for f in files], dtype=np.int64)
        return files, labels

    def _check_presence(self) -> None:
        """One line naming the chosen classes with no train images, or with none in val."""
        for split in self.dirs:
            present = set(np.unique(self._labels[split]).tolist())
            missing = [self.keys[c] for c in self._class_ids if c not in present]
            if not missing:
                continue
            if split == "train":
                raise ValueError(
                    f"{self.name}: empty class folder(s) in train: {_names(missing)} "
                    f"({self.root / self.dirs['train']})"
                )
            raise ValueError(
                f"{self.name}: class(es) in train but not in val: {_names(missing)} "
                f"({self.root / self.dirs['val']})"
            )

    def _check_images(self) -> None:
        for split, sub in self.dirs.items():
            bad = check_files(self.root / sub, self._entries[split])
            if not bad:
                continue
            if self.on_bad_image == "check":
                rel, problem = bad[0]
                raise ValueError(
                    f"{self.name}: {len(bad)} broken image(s) in {split}, first {self.root / sub / rel}: "
                    f"{problem} (dataset.on_bad_image=skip leaves them out)"
                )
            drop = {rel for rel, _ in bad}
            keep = [i for i, e in enumerate(self._entries[split]) if e.rel not in drop]
            self.skipped[split] = sorted(drop)
            self._entries[split] = [self._entries[split][i] for i in keep]
            self._labels[split] = self._labels[split][keep]
        self._check_presence()

    # ------------------------------------------------------------------ ImageDataset
    @property
    def class_ids(self) -> list[int]:
        """The classes this dataset runs on (sorted indices into ``class_names``)."""
        return list(self._class_ids)

    def split(self, split: str) -> Dataset:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            The split's (image tensor, label) pairs, decoded when read.
        """
        self.check_split(split)
        folder = self.root / self.dirs[split]
        paths = [str(folder / e.rel) for e in self._entries[split]]
        return ImageFiles(paths, self._labels[split], self._transform)

    def labels(self, split: str) -> np.ndarray:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            int64 labels in the split's order.
        """
        self.check_split(split)
        return self._labels[split].copy()

    def describe(self) -> dict[str, Any]:
        """Returns:
        The classes run on and the files left out as broken (``on_bad_image=skip``).
        """
        return {
            "classes": [self.keys[c] for c in self._class_ids],
            "n": {s: len(self._labels[s]) for s in self.dirs},
            "bad_images_skipped": {s: len(v) for s, v in self.skipped.items()},
            "bad_images_skipped_files": {s: v[:20] for s, v in self.skipped.items()},
        }

    def fingerprint(self) -> dict[str, Any]:
        """Returns:
        Transform, caps, classes and a digest of every kept file's relative path, label, size and mtime
        (not the root: a copy with the same files and times, e.g. on another node, shares the cache).
        """
        return {
            "name": self.name,
            "dirs": self.dirs,
            "image_size": self.image_size,
            "resize": self.resize,
            "caps": self.caps,
            "classes": self._class_ids,
            "files": self._digest,
            "n": {s: len(self._labels[s]) for s in self.dirs},
        }
