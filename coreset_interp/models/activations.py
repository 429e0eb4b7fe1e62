"""Activations of one split: last-conv maps, their GAP vectors, labels, predictions, val logits and VEBI's
unit energies.

Layout in the artifact cache (one extraction pass writes it, :mod:`coreset_interp.models.extraction`):

- the store, ``activations/<key>/``: ``meta.json`` (rows, map shape, storage type, chunk boundaries),
  ``g.npy`` (n x d float32, memory-mapped), ``labels.npy``, ``preds.npy`` and, for ``val``, ``logits.npy``;
- per chunk of consecutive rows, one artifact per part, addressed by :func:`chunk_key` from the store's
  key and the chunk's rows: ``core`` (the chunk's g, labels, preds, logits, from which the store is
  assembled), ``maps`` (``maps.npy``, n_chunk x d x h x w in the store's dtype) and ``energy``
  (``E.npy``, n_chunk x units float32, kind ``unit_features``).

Rows keep the dataset's order; maps and energies are opened as memory maps and indexed like one array
(:class:`~coreset_interp.models.chunked.ChunkedRows`), so reading one class touches only its rows. A
store may lack maps or energies (the null reference extracts only what its interpreter reads); they are
added later by one more pass over the same chunks.

:func:`extract_activations` writes a self-contained store (every part in one folder) for tests and tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.chunked import ChunkedRows, rows_view

DTYPES = {"float32": np.float32, "float16": np.float16}
#: Version of the store layout (part of the store's cache key).
STORE_FORMAT = 2
#: The parts of a chunk: cache kind and the files they hold.
PART_KINDS = {"core": "activations", "maps": "activations", "energy": "unit_features"}
PART_FILES = {"maps": "maps.npy", "energy": "E.npy"}


def chunk_key(
    store_key: str, part: str, rows: tuple[int, int] | list[int]
) -> tuple[str, str, dict[str, Any]]:
    """Where one part of one chunk lives in the cache.

    Args:
        store_key: the store's key.
        part: ``core``, ``maps`` or ``energy``.
        rows: the chunk's (start, stop) rows.

    Returns:
        (cache kind, key, spec).
    """
    if part not in PART_KINDS:
        raise ValueError(f"unknown store part {part!r}; choose one of {sorted(PART_KINDS)}")
    spec = {"store": store_key, "part": part, "rows": [int(rows[0]), int(rows[1])]}
    return PART_KINDS[part], spec_key(spec), spec


@dataclass
class ActivationStore:
    """Read access to the activations of one split.

    Attributes:
        path: the store's folder.
        maps: last-conv maps (n x d x h x w), memory-mapped, indexed like one array; None when the store
            was built without them.
        g: GAP vectors (n x d) float32, memory-mapped.
        labels: ground-truth labels (n,).
        preds: the model's predicted labels (n,).
        logits: the model's logits (n x classes) float32 for the val split; None for train (never read).
        meta: the store's ``meta.json`` (empty for stores built in memory).
    """

    path: Path
    maps: Any
    g: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    logits: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> ActivationStore:
        """Args:
            path: a store folder (in the cache, or written by :func:`extract_activations`).

        Returns:
            The store (g, maps and logits memory-mapped read-only; labels and preds loaded).
        """
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        logits = np.load(path / "logits.npy", mmap_mode="c") if (path / "logits.npy").is_file() else None
        store = cls(
            path=path,
            maps=None,
            # Copy-on-write maps: writable views for torch.from_numpy, the file is never modified.
            g=np.load(path / "g.npy", mmap_mode="c"),
            labels=np.load(path / "labels.npy"),
            preds=np.load(path / "preds.npy"),
            logits=logits,
            meta=meta,
        )
        store.maps = store._part_rows("maps")
        return store

    # ------------------------------------------------------------------------------------ layout
    @property
    def key(self) -> str:
        """The store's cache key (its folder name)."""
        return self.path.name

    @property
    def chunks(self) -> list[tuple[int, int]]:
        """(start, stop) rows of every chunk."""
        return [(int(s), int(e)) for s, e in self.meta.get("chunks", [[0, self.n]])]

    @property
    def self_contained(self) -> bool:
        """True for a store whose parts are files of its own folder (not cache artifacts)."""
        return bool(self.meta.get("self_contained", False))

    @property
    def cache_backed(self) -> bool:
        """True for a store assembled in the artifact cache (its parts are chunk artifacts there)."""
        return bool(self.meta) and not self.self_contained

    def part_path(self, part: str, index: int) -> Path:
        """Args:
            part: ``maps`` or ``energy``.
            index: chunk index.

        Returns:
            The folder holding that part of that chunk.
        """
        if self.self_contained:
            return self.path
        kind, key, _ = chunk_key(self.key, part, self.chunks[index])
        return ArtifactCache(self.path.parent.parent).path(kind, key)

    def missing(self, part: str) -> list[int]:
        """Args:
            part: ``maps`` or ``energy``.

        Returns:
            Indices of the chunks whose ``part`` is not complete.
        """
        name = PART_FILES[part]
        return [i for i in range(len(self.chunks)) if not (self.part_path(part, i) / name).is_file()]

    def _part_rows(self, part: str) -> np.ndarray | ChunkedRows | None:
        if self.missing(part):
            return None
        return rows_view(
            [
                np.load(self.part_path(part, i) / PART_FILES[part], mmap_mode="r")
                for i in range(len(self.chunks))
            ]
        )

    def energies(self) -> tuple[np.ndarray | ChunkedRows, list[dict[str, Any]]] | None:
        """VEBI's unit energies, when the store has them.

        Returns:
            (E, n x units float32 memory-mapped; the unit layers as dicts), or None.
        """
        rows = self._part_rows("energy")
        if rows is None:
            return None
        layers = json.loads((self.part_path("energy", 0) / "layers.json").read_text())["layers"]
        return rows, layers

    # ------------------------------------------------------------------------------------ reads
    @property
    def n(self) -> int:
        """Number of images."""
        return int(len(self.labels))

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(d, h, w) of one image's maps."""
        if self.maps is not None:
            return tuple(int(s) for s in self.maps.shape[1:])  # type: ignore[return-value]
        return tuple(int(s) for s in self.meta["map_shape"])  # type: ignore[return-value]

    @cached_property
    def _by_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.argsort(self.labels, kind="stable")
        classes, starts = np.unique(self.labels[order], return_index=True)
        return order, classes, np.append(starts, len(order))

    def classes(self) -> np.ndarray:
        """Returns:
        The sorted labels present.
        """
        return self._by_class[1].copy()

    def class_indices(self, c: int) -> np.ndarray:
        """Args:
            c: a class label.

        Returns:
            Sorted indices of the images of class ``c``.
        """
        order, classes, bounds = self._by_class
        pos = int(np.searchsorted(classes, c))
        if pos >= len(classes) or classes[pos] != c:
            return np.zeros(0, dtype=np.int64)
        # A stable argsort keeps each class's rows in increasing order.
        return order[bounds[pos] : bounds[pos + 1]].astype(np.int64)

    def read_maps(self, indices: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Read the maps of some images into memory as float32.

        Args:
            indices: image indices (any order; rows come back in this order).
            chunk: rows read per slice of the memory map.

        Returns:
            Array (len(indices) x d x h x w).
        """
        if self.maps is None:
            raise ValueError(
                f"activation store {self.path} has no last-conv maps (built for an interpreter that reads "
                "none); request them with parts={'maps'}"
            )
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
    energies: bool = False,
    logits: bool = True,
) -> dict[str, Any]:
    """Run ``data`` through ``model`` once and write a self-contained store to ``folder``.

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
        energies: also write VEBI's unit energies (``E.npy``) from the same pass.
        logits: write the logits (the val split's; train logits are never read).

    Returns:
        Metadata (n, map shape, dtype, chunks), also written to ``meta.json``.
    """
    from coreset_interp.models.extraction import ExtractSettings, write_self_contained

    settings = ExtractSettings(batch_size=batch_size, num_workers=num_workers, progress=progress)
    return write_self_contained(
        model, data, Path(folder), device, dtype, settings, energies=energies, logits=logits, desc=desc
    )
