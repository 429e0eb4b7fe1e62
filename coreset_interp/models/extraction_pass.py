"""The forward pass of an extraction: batches of some chunks in order, each chunk's parts written into the
folders it is given.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from coreset_interp.interpreters.vebi_units import ReluCalls, probe_layers, unit_energy
from coreset_interp.models.activations import DTYPES
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.models.loader import make_loader, pass_mode, resolve_num_workers, to_device

if TYPE_CHECKING:
    from coreset_interp.models.extraction import ExtractSettings


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


class ChunkPass:
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

    def run(self, body: Callable[[ChunkPass], None]) -> PassStats:
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
