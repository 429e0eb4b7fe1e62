"""Internal units of a CNN for VEBI: every ReLU *call*, hooked by call order.

A unit is one channel of one ReLU call's output. ResNet blocks call one ReLU module several times per
forward pass (torchvision's BasicBlock twice, Bottleneck three times), so units are numbered by call order,
not by module: :class:`ReluCalls` counts calls and is reset before every forward pass. Only calls with a
4-D output (feature maps) are units; the fully connected ReLUs of VGG's classifier are skipped, which
gives the unit counts of the VEBI port (3904 for ResNet18, 22720 for ResNet50, 5504 for VGG19).

This module also holds the per-image unit energy features e_k = sum_hw A_k^2 / sum_{k',hw} A_k'^2 (one
layer-call's features sum to 1; an all-zero call gives zeros). The activation store's extraction pass
(:mod:`coreset_interp.models.extraction`) writes them, chunk by chunk, in the same forward pass as the
last-conv maps; :func:`extract_unit_features` is the separate whole-split pass for stores held outside the
cache. It also holds :class:`StagedModel`, which re-runs only the part of the
network after the first modified unit (the ablations of the evaluation share the prefix).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coreset_interp.models.adapter import ModelAdapter

#: Called with (call index, ReLU output); may return a replacement output (e.g. with units zeroed).
CallFn = Callable[[int, torch.Tensor], torch.Tensor | None]

# Bumped whenever the feature definition changes, so cached features are never reused across versions.
FEATURES_VERSION = 1


@dataclass(frozen=True)
class UnitLayer:
    """One ReLU call with a 4-D output: a "layer" of units.

    Attributes:
        call: the call's index in the forward pass (0-based, 4-D calls only).
        module: qualified name of the ReLU module (shared by several calls in ResNets).
        channels: number of units (channels).
        height: height of the maps for the probe input.
        width: width of the maps for the probe input.
        offset: index of the layer's first unit in the concatenated unit vector.
    """

    call: int
    module: str
    channels: int
    height: int
    width: int
    offset: int

    @property
    def key(self) -> str:
        """A readable, unique name for result.json, e.g. ``16:layer4.1.relu``."""
        return f"{self.call}:{self.module}"


class StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised from a hook to end a forward pass once everything needed was captured."""


class ReluCalls:
    """Forward hooks on every ReLU module of an adapter, numbering the calls with 4-D outputs.

    Use as a context manager; call :meth:`reset` before every forward pass (a stale counter would
    silently address the wrong units), and :meth:`check` after it.

    Args:
        adapter: the model.
        on_call: called for every 4-D call with (call index, output); a returned tensor replaces the
            output (a forward hook's return value). The output of an in-place ReLU is the tensor that later
            operations may modify in place, so callbacks must read (or copy) it at once.
    """

    def __init__(self, adapter: ModelAdapter, on_call: CallFn) -> None:
        self.adapter = adapter
        self.on_call = on_call
        self.count = 0
        self._handles: list[Any] = []
        self._names = {id(m): name for name, m in adapter.relu_modules()}
        self.modules_by_call: list[str] = []

    def __enter__(self) -> ReluCalls:
        for _, module in self.adapter.relu_modules():
            self._handles.append(module.register_forward_hook(self._hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self, start: int = 0) -> None:
        """Args:
        start: index of the next call (non-zero when a forward pass starts mid-network).
        """
        self.count = start

    def check(self, expected: int) -> None:
        """Fail loudly when a forward pass did not make the expected number of calls.

        Args:
            expected: number of 4-D ReLU calls a full pass makes.
        """
        if self.count != expected:
            raise RuntimeError(
                f"ReLU call counter at {self.count} after a forward pass, expected {expected}: "
                "the counter was not reset, or the network calls ReLUs differently than when probed"
            )

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            return None
        index = self.count
        self.count += 1
        if len(self.modules_by_call) <= index:
            self.modules_by_call.append(self._names.get(id(module), "?"))
        return self.on_call(index, output)


def probe_layers(adapter: ModelAdapter, sample: torch.Tensor) -> list[UnitLayer]:
    """Find the unit layers (4-D ReLU calls) of a model with one forward pass.

    Args:
        adapter: the model (eval mode).
        sample: one input batch (a single image is enough), on the model's device.

    Returns:
        The layers in call order, with unit offsets.
    """
    shapes: list[tuple[int, int, int]] = []

    def record(index: int, out: torch.Tensor) -> None:
        shapes.append(tuple(int(s) for s in out.shape[1:]))  # type: ignore[arg-type]

    with torch.no_grad(), ReluCalls(adapter, record) as calls:
        calls.reset()
        adapter(sample)
    layers, offset = [], 0
    for i, (c, h, w) in enumerate(shapes):
        layers.append(UnitLayer(i, calls.modules_by_call[i], c, h, w, offset))
        offset += c
    if not layers:
        raise ValueError(f"{adapter.arch}: no ReLU module with 4-D outputs, so VEBI has no units")
    return layers


def unit_energy(out: torch.Tensor) -> torch.Tensor:
    """Per-image unit energy of one call's output.

    Args:
        out: activations (N x C x H x W).

    Returns:
        (N x C) float32: sum over positions of A_k^2 divided by the sum over all units and positions;
        0 for an image whose maps are all zero.
    """
    a2 = out.detach().float().pow(2).sum(dim=(2, 3))
    total = a2.sum(dim=1, keepdim=True)
    return torch.where(total > 0, a2 / total.clamp_min(torch.finfo(torch.float32).tiny), 0.0)


def extract_unit_features(
    adapter: ModelAdapter,
    data: Dataset,
    folder: Path,
    device: torch.device,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Stream the unit energy features of a split to ``folder/E.npy`` (memory-mapped, n x units).

    Args:
        adapter: the model (eval mode, on ``device``).
        data: (image, label) pairs in the split's fixed order.
        folder: an existing, empty folder.
        device: where to run.
        batch_size: images per forward pass.
        num_workers: DataLoader workers.
        progress: show a progress bar.

    Returns:
        Metadata (``n``, ``units``, ``layers``), also written to ``layers.json``.
    """
    n = len(data)
    if n == 0:
        raise ValueError("cannot extract unit features of an empty split")
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    layers = probe_layers(adapter, data[0][0][None].to(device))
    units = layers[-1].offset + layers[-1].channels
    out = np.lib.format.open_memmap(folder / "E.npy", mode="w+", dtype=np.float32, shape=(n, units))
    labels = np.empty(n, dtype=np.int64)
    parts: list[torch.Tensor] = []

    def record(index: int, a: torch.Tensor) -> None:
        parts.append(unit_energy(a))

    start = 0
    with torch.no_grad(), ReluCalls(adapter, record) as calls:
        for x, y in tqdm(loader, desc="vebi unit features", disable=not progress, leave=False):
            parts.clear()
            calls.reset()
            adapter(x.to(device))
            calls.check(len(layers))
            stop = start + len(x)
            out[start:stop] = torch.cat(parts, dim=1).cpu().numpy()
            labels[start:stop] = np.asarray(y)
            start = stop
    out.flush()
    np.save(folder / "labels.npy", labels)
    meta = {"n": n, "units": units, "layers": [layer.__dict__ for layer in layers]}
    (folder / "layers.json").write_text(json.dumps(meta, indent=1))
    return meta


@dataclass
class UnitFeatures:
    """The cached unit features of the train split.

    Attributes:
        path: the artifact folder.
        E: memory-mapped features (n x units, float32).
        layers: the unit layers.
    """

    path: Path
    E: np.ndarray
    layers: list[UnitLayer]

    @classmethod
    def open(cls, path: Path) -> UnitFeatures:
        """Args:
            path: a folder written by :func:`extract_unit_features`.

        Returns:
            The features (memory-mapped read-only).
        """
        meta = json.loads((Path(path) / "layers.json").read_text())
        layers = [UnitLayer(**layer) for layer in meta["layers"]]
        return cls(Path(path), np.load(Path(path) / "E.npy", mmap_mode="r"), layers)

    @property
    def units(self) -> int:
        """Number of units (columns of E)."""
        return int(self.E.shape[1])


def unit_features_spec(model_key: str) -> dict[str, Any]:
    """Args:
        model_key: the cache key of the model's train activations (model + dataset + split).

    Returns:
        The cache specification of the train split's unit features.
    """
    return {"model_key": model_key, "split": "train", "features": "relu_energy", "version": FEATURES_VERSION}


def flatten_stages(module: nn.Module) -> list[nn.Module]:
    """Expand nested ``nn.Sequential`` containers into the list of modules they run in order.

    Args:
        module: a module (a Sequential is expanded, anything else is one stage).

    Returns:
        The stages.
    """
    if isinstance(module, nn.Sequential):
        return [stage for child in module.children() for stage in flatten_stages(child)]
    return [module]


class StagedModel:
    """The adapter as a list of stages (features, flattened) plus its head, with the ReLU calls that each
    stage makes, so that a forward pass can start at the stage holding the first modified unit.

    ``run(x)`` equals ``adapter(x)`` (the adapter guarantees head(features(x)) == model(x)).

    Args:
        adapter: the model (eval mode).
        sample: one input batch on the model's device (to count each stage's calls).
    """

    def __init__(self, adapter: ModelAdapter, sample: torch.Tensor) -> None:
        self.adapter = adapter
        features = getattr(adapter, "_features", None)
        # An adapter without a Sequential feature extractor still works, as one stage.
        self.stages: list[Callable[[torch.Tensor], torch.Tensor]] = (
            list(flatten_stages(features)) if isinstance(features, nn.Sequential) else [adapter.features]
        )
        self.first_call: list[int] = []
        with torch.no_grad(), ReluCalls(adapter, lambda i, a: None) as calls:
            calls.reset()
            h = sample
            for stage in self.stages:
                self.first_call.append(calls.count)
                h = stage(h)
            adapter.head(h)
            self.n_calls = calls.count

    def stage_of_call(self, call: int) -> int:
        """Args:
            call: a ReLU call index.

        Returns:
            Index of the stage in which that call happens (the head counts as stage ``len(stages)``).
        """
        starts = np.asarray(self.first_call)
        return int(np.searchsorted(starts, call, side="right") - 1) if call < self.n_calls else len(starts)

    def calls_before(self, stage: int) -> int:
        """Args:
            stage: a stage index (``len(stages)`` = the head).

        Returns:
            The number of ReLU calls made before that stage runs.
        """
        return self.first_call[stage] if stage < len(self.stages) else self.n_calls

    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """Run the stages before ``stop`` (no hooks are expected to modify them).

        Args:
            x: input batch.
            stop: first stage not to run.

        Returns:
            The input of stage ``stop``.
        """
        for stage in self.stages[:stop]:
            x = stage(x)
        return x

    def suffix(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """Run the stages from ``start`` and the head.

        Args:
            h: the input of stage ``start`` (from :meth:`prefix`).
            start: first stage to run.

        Returns:
            Logits.
        """
        for stage in self.stages[start:]:
            h = stage(h)
        return self.adapter.head(h)


def batches(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Args:
        indices: an index array.
        size: batch size.

    Yields:
        Consecutive slices of at most ``size`` indices.
    """
    for start in range(0, len(indices), max(1, size)):
        yield indices[start : start + size]
