"""Input pipeline and device settings of the forward passes: DataLoader workers, pinned memory, and
autocast / channels_last on CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.parallel import available_cpus


def _in_memory(data: Dataset) -> bool:
    while isinstance(data, Subset):
        data = data.dataset
    return isinstance(data, TensorDataset)


def resolve_num_workers(value: Any, data: Dataset | None = None) -> int:
    """Args:
        value: ``auto`` or a non-negative integer (the ``num_workers`` config value).
        data: the dataset the loader reads, if known.

    Returns:
        DataLoader workers: ``auto`` = the CPUs this job may use
        (:func:`coreset_interp.parallel.available_cpus`), or 0 for
        in-memory tensors, where worker processes only add start-up and copying.
    """
    if isinstance(value, str):
        if value.strip().lower() != "auto":
            if not value.strip().isdigit():
                raise ValueError(f"num_workers must be 'auto' or an integer >= 0, got {value!r}")
            value = int(value)
        else:
            return 0 if data is not None and _in_memory(data) else available_cpus()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_workers must be 'auto' or an integer >= 0, got {value!r}")
    return int(value)


def make_loader(
    data: Dataset, batches: Sequence[Sequence[int]], num_workers: int, device: torch.device
) -> DataLoader:
    """A loader over given batches of indices, in order.

    Args:
        data: the dataset.
        batches: index lists, one per batch.
        num_workers: worker processes.
        device: where the batches go (pinned host memory for CUDA, so copies can be asynchronous).

    Returns:
        The DataLoader.
    """
    return DataLoader(
        data,
        batch_sampler=list(batches),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def compute_precision(device: torch.device, autocast: bool) -> str:
    """Args:
        device: the pass's device.
        autocast: whether autocast was asked for (used on CUDA only).

    Returns:
        ``float32`` on CPU or without autocast; on CUDA ``bfloat16`` where supported, else ``float16``.
        It changes the numbers, so it is part of an activation store's cache key.
    """
    if device.type != "cuda" or not autocast:
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


@contextlib.contextmanager
def pass_mode(
    model: ModelAdapter, device: torch.device, precision: str, channels_last: bool
) -> Iterator[None]:
    """Inference mode for one pass: no gradients, autocast at ``precision`` and channels_last weights
    on CUDA; the model's memory format is restored afterwards.

    Args:
        model: the adapter.
        device: the pass's device.
        precision: from :func:`compute_precision`.
        channels_last: use the channels_last memory format (CUDA only; it does not change results
            beyond floating-point reordering).
    """
    cl = channels_last and device.type == "cuda"
    if cl:
        model.to(memory_format=torch.channels_last)
    amp = (
        torch.autocast(device_type="cuda", dtype=getattr(torch, precision))
        if precision != "float32"
        else contextlib.nullcontext()
    )
    try:
        with torch.no_grad(), amp:
            yield
    finally:
        if cl:
            model.to(memory_format=torch.contiguous_format)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Args:
        x: a batch from the loader.
        device: the target device.
        channels_last: convert 4-D CUDA batches to channels_last.

    Returns:
        The batch on ``device`` (an asynchronous copy from pinned memory on CUDA).
    """
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and device.type == "cuda" and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
