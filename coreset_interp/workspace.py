"""A job's shared, cached inputs: device, dataset, model and both splits' activations.

Built once per job by :func:`build_workspace` from the typed config; every stage reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from coreset_interp.cache import ArtifactCache
from coreset_interp.config import ConfigError, JobConfig, raw_config
from coreset_interp.data import ImageDataset, get_dataset
from coreset_interp.devices import job_gpu
from coreset_interp.interpreters import InterpretContext
from coreset_interp.models import ModelAdapter, get_model
from coreset_interp.models.activations import ActivationStore
from coreset_interp.models.extraction import ExtractSettings, ensure_store
from coreset_interp.models.loader import resolve_num_workers
from coreset_interp.parallel import resolve_n_jobs


def resolve_device(name: str) -> torch.device:
    """Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The torch device (``auto`` = cuda when available; ``auto``/``cuda`` in a parallel joblib sweep on
        a node with several GPUs = a GPU of the worker's own, see :mod:`coreset_interp.devices`).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or auto")
    if name == "cuda":
        # A worker of a parallel joblib sweep on a multi-GPU node takes a GPU of its own.
        gpu = job_gpu(torch.cuda.device_count())
        if gpu is not None:
            torch.cuda.set_device(gpu)
            return torch.device(f"cuda:{gpu}")
    return torch.device(name)


@dataclass
class Workspace:
    """The shared, cached inputs of a job: model, dataset and both splits' activations."""

    cache: ArtifactCache
    dataset: ImageDataset
    model: ModelAdapter
    model_info: dict[str, Any]
    train: ActivationStore
    val: ActivationStore
    activation_keys: dict[str, str]
    device: torch.device
    extras: dict[str, Any] = field(default_factory=dict)
    #: One entry per extraction pass this job ran (result.json ``extraction``: images/s per pass).
    extraction: list[dict[str, Any]] = field(default_factory=list)

    def context(self, cfg: JobConfig) -> InterpretContext:
        """Args:
            cfg: the job config (``batch_size``, ``num_workers``, ``progress``, ``n_jobs``).

        Returns:
            The interpreters' view of this workspace.
        """
        return InterpretContext(
            model=self.model,
            dataset=self.dataset,
            train=self.train,
            val=self.val,
            device=self.device,
            cache=self.cache,
            model_key=self.activation_keys["train"],
            batch_size=int(cfg.batch_size),
            num_workers=resolve_num_workers(cfg.num_workers, self.dataset.split("val")),
            progress=bool(cfg.progress),
            # Validated by JobConfig.validate.
            n_jobs=resolve_n_jobs(cfg.n_jobs),
        )


def activations_for(
    cache: ArtifactCache,
    model: ModelAdapter,
    mspec: dict[str, Any],
    dataset: ImageDataset,
    split: str,
    device: torch.device,
    cfg: JobConfig | Mapping[str, Any],
    parts: frozenset[str] = frozenset({"maps"}),
    stats: list[dict[str, Any]] | None = None,
    tag: str = "model",
) -> tuple[ActivationStore, str]:
    """Cached activations of one split, extracted in one chunked, resumable pass when missing
    (:func:`coreset_interp.models.extraction.ensure_store`).

    Args:
        cache: the artifact cache.
        model: the adapter.
        mspec: the model's specification (:meth:`coreset_interp.models.Model.spec`).
        dataset: the dataset.
        split: ``train`` or ``val``.
        device: torch device.
        cfg: the job config, or its resolved mapping (``activation_dtype``, ``batch_size``,
            ``num_workers``, ``progress``, ``extract``).
        parts: what the caller reads besides g, labels and preds: ``maps``, ``energy`` (VEBI's).
        stats: receives one entry per extraction pass that ran.
        tag: the model's role in ``stats``.

    Returns:
        (store, key).
    """
    raw = raw_config(cfg)
    dtype = str(raw["activation_dtype"])
    # A job builds every chunk it lacks; shards are for coreset-interp-extract.
    settings = replace(ExtractSettings.from_config(dict(raw)), shard=0, num_shards=1)
    store, key = ensure_store(cache, model, mspec, dataset, split, device, dtype, parts, settings, stats, tag)
    if store is None:  # cannot happen with one shard; guards a future change of the settings above
        raise RuntimeError(f"activation store {key} ({split}) is incomplete after its extraction pass")
    return store, key


def build_workspace(cfg: JobConfig | Mapping[str, Any], cache: ArtifactCache) -> Workspace:
    """Resolve dataset, model and activations for a job config.

    Args:
        cfg: the job config (a resolved mapping is validated into one).
        cache: the artifact cache.

    Returns:
        The workspace.
    """
    cfg = JobConfig.from_dict(cfg)
    device = resolve_device(cfg.device)
    dataset = get_dataset(**cfg.dataset.node())
    model, info = get_model(**cfg.model.node()).load(dataset, cache, device, cfg.progress)
    mspec = info["spec"]
    # The trained model's maps serve every interpreter of a sweep; the job's interpreter adds its own
    # parts (VEBI's energies) to the same pass.
    interp = cfg.build_interpreter()
    stats: list[dict[str, Any]] = []
    stores, keys = {}, {}
    for split in ("train", "val"):
        parts = frozenset({"maps"}) | interp.store_parts(split)
        stores[split], keys[split] = activations_for(
            cache, model, mspec, dataset, split, device, cfg, parts, stats
        )
    train, val = stores["train"], stores["val"]
    for split, store in (("train", train), ("val", val)):
        # The chosen classes (dataset.classes), which keep their index among all num_classes.
        present = set(store.classes().tolist())
        missing = sorted(set(dataset.class_ids) - present)
        if missing:
            raise ConfigError(f"{dataset.name} {split} split has no samples of class(es) {missing[:10]}")
        strangers = sorted(present - set(dataset.class_ids))
        if strangers:
            raise ConfigError(
                f"{dataset.name} {split} split has samples of unchosen class(es) {strangers[:10]}"
            )
    return Workspace(cache, dataset, model, info, train, val, keys, device, extraction=stats)
