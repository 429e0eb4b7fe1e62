"""The chunks of an activation store in the cache: their plan, which are missing, building them under
their locks with one pass, and assembling the store from them.

Chunk boundaries depend only on the split size and the chunk size, and each chunk's bytes only on its
images, so a resumed or sharded build gives the same store as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from coreset_interp.cache import ArtifactCache
from coreset_interp.models.activations import STORE_FORMAT, chunk_key
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.extraction_pass import ChunkPass, PassStats

if TYPE_CHECKING:
    from coreset_interp.models.extraction import ExtractSettings


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


def format_ranges(indices: list[int]) -> str:
    """Args:
        indices: sorted chunk indices.

    Returns:
        Them as runs for an error line (``0-3, 7``).
    """
    out, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------- publish
def publish_parts(
    cache: ArtifactCache,
    items: list[tuple[str, str, dict[str, Any]]],
    write: Callable[[dict[str, Path]], None],
    dirs: dict[str, Path] | None = None,
) -> bool:
    """Build the missing ones of some artifacts with one call of ``write``, each under its own lock.

    The locks nest in the order of ``items`` (always the same order of parts, so two jobs cannot
    deadlock); ``write`` runs innermost with the temporary folder of every artifact still missing, and
    each is renamed into place by its own ``get_or_compute``.

    Args:
        cache: the artifact cache.
        items: (part, kind, spec) of each artifact, in the fixed order of parts.
        write: writes every part into its folder (part -> temporary folder).
        dirs: the folders gathered so far by the outer calls.

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
        ran.append(publish_parts(cache, rest, write, dirs))

    cache.get_or_compute(kind, spec, compute, record=False)
    return bool(ran) or publish_parts(cache, rest, write, dirs)


def missing_chunks(
    cache: ArtifactCache, key: str, chunks: list[tuple[int, int]], parts: list[str]
) -> dict[int, list[str]]:
    """Args:
        cache: the artifact cache.
        key: the store's key.
        chunks: (start, stop) of every chunk.
        parts: the parts to look for.

    Returns:
        Chunk index -> the parts it lacks (only chunks that lack some).
    """
    out: dict[int, list[str]] = {}
    for i, rows in enumerate(chunks):
        # A damaged chunk (truncated maps, say) counts as missing: it is rebuilt like one never written.
        lack = [p for p in parts if not cache.sound(*chunk_key(key, p, rows)[:2])]
        if lack:
            out[i] = lack
    return out


def build_chunks(
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
    """Build the given parts of some chunks with one pass, each chunk published under its locks (a chunk
    another job finished meanwhile is skipped).

    Args:
        cache: the artifact cache.
        key: the store's key.
        chunks: (start, stop) of every chunk of the split.
        todo: chunk index -> the parts to build.
        model: the adapter.
        data: the split's dataset.
        device: where the pass runs.
        settings: how the pass runs.
        precision: compute precision of the pass.
        dtype: storage type of the maps.
        logits: write the logits.
        desc: progress bar label.

    Returns:
        The pass's statistics.
    """
    order = sorted(todo)
    sub = [chunks[i] for i in order]
    energy = any("energy" in todo[i] for i in order)
    p = ChunkPass(model, data, sub, device, settings, precision, dtype, logits, energy, desc)

    def body(ps: ChunkPass) -> None:
        for k, i in enumerate(order):
            items = []
            for part in ("core", "maps", "energy"):
                if part in todo[i]:
                    kind, _, spec = chunk_key(key, part, chunks[i])
                    items.append((part, kind, spec))
            if not publish_parts(cache, items, lambda dirs, k=k: ps.chunk(k, dirs)):
                ps.skip(k)

    stats = p.run(body)
    stats.chunks_total = len(chunks)
    return stats


def assemble_store(
    cache: ArtifactCache, key: str, chunks: list[tuple[int, int]], split: str, dtype: str, precision: str
) -> Callable[[Path], None]:
    """Args:
        cache: the artifact cache holding the core chunks.
        key: the store's key.
        chunks: (start, stop) of every chunk.
        split: ``train`` or ``val``.
        dtype: storage type of the maps.
        precision: compute precision of the pass.

    Returns:
        The ``compute`` of the store's artifact: it copies g, labels, preds (and logits) of every core
        chunk into one array each and writes ``meta.json``.
    """

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
