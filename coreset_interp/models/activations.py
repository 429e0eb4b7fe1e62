"""Activations of one split: last-conv maps, their GAP vectors, labels, logits and predictions.

Extraction streams batches into ``.npy`` files opened as memory maps, so a split larger than memory (ImageNet
with ResNet50 is about 1.28M x 2048 x 7 x 7) is written and read without ever being held whole; reads go
class by class or by sorted index lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coreset_interp.models.adapter import ModelAdapter

_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class ActivationStore:
    """Read access to the activations of one split.

    Attributes:
        path: the artifact folder.
        maps: memory-mapped last-conv maps (n x d x h x w).
        g: GAP vectors (n x d), float32 in memory.
        labels: ground-truth labels (n,).
        preds: the model's predicted labels (n,).
        logits: the model's logits (n x classes), float32.
    """

    path: Path
    maps: np.ndarray
    g: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    logits: np.ndarray

    @classmethod
    def open(cls, path: Path) -> ActivationStore:
        """Args:
            path: a folder written by :func:`extract_activations`.

        Returns:
            The store (maps memory-mapped read-only, the rest loaded).
        """
        path = Path(path)
        return cls(
            path=path,
            maps=np.load(path / "maps.npy", mmap_mode="r"),
            g=np.load(path / "g.npy").astype(np.float32, copy=False),
            labels=np.load(path / "labels.npy"),
            preds=np.load(path / "preds.npy"),
            logits=np.load(path / "logits.npy"),
        )

    @property
    def n(self) -> int:
        """Number of images."""
        return int(len(self.labels))

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(d, h, w) of one image's maps."""
        return tuple(int(s) for s in self.maps.shape[1:])  # type: ignore[return-value]

    def classes(self) -> np.ndarray:
        """Returns:
        The sorted labels present.
        """
        return np.unique(self.labels)

    def class_indices(self, c: int) -> np.ndarray:
        """Args:
            c: a class label.

        Returns:
            Sorted indices of the images of class ``c``.
        """
        return np.flatnonzero(self.labels == c)

    def read_maps(self, indices: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Read the maps of some images into memory as float32.

        Args:
            indices: image indices (any order; rows come back in this order).
            chunk: rows read per slice of the memory map.

        Returns:
            Array (len(indices) x d x h x w).
        """
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.map_shape), dtype=np.float32)
        order = np.argsort(indices, kind="stable")
        # Sorted reads turn random access into mostly sequential reads of the file.
        for start in range(0, len(order), chunk):
            sel = order[start : start + chunk]
            out[sel] = self.maps[indices[sel]]
        return out

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """The maps of some images as rows of spatial positions, the layout ICE and Phi work on.

        Args:
            indices: image indices.

        Returns:
            Array (len(indices)*h*w x d), image-major.
        """
        a = self.read_maps(indices)
        return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def extract_activations(
    model: ModelAdapter,
    data: Dataset,
    folder: Path,
    device: torch.device,
    batch_size: int = 128,
    num_workers: int = 0,
    dtype: str = "float32",
    progress: bool = True,
    desc: str = "activations",
) -> dict[str, Any]:
    """Run ``data`` through ``model`` once and write its activations to ``folder``.

    Args:
        model: the adapter.
        data: (image, label) pairs in a fixed order.
        folder: an existing, empty folder.
        device: where to run.
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        dtype: storage type of the maps (``float32`` or ``float16``; GAP vectors and logits stay float32).
        progress: show a progress bar.
        desc: progress bar label.

    Returns:
        Metadata (n, map shape, dtype), also written to ``meta.json``.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"activation dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    n = len(data)
    if n == 0:
        raise ValueError("cannot extract activations of an empty split")
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    files: dict[str, np.ndarray] = {}
    labels = np.empty(n, dtype=np.int64)
    start = 0
    model.eval()
    with torch.no_grad():
        for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
            a = model.features(x.to(device))
            logits = model.head(a)
            if not files:
                d, h, w = a.shape[1:]
                files["maps"] = np.lib.format.open_memmap(
                    folder / "maps.npy", mode="w+", dtype=_DTYPES[dtype], shape=(n, d, h, w)
                )
                files["g"] = np.lib.format.open_memmap(
                    folder / "g.npy", mode="w+", dtype=np.float32, shape=(n, d)
                )
                files["logits"] = np.lib.format.open_memmap(
                    folder / "logits.npy", mode="w+", dtype=np.float32, shape=(n, logits.shape[1])
                )
            stop = start + len(x)
            files["maps"][start:stop] = a.cpu().numpy()
            files["g"][start:stop] = a.mean(dim=(2, 3)).cpu().numpy()
            files["logits"][start:stop] = logits.cpu().numpy()
            labels[start:stop] = np.asarray(y)
            start = stop
    for arr in files.values():
        arr.flush()  # type: ignore[attr-defined]
    np.save(folder / "labels.npy", labels)
    np.save(folder / "preds.npy", np.asarray(files["logits"]).argmax(1).astype(np.int64))
    meta = {"n": n, "map_shape": list(files["maps"].shape[1:]), "dtype": dtype}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta
