"""ImageNet-1k as researchers have it on disk: train/ in synset folders, val/ in synset folders or flat
(``ILSVRC2012_val_00000001.JPEG`` ...) with a labels file, and torchvision's class indices."""

from __future__ import annotations

import csv
import io
import os
import tarfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from coreset_interp.data.base import DATASETS
from coreset_interp.data.files import FileEntry, scan_tree
from coreset_interp.data.imagefolder import ImageFolderDataset, _names

#: The devkit's files (inside ``ILSVRC2012_devkit_t12/`` in the tarball).
DEVKIT_META = "data/meta.mat"
DEVKIT_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
VAL_LABEL_FORMATS = (
    "Kaggle's LOC_val_solution.csv, a two-column 'file wnid' text file, or the devkit "
    "ILSVRC2012_devkit_t12.tar.gz"
)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """torchvision's ImageNet-1k classes: index i is the i-th wnid in sorted order.

    Returns:
        (1000 wnids, 1000 class names), in index order (the names are torchvision's weights'
        ``meta["categories"]``), read from the package's ``imagenet_classes.tsv``.
    """
    text = resources.files("coreset_interp.data").joinpath("imagenet_classes.tsv").read_text()
    wnids, names = [], []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        idx, wnid, name = line.split("\t")
        if int(idx) != len(wnids):
            raise RuntimeError(f"imagenet_classes.tsv: index {idx} out of order")
        wnids.append(wnid)
        names.append(name)
    return tuple(wnids), tuple(names)


def read_val_labels(path: Path) -> dict[str, str]:
    """Labels of a flat ILSVRC val folder.

    Args:
        path: Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the wnid first in the
            prediction string), a text file of ``<file> <wnid>`` lines, or the devkit (the
            ``ILSVRC2012_devkit_t12.tar.gz`` tarball or its extracted folder).

    Returns:
        File stem (``ILSVRC2012_val_00000001``) -> wnid.
    """
    if not path.exists():
        raise FileNotFoundError(f"imagenet: dataset.val_labels {path} does not exist ({VAL_LABEL_FORMATS})")
    if path.is_dir() or tarfile.is_tarfile(path):
        return _devkit_labels(path)
    if path.suffix.lower() == ".csv":
        return _csv_labels(path)
    return _text_labels(path)


def _csv_labels(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(
                f"imagenet: {path} is not LOC_val_solution.csv (header ImageId,PredictionString)"
            )
        for row in reader:
            if len(row) < 2 or not row[1].split():
                raise ValueError(f"imagenet: {path}: malformed row {row!r}")
            out[Path(row[0].strip()).stem] = row[1].split()[0]
    return out


def _text_labels(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 2:
            raise ValueError(
                f"imagenet: {path} line {n}: expected '<file> <wnid>', got {line!r} ({VAL_LABEL_FORMATS})"
            )
        out[Path(parts[0]).stem] = parts[1]
    return out


def _devkit_labels(path: Path) -> dict[str, str]:
    """Parsed as torchvision.datasets.ImageNet does: the leaf synsets (no children) of meta.mat map
    ILSVRC2012_ID -> wnid; line i of the ground truth is the ID of val image i."""
    meta_bytes, truth_text = _devkit_files(path)
    import scipy.io

    synsets = scipy.io.loadmat(io.BytesIO(meta_bytes), squeeze_me=True)["synsets"]
    id_to_wnid = {
        int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in np.atleast_1d(synsets) if int(s["num_children"]) == 0
    }
    out: dict[str, str] = {}
    for i, line in enumerate(truth_text.split(), 1):
        ilsvrc_id = int(line)
        if ilsvrc_id not in id_to_wnid:
            raise ValueError(
                f"imagenet: devkit ground truth line {i}: ILSVRC2012_ID {ilsvrc_id} not in meta.mat"
            )
        out[f"ILSVRC2012_val_{i:08d}"] = id_to_wnid[ilsvrc_id]
    return out


def _devkit_files(path: Path) -> tuple[bytes, str]:
    if path.is_dir():
        meta = sorted(path.rglob("meta.mat"))
        truth = sorted(path.rglob("ILSVRC2012_validation_ground_truth.txt"))
        if not meta or not truth:
            raise ValueError(f"imagenet: devkit folder {path} lacks {DEVKIT_META} or {DEVKIT_GROUND_TRUTH}")
        return meta[0].read_bytes(), truth[0].read_text()
    with tarfile.open(path) as tar:
        found: dict[str, bytes] = {}
        for member in tar:
            for want in (DEVKIT_META, DEVKIT_GROUND_TRUTH):
                if member.isfile() and (member.name == want or member.name.endswith("/" + want)):
                    fh = tar.extractfile(member)
                    assert fh is not None
                    found[want] = fh.read()
        missing = [w for w in (DEVKIT_META, DEVKIT_GROUND_TRUTH) if w not in found]
        if missing:
            raise ValueError(f"imagenet: devkit {path} lacks {', '.join(missing)}")
    return found[DEVKIT_META], found[DEVKIT_GROUND_TRUTH].decode()


@DATASETS.register
class ImageNetDataset(ImageFolderDataset):
    """ImageNet-1k: ``<root>/<train_dir>/<wnid>/*.JPEG``; ``<root>/<val_dir>/`` in wnid folders or flat
    with ``val_labels``. Labels are torchvision's 1000-way indices (the wnids in sorted order), also for
    a tree that holds only some synsets or a ``classes`` subset, so the pretrained head applies.

    Args:
        root: dataset folder.
        val_labels: labels of a flat val folder (:func:`read_val_labels`); a relative path is taken
            relative to ``root``; ignored when val is in wnid folders.
        train_dir, val_dir, image_size, resize, max_per_class_train, max_per_class_val, classes,
            classes_seed, on_bad_image: as :class:`ImageFolderDataset`.
    """

    def __init__(
        self,
        root: str,
        val_labels: str | None = None,
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
        self.val_labels = val_labels
        super().__init__(
            root,
            train_dir=train_dir,
            val_dir=val_dir,
            image_size=image_size,
            resize=resize,
            max_per_class_train=max_per_class_train,
            max_per_class_val=max_per_class_val,
            classes=classes,
            classes_seed=classes_seed,
            on_bad_image=on_bad_image,
        )

    def _class_index(self, train_dirs: list[str]) -> tuple[list[str], list[str]]:
        wnids, names = imagenet_classes()
        return list(wnids), list(names)

    def _strangers_message(self, split: str, strangers: list[str]) -> str:
        return (
            f"{self.name}: {split} has {len(strangers)} synset(s) not among the 1000 ImageNet-1k classes: "
            f"{_names(strangers)}"
        )

    def _labels_path(self) -> Path | None:
        if self.val_labels in (None, ""):
            return None
        path = Path(os.path.expanduser(str(self.val_labels)))
        return path if path.is_absolute() else self.root / path

    def _val_samples(self, index: dict[str, int]) -> tuple[list[FileEntry], np.ndarray]:
        folder = self.root / self.dirs["val"]
        val_dirs, val_files = scan_tree(folder)
        loose = [f for f in val_files if "/" not in f.rel]
        if not loose:
            strangers = [d for d in val_dirs if d not in index]
            if strangers:
                raise ValueError(self._strangers_message("val", strangers))
            return self._folder_samples("val", val_files, index)
        if len(loose) != len(val_files):
            raise ValueError(f"{self.name}: {folder} mixes loose images with synset folders; use one layout")
        path = self._labels_path()
        if path is None:
            raise ValueError(
                f"{self.name}: {folder} is flat (ILSVRC2012_val_*.JPEG); set dataset.val_labels to "
                f"{VAL_LABEL_FORMATS}"
            )
        table = read_val_labels(path)
        unlabelled = [f.rel for f in loose if Path(f.rel).stem not in table]
        if unlabelled:
            raise ValueError(
                f"{self.name}: {len(unlabelled)} val image(s) have no label in {path}: "
                f"{_names(unlabelled, 3)}"
            )
        wnids = [table[Path(f.rel).stem] for f in loose]
        strangers = sorted({w for w in wnids if w not in index})
        if strangers:
            raise ValueError(self._strangers_message(f"val labels file {path}", strangers))
        return loose, np.asarray([index[w] for w in wnids], dtype=np.int64)
