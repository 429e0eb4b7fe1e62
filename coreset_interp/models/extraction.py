"""One extraction pass per (model, split): chunked, resumable, shardable.

The split's rows are cut into chunks of ``extract.chunk_size`` images. Each part of a chunk (``core``:
g, labels, preds, val logits; ``maps``: last-conv maps; ``energy``: VEBI's unit energies) is its own
cache artifact, built in a temporary folder and renamed into place under the cache's lock, so a job
killed mid-extraction leaves only complete chunks and the next job resumes at the first missing one.
Every part a chunk still needs comes from one forward pass over its images; when all ``core`` parts
exist the store itself (``meta.json``, g, labels, preds, logits) is assembled from them. Chunk
boundaries depend only on the split size and the chunk size, and each chunk's bytes only on its images,
so a resumed or sharded build gives the same store as an uninterrupted one.

This module holds the entry points (:func:`ensure_store`, :func:`add_parts`, :func:`write_self_contained`)
and the pass's settings; the chunks' bookkeeping in the cache is
:mod:`~coreset_interp.models.extraction_chunks`, the forward pass with its writer thread
:mod:`~coreset_interp.models.extraction_pass`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.models.activations import (
    DTYPES,
    STORE_FORMAT,
    ActivationStore,
)
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.extraction_chunks import (
    assemble_store,
    build_chunks,
    format_ranges,
    missing_chunks,
    plan_chunks,
    shard_chunks,
)
from coreset_interp.models.extraction_pass import ChunkPass, PassStats
from coreset_interp.models.loader import compute_precision

__all__ = [
    "PARTS",
    "ExtractSettings",
    "IncompleteStoreError",
    "PassStats",
    "add_parts",
    "ensure_store",
    "plan_chunks",
    "shard_chunks",
    "store_spec",
    "write_self_contained",
]

PARTS = ("maps", "energy")


class IncompleteStoreError(ValueError):
    """An activation store has missing chunks and ``extract.require_complete`` forbids building them."""


@dataclass(frozen=True)
class ExtractSettings:
    """How a pass runs (none of these change the numbers, except ``autocast`` on CUDA, which is part
    of the store's key).

    Attributes:
        chunk_size: images per chunk of a new store.
        batch_size: images per forward pass.
        num_workers: DataLoader workers (``auto`` or an integer).
        autocast: bf16 (fp16 where unsupported) autocast on CUDA.
        channels_last: channels_last memory format on CUDA.
        progress: show a progress bar.
        shard: this task's shard (0-based).
        num_shards: shards the chunks are divided into (a SLURM array's size).
        require_complete: fail with one line instead of building missing chunks.
    """

    chunk_size: int = 8192
    batch_size: int = 128
    num_workers: Any = 0
    autocast: bool = True
    channels_last: bool = True
    progress: bool = True
    shard: int = 0
    num_shards: int = 1
    require_complete: bool = False

    def __post_init__(self) -> None:
        if int(self.chunk_size) < 1:
            raise ValueError(f"extract.chunk_size must be >= 1, got {self.chunk_size}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if int(self.num_shards) < 1 or not 0 <= int(self.shard) < int(self.num_shards):
            raise ValueError(
                f"extract.shard must be in [0, extract.num_shards), got shard={self.shard} "
                f"num_shards={self.num_shards}"
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ExtractSettings:
        """Args:
            cfg: the job config (``batch_size``, ``num_workers``, ``progress``, ``extract``).

        Returns:
            The settings.
        """
        # Indexed, not .get(key, default): conf/config.yaml is the one place these defaults live.
        ex = cfg["extract"]
        return cls(
            chunk_size=int(ex["chunk_size"]),
            batch_size=int(cfg["batch_size"]),
            num_workers=cfg["num_workers"],
            autocast=bool(ex["autocast"]),
            channels_last=bool(ex["channels_last"]),
            progress=bool(cfg["progress"]),
            shard=int(ex["shard"]),
            num_shards=int(ex["num_shards"]),
            require_complete=bool(ex["require_complete"]),
        )


def store_spec(
    mspec: dict[str, Any], fingerprint: dict[str, Any], split: str, dtype: str, precision: str
) -> dict[str, Any]:
    """The cache specification of one split's store.

    Args:
        mspec: the model's specification.
        fingerprint: the dataset's fingerprint.
        split: ``train`` or ``val``.
        dtype: storage type of the maps.
        precision: compute precision of the pass (:func:`~coreset_interp.models.loader.compute_precision`).

    Returns:
        The spec (its hash is the store's key and the ``model_key`` of everything fitted on it).
    """
    if dtype not in DTYPES:
        raise ValueError(f"activation_dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return {
        "model": mspec,
        "dataset": fingerprint,
        "split": split,
        "dtype": dtype,
        "layer": "last_conv",
        "format": STORE_FORMAT,
        "compute": precision,
    }


# ---------------------------------------------------------------------------------------------- entry points
def ensure_store(
    cache: ArtifactCache,
    model: ModelAdapter,
    mspec: dict[str, Any],
    dataset: Any,
    split: str,
    device: torch.device,
    dtype: str,
    parts: set[str] | frozenset[str],
    settings: ExtractSettings,
    stats: list[dict[str, Any]] | None = None,
    tag: str = "model",
) -> tuple[ActivationStore | None, str]:
    """The store of one split with the given parts, building whatever is missing in one pass (this
    shard's chunks only when ``settings.num_shards > 1``).

    Args:
        cache: the artifact cache.
        model: the adapter.
        mspec: the model's specification.
        dataset: the dataset (``split``, ``fingerprint``).
        split: ``train`` or ``val``.
        device: where the pass runs.
        dtype: storage type of the maps.
        parts: what the caller reads besides g/labels/preds: ``maps``, ``energy``.
        settings: how the pass runs.
        stats: receives one dict per pass that ran (``model``, ``split``, ``parts``, images/s ...).
        tag: the model's role in ``stats`` (``model``, ``null``, ``source``).

    Returns:
        (the store, or None when other shards still have chunks to build; the store's key).
    """
    bad = set(parts) - set(PARTS)
    if bad:
        raise ValueError(f"unknown store parts {sorted(bad)}; choose from {list(PARTS)}")
    precision = compute_precision(device, settings.autocast)
    spec = store_spec(mspec, dataset.fingerprint(), split, dtype, precision)
    key = spec_key(spec)
    final = cache.path("activations", key)
    data: Dataset | None = None  # built at most once (an image folder's split lists its files)
    if final.is_dir():
        chunks = [(int(s), int(e)) for s, e in json.loads((final / "meta.json").read_text())["chunks"]]
        wanted = [p for p in ("maps", "energy") if p in parts]
    else:
        data = dataset.split(split)
        n = len(data)
        if n == 0:
            raise ValueError(f"cannot extract activations of an empty {split} split")
        chunks = plan_chunks(n, int(settings.chunk_size))
        wanted = [p for p in ("core", "maps", "energy") if p == "core" or p in parts]
    missing = missing_chunks(cache, key, chunks, wanted)
    if missing and settings.require_complete:
        lack = sorted({p for ps in missing.values() for p in ps})
        raise IncompleteStoreError(
            f"activation store {key} ({split}) is incomplete and extract.require_complete=true: "
            f"missing chunks {format_ranges(sorted(missing))} of {len(chunks)} ({', '.join(lack)}); "
            "build them with coreset-interp-extract"
        )
    mine = shard_chunks(len(chunks), int(settings.shard), int(settings.num_shards))
    todo = {i: missing[i] for i in mine if i in missing}
    if todo:
        data = dataset.split(split) if data is None else data
        pstats = build_chunks(
            cache,
            key,
            chunks,
            todo,
            model,
            data,
            device,
            settings,
            precision,
            dtype,
            logits=split != "train",
            desc=f"activations {split}",
        )
        if stats is not None:
            parts_built = sorted({p for ps in todo.values() for p in ps})
            stats.append({"model": tag, "split": split, "parts": parts_built, **pstats.as_dict()})
    if not final.is_dir() and missing_chunks(cache, key, chunks, ["core"]):
        return None, key
    # Assembles the store from its core chunks, or records the use of the existing one.
    cache.get_or_compute("activations", spec, assemble_store(cache, key, chunks, split, dtype, precision))
    store = ActivationStore.open(final)
    if any(store.missing(p) for p in wanted if p != "core"):
        return None, key
    return store, key


def add_parts(
    cache: ArtifactCache,
    store: ActivationStore,
    model: ModelAdapter,
    data: Dataset,
    device: torch.device,
    parts: set[str] | frozenset[str],
    settings: ExtractSettings,
    stats: list[dict[str, Any]] | None = None,
) -> ActivationStore:
    """Add parts (e.g. VEBI's energies) to a finished store with one more pass over its chunks.

    Args:
        cache: the artifact cache holding the store.
        store: the store.
        model: the model that built it.
        data: the split's dataset.
        device: where the pass runs.
        parts: ``maps`` and/or ``energy``.
        settings: how the pass runs (the chunks and compute precision are the store's).
        stats: receives the pass's statistics.

    Returns:
        The store reopened with the new parts.
    """
    todo: dict[int, list[str]] = {}
    for p in ("maps", "energy"):
        if p in parts:
            for i in store.missing(p):
                todo.setdefault(i, []).append(p)
    if todo:
        if settings.require_complete:
            raise IncompleteStoreError(
                f"activation store {store.key} lacks {sorted(parts)} in chunks {format_ranges(sorted(todo))} "
                "and extract.require_complete=true; build them with coreset-interp-extract"
            )
        pstats = build_chunks(
            cache,
            store.key,
            store.chunks,
            todo,
            model,
            data,
            device,
            settings,
            str(store.meta.get("compute", "float32")),
            str(store.meta["dtype"]),
            logits=False,
            desc=f"{'+'.join(sorted(parts))} {store.meta.get('split', '')}",
        )
        if stats is not None:
            stats.append(
                {
                    "model": "model",
                    "split": store.meta.get("split"),
                    "parts": sorted(parts),
                    **pstats.as_dict(),
                }
            )
    return ActivationStore.open(store.path)


def write_self_contained(
    model: ModelAdapter,
    data: Dataset,
    folder: Path,
    device: torch.device,
    dtype: str,
    settings: ExtractSettings,
    energies: bool = False,
    logits: bool = True,
    desc: str = "activations",
) -> dict[str, Any]:
    """Write every part of a split into one folder as a single chunk (tests and tools).

    Args:
        model: the adapter.
        data: the split.
        folder: an existing, empty folder.
        device: where to run.
        dtype: storage type of the maps.
        settings: how the pass runs.
        energies: also write VEBI's unit energies.
        logits: write the logits.
        desc: progress bar label.

    Returns:
        The store's metadata.
    """
    if dtype not in DTYPES:
        raise ValueError(f"activation dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    n = len(data)
    if n == 0:
        raise ValueError("cannot extract activations of an empty split")
    precision = compute_precision(device, settings.autocast)
    parts = ["core", "maps"] + (["energy"] if energies else [])
    p = ChunkPass(model, data, [(0, n)], device, settings, precision, dtype, logits, energies, desc)
    p.run(lambda ps: ps.chunk(0, dict.fromkeys(parts, folder)))
    info = json.loads((folder / "chunk.json").read_text())
    meta = {
        "n": n,
        "map_shape": info["map_shape"],
        "dtype": dtype,
        "chunks": [[0, n]],
        "self_contained": True,
        "format": STORE_FORMAT,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta
