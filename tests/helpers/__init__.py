"""Tiny real parts shared by the tests: a 3-class network with known relevant units and its context.

``tiny_context(folder)`` builds an :class:`InterpretContext` on :class:`TinyNet` (two conv layers, each
ReLU module called like ResNet's, a 2-D ReLU in the head as in VGG) over two fixed tensor splits, with real
activation stores and a real artifact cache, in well under a second: every interpreter can fit on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from coreset_interp.cache import ArtifactCache
from coreset_interp.data.base import ImageDataset
from coreset_interp.interpreters import InterpretContext
from coreset_interp.models.activations import ActivationStore, extract_activations
from coreset_interp.models.adapter import ModelAdapter

SIZE, CLASSES, N_TRAIN, N_VAL = 6, 3, 30, 12


class TensorSplits(ImageDataset):
    """Two fixed splits of tensors."""

    name = "tiny"
    num_classes = CLASSES
    class_names = [str(c) for c in range(CLASSES)]

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self._splits = splits

    def split(self, split: str) -> Dataset:
        self.check_split(split)
        return TensorDataset(*self._splits[split])

    def labels(self, split: str) -> np.ndarray:
        return self._splits[split][1].numpy()

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name}


class TinyNet(nn.Module):
    """conv1 copies input channel c to unit c (c < 3) and adds two constant units; conv2 mixes each class
    channel with a constant, so only layer 1's channel c carries class c cleanly. One ReLU module is called
    twice (as in ResNet blocks) and the head has a 2-D ReLU (skipped, as in VGG's classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 1)
        self.conv2 = nn.Conv2d(5, 4, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(4, 4)
        self.fc_relu = nn.ReLU()
        self.fc2 = nn.Linear(4, CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()
            for c in range(3):
                self.conv1.weight[c, c] = 1.0
                self.conv2.weight[c, c] = 1.0
                self.conv2.weight[c, 3] = 2.0
                self.fc1.weight[c, c] = 1.0
                self.fc2.weight[c, c] = 5.0  # sharp logits: a clear true-class probability
            self.conv1.bias[3:] = 0.5
            self.conv2.weight[3, 3] = 1.0
        self.features = nn.Sequential(self.conv1, self.relu, self.conv2, self.relu)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), self.fc1, self.fc_relu, self.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_images(n_per_class: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for c in range(CLASSES):
        x = 0.1 * torch.rand(n_per_class, 3, SIZE, SIZE, generator=gen)
        x[:, c] += 1.0 + 0.2 * torch.rand(n_per_class, SIZE, SIZE, generator=gen)
        xs.append(x)
        ys.append(torch.full((n_per_class,), c, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


def tiny_context(folder: Path) -> InterpretContext:
    """Args:
        folder: an empty folder for the activation stores and the cache.

    Returns:
        The context of :class:`TinyNet` on seeded train (30 per class) and val (12 per class) images,
        which the network classifies perfectly.
    """
    gen = torch.Generator().manual_seed(0)
    data = TensorSplits({"train": tiny_images(N_TRAIN, gen), "val": tiny_images(N_VAL, gen)})
    net = TinyNet().eval()
    adapter = ModelAdapter(net, net.features, net.head, "tiny").eval()
    stores = {}
    for split in ("train", "val"):
        store_dir = folder / split
        store_dir.mkdir()
        extract_activations(
            adapter, data.split(split), store_dir, torch.device("cpu"), batch_size=16, progress=False
        )
        stores[split] = ActivationStore.open(store_dir)
    assert np.mean(stores["val"].preds == stores["val"].labels) == 1.0
    return InterpretContext(
        model=adapter,
        dataset=data,
        train=stores["train"],
        val=stores["val"],
        device=torch.device("cpu"),
        cache=ArtifactCache(folder / "cache"),
        model_key="tiny",
        batch_size=16,
        progress=False,
    )


def store_from_maps(path: Path, maps: np.ndarray, labels: np.ndarray, n_classes: int) -> ActivationStore:
    """An in-memory activation store of some maps: GAP features, predictions equal to the labels, zero
    logits.

    Args:
        path: the store's folder name (nothing is written).
        maps: (n, d, h, w) maps.
        labels: (n,) class labels.
        n_classes: logit columns.

    Returns:
        The store.
    """
    maps = np.asarray(maps, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    return ActivationStore(
        path=path,
        maps=maps,
        g=maps.mean(axis=(2, 3)),
        labels=labels,
        preds=labels.copy(),
        logits=np.zeros((len(labels), n_classes), dtype=np.float32),
    )
