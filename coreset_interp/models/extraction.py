"""One extraction pass per (model, split): chunked, resumable, shardable.

The split's rows are cut into chunks of ``extract.chunk_size`` images. Each part of a chunk (``core``:
g, labels, preds, val logits; ``maps``: last-conv maps; ``energy``: VEBI's unit energies) is its own
cache artifact, built in a temporary folder and renamed into place under the cache's lock, so a job
killed mid-extraction leaves only complete chunks and the next job resumes at the first missing one.
Every part a chunk still needs comes from one forward pass over its images; when all ``core`` parts
exist the store itself (``meta.json``, g, labels, preds, logits) is assembled from them. Chunk
boundaries depend only on the split size and the chunk size, and each chunk's bytes only on its images,
so a resumed or sharded build gives the same store as an uninterrupted one.

Throughput: DataLoader workers prefetch across chunk boundaries, a writer thread copies each batch's
outputs into the chunk files while the next batch runs, and on CUDA batches come from pinned memory with
asynchronous copies, under autocast and channels_last.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.interpreters.vebi_units import ReluCalls, probe_layers, unit_energy
from coreset_interp.models.activations import (
    DTYPES,
    STORE_FORMAT,
    ActivationStore,
    chunk_key,
)
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.loader import (
    compute_precision,
    make_loader,
    pass_mode,
    resolve_num_workers,
    to_device,
)

#: Parts a caller may ask for (``core`` is implied until the store exists).
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
        ex = dict(cfg.get("extract") or {})
        return cls(
            chunk_size=int(ex.get("chunk_size", 8192)),
            batch_size=int(cfg.get("batch_size", 128)),
            num_workers=cfg.get("num_workers", 0),
            autocast=bool(ex.get("autocast", True)),
            channels_last=bool(ex.get("channels_last", True)),
            progress=bool(cfg.get("progress", True)),
            shard=int(ex.get("shard", 0)),
            num_shards=int(ex.get("num_shards", 1)),
            require_complete=bool(ex.get("require_complete", False)),
        )


def plan_chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """Args:
        n: rows of the split.
        chunk_size: rows per chunk.

    Returns:
        (start, stop) of every chunk; the last may be shorter.
    """
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def shard_chunks(n_chunks: int, shard: int, num_shards: int) -> range:
    """Args:
        n_chunks: chunks of the split.
        shard: this shard.
        num_shards: shards in all.

    Returns:
        The contiguous block of chunk indices this shard builds (blocks keep each task's image reads
        sequential; sizes differ by at most one).
    """
    return range(shard * n_chunks // num_shards, (shard + 1) * n_chunks // num_shards)


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


def _ranges(indices: list[int]) -> str:
    out, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------- writer
class _Writer:
    """A thread that runs the copies of batch outputs into chunk files while the next batch computes."""

    def __init__(self, depth: int = 3) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="activation-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                self._error = err
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def wait(self) -> None:
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


# ---------------------------------------------------------------------------------------------- the pass
@dataclass
class PassStats:
    """What one pass did (a row of result.json's ``extraction``)."""

    images: int = 0
    seconds: float = 0.0
    chunks_built: int = 0
    chunks_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images / self.seconds, 2) if self.seconds > 0 else None,
            "chunks_built": self.chunks_built,
            "chunks_total": self.chunks_total,
        }


class _Pass:
    """A forward pass over the batches of some chunks, in order, writing each chunk's parts into the
    folders it is given."""

    def __init__(
        self,
        model: ModelAdapter,
        data: Dataset,
        chunks: list[tuple[int, int]],
        device: torch.device,
        settings: ExtractSettings,
        precision: str,
        dtype: str,
        logits: bool,
        energy: bool,
        desc: str,
    ) -> None:
        self.model, self.device, self.dtype, self.logits = model, device, dtype, logits
        self.precision, self.channels_last = precision, settings.channels_last
        bs = int(settings.batch_size)
        # ranges, not lists: the batch plan of a 1.28M-image split stays a few hundred kB
        self.batches = [[range(b, min(b + bs, e)) for b in range(s, e, bs)] for s, e in chunks]
        workers = resolve_num_workers(settings.num_workers, data)
        loader = make_loader(data, [b for chunk in self.batches for b in chunk], workers, device)
        self._it: Iterator[Any] = iter(loader)
        self.energy = energy
        self.layers: list[Any] | None = None
        self._parts: list[torch.Tensor] = []
        self._capture = False
        self.bar = tqdm(
            total=sum(e - s for s, e in chunks), desc=desc, disable=not settings.progress, leave=False
        )
        self.stats = PassStats()

    def _record(self, index: int, a: torch.Tensor) -> None:
        if self._capture:
            # The output of an in-place ReLU is modified by later operations: reduce it at once.
            self._parts.append(unit_energy(a))

    def run(self, body: Callable[[_Pass], None]) -> PassStats:
        """Args:
            body: called once with this pass; it calls :meth:`chunk` or :meth:`skip` for every chunk in
                order.

        Returns:
            The pass's statistics.
        """
        start = time.perf_counter()
        self.writer = _Writer()
        try:
            with pass_mode(self.model, self.device, self.precision, self.channels_last):
                if self.energy:
                    with ReluCalls(self.model, self._record) as calls:
                        self.calls = calls
                        body(self)
                else:
                    body(self)
            self.writer.wait()
        finally:
            self.writer.close()
            self.bar.close()
        self.stats.seconds = time.perf_counter() - start
        return self.stats

    def skip(self, k: int) -> None:
        """Consume chunk ``k``'s batches without computing (another job built it meanwhile)."""
        for _ in self.batches[k]:
            next(self._it)

    def chunk(self, k: int, dirs: dict[str, Path]) -> None:
        """Compute chunk ``k`` and write the parts named in ``dirs`` (part -> folder) into their folders."""
        rows = sum(len(b) for b in self.batches[k])
        files: dict[str, np.ndarray] = {}
        start = 0
        want_energy = "energy" in dirs
        for _ in self.batches[k]:
            x, y = next(self._it)
            x = to_device(x, self.device, self.channels_last)
            if want_energy and self.layers is None:
                self._capture = False
                self.layers = probe_layers(self.model, x[:1])
            self._parts.clear()
            self._capture = want_energy
            if want_energy:
                self.calls.reset()
            a = self.model.features(x)
            logits = self.model.head(a)
            out: dict[str, torch.Tensor] = {}
            if want_energy:
                self.calls.check(len(self.layers or []))
                out["E"] = torch.cat(self._parts, dim=1)
                self._parts = []
            self._capture = False
            if "core" in dirs:
                out["g"] = a.float().mean(dim=(2, 3))
                out["preds"] = logits.argmax(1)
                out["labels"] = torch.as_tensor(y)
                if self.logits:
                    out["logits"] = logits.float()
            if "maps" in dirs:
                out["maps"] = a.to(getattr(torch, self.dtype))
            if not files:
                files = self._open(dirs, rows, out, tuple(a.shape[1:]), int(logits.shape[1]))
            stop = start + len(x)
            self.writer.submit(_copy_job(files, out, start, stop))
            start = stop
            self.stats.images += len(x)
            self.bar.update(len(x))
        self.writer.wait()
        for arr in files.values():
            arr.flush()  # type: ignore[attr-defined]
        del files
        self.stats.chunks_built += 1

    def _open(
        self,
        dirs: dict[str, Path],
        rows: int,
        out: dict[str, torch.Tensor],
        map_shape: tuple[int, ...],
        classes: int,
    ) -> dict[str, np.ndarray]:
        where = {
            "g": "core",
            "preds": "core",
            "labels": "core",
            "logits": "core",
            "maps": "maps",
            "E": "energy",
        }
        np_types = {"labels": np.int64, "preds": np.int64, "maps": DTYPES[self.dtype]}
        files = {}
        for name, t in out.items():
            files[name] = np.lib.format.open_memmap(
                dirs[where[name]] / f"{name}.npy",
                mode="w+",
                dtype=np_types.get(name, np.float32),
                shape=(rows, *t.shape[1:]),
            )
        if "core" in dirs:
            info = {"map_shape": list(map_shape), "classes": classes, "logits": self.logits}
            (dirs["core"] / "chunk.json").write_text(json.dumps(info))
        if "energy" in dirs:
            layers = [layer.__dict__ for layer in self.layers or []]
            units = int(out["E"].shape[1])
            (dirs["energy"] / "layers.json").write_text(
                json.dumps({"units": units, "layers": layers}, indent=1)
            )
        return files


def _copy_job(
    files: dict[str, np.ndarray], out: dict[str, torch.Tensor], start: int, stop: int
) -> Callable[[], None]:
    def job() -> None:
        for name, t in out.items():
            files[name][start:stop] = t.detach().cpu().numpy()

    return job


# ---------------------------------------------------------------------------------------------- publish
def _publish(
    cache: ArtifactCache,
    items: list[tuple[str, str, dict[str, Any]]],
    write: Callable[[dict[str, Path]], None],
    dirs: dict[str, Path] | None = None,
) -> bool:
    """Build the missing ones of some artifacts with one call of ``write``, each under its own lock.

    The locks nest in the order of ``items`` (always the same order of parts, so two jobs cannot
    deadlock); ``write`` runs innermost with the temporary folder of every artifact still missing, and
    each is renamed into place by its own ``get_or_compute``.

    Returns:
        True when ``write`` ran.
    """
    dirs = {} if dirs is None else dirs
    if not items:
        if not dirs:
            return False
        write(dict(dirs))
        return True
    (part, kind, spec), rest = items[0], items[1:]
    ran: list[bool] = []

    def compute(tmp: Path) -> None:
        dirs[part] = tmp
        ran.append(_publish(cache, rest, write, dirs))

    cache.get_or_compute(kind, spec, compute, record=False)
    return bool(ran) or _publish(cache, rest, write, dirs)


def _missing(
    cache: ArtifactCache, key: str, chunks: list[tuple[int, int]], parts: list[str]
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i, rows in enumerate(chunks):
        # A damaged chunk (truncated maps, say) counts as missing: it is rebuilt like one never written.
        lack = [p for p in parts if not cache.sound(*chunk_key(key, p, rows)[:2])]
        if lack:
            out[i] = lack
    return out


def _build_chunks(
    cache: ArtifactCache,
    key: str,
    chunks: list[tuple[int, int]],
    todo: dict[int, list[str]],
    model: ModelAdapter,
    data: Dataset,
    device: torch.device,
    settings: ExtractSettings,
    precision: str,
    dtype: str,
    logits: bool,
    desc: str,
) -> PassStats:
    order = sorted(todo)
    sub = [chunks[i] for i in order]
    energy = any("energy" in todo[i] for i in order)
    p = _Pass(model, data, sub, device, settings, precision, dtype, logits, energy, desc)

    def body(ps: _Pass) -> None:
        for k, i in enumerate(order):
            items = []
            for part in ("core", "maps", "energy"):
                if part in todo[i]:
                    kind, _, spec = chunk_key(key, part, chunks[i])
                    items.append((part, kind, spec))
            if not _publish(cache, items, lambda dirs, k=k: ps.chunk(k, dirs)):
                ps.skip(k)

    stats = p.run(body)
    stats.chunks_total = len(chunks)
    return stats


def _assemble(
    cache: ArtifactCache, key: str, chunks: list[tuple[int, int]], split: str, dtype: str, precision: str
) -> Callable[[Path], None]:
    def compute(tmp: Path) -> None:
        dirs = [cache.path(*chunk_key(key, "core", rows)[:2]) for rows in chunks]
        info = json.loads((dirs[0] / "chunk.json").read_text())
        n = chunks[-1][1]
        first = np.load(dirs[0] / "g.npy", mmap_mode="r")
        arrays = {
            "g": np.lib.format.open_memmap(
                tmp / "g.npy", mode="w+", dtype=np.float32, shape=(n, first.shape[1])
            ),
            "labels": np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.int64, shape=(n,)),
            "preds": np.lib.format.open_memmap(tmp / "preds.npy", mode="w+", dtype=np.int64, shape=(n,)),
        }
        if info["logits"]:
            arrays["logits"] = np.lib.format.open_memmap(
                tmp / "logits.npy", mode="w+", dtype=np.float32, shape=(n, info["classes"])
            )
        for (s, e), d in zip(chunks, dirs, strict=True):
            for name, arr in arrays.items():
                arr[s:e] = np.load(d / f"{name}.npy", mmap_mode="r")
        for arr in arrays.values():
            arr.flush()
        meta = {
            "format": STORE_FORMAT,
            "split": split,
            "n": n,
            "map_shape": info["map_shape"],
            "dtype": dtype,
            "compute": precision,
            "chunks": [list(c) for c in chunks],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    return compute


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
    missing = _missing(cache, key, chunks, wanted)
    if missing and settings.require_complete:
        lack = sorted({p for ps in missing.values() for p in ps})
        raise IncompleteStoreError(
            f"activation store {key} ({split}) is incomplete and extract.require_complete=true: "
            f"missing chunks {_ranges(sorted(missing))} of {len(chunks)} ({', '.join(lack)}); "
            "build them with coreset-interp-extract"
        )
    mine = shard_chunks(len(chunks), int(settings.shard), int(settings.num_shards))
    todo = {i: missing[i] for i in mine if i in missing}
    if todo:
        data = dataset.split(split) if data is None else data
        pstats = _build_chunks(
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
    if not final.is_dir() and _missing(cache, key, chunks, ["core"]):
        return None, key
    # Assembles the store from its core chunks, or records the use of the existing one.
    cache.get_or_compute("activations", spec, _assemble(cache, key, chunks, split, dtype, precision))
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
                f"activation store {store.key} lacks {sorted(parts)} in chunks {_ranges(sorted(todo))} "
                "and extract.require_complete=true; build them with coreset-interp-extract"
            )
        pstats = _build_chunks(
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
    p = _Pass(model, data, [(0, n)], device, settings, precision, dtype, logits, energies, desc)
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
