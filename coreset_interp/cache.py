"""Content-addressed artifact cache shared by every job of every sweep.

An artifact (checkpoint, activations, coreset, interpreter fit) is a directory ``<root>/<kind>/<key>``
where ``key`` hashes exactly the specification that determines it. A directory is built under a temporary
name and renamed into place only when complete, so a job killed mid-write (even by SIGKILL) never leaves
anything a later job would read as valid; the next job finds no final directory and rebuilds it (and
removes the dead writer's temporary directory). A file lock per artifact makes concurrent jobs that need
the same missing artifact compute it once while the others wait; the lock is an ``flock`` on a file next
to the artifact, which the kernel releases when its holder dies, so a killed job never blocks a rerun.
The cache folder must be on a file system with working ``flock`` when jobs run on several hosts (local
disks, NFSv4, Lustre and GPFS have it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

KINDS = (
    "checkpoint",
    "activations",
    "unit_features",
    "coreset",
    "fit",
    "fit_full",
    "evaluation",
    # Reality checks (coreset_interp.reality), one per model x interpreter.
    "noise_floor",
    "cascade",
)


def spec_key(spec: dict[str, Any]) -> str:
    """Hash a JSON-serialisable specification.

    Args:
        spec: what determines the artifact (config values, upstream keys); key order does not matter.

    Returns:
        A 20-character hexadecimal key.
    """
    text = json.dumps(spec, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ArtifactRecord:
    """One use of a cached artifact by a job, for ``result.json``.

    Attributes:
        kind: artifact kind.
        key: artifact key.
        computed: True when this job built the artifact, False when it reused it.
        seconds: time spent in this use, excluding the time of artifacts requested while computing it
            (they have records of their own), so the seconds of a job's records can be summed.
            For a reused artifact this is the time spent waiting for another job's lock, if any.
    """

    kind: str
    key: str
    computed: bool
    seconds: float = 0.0


@dataclass
class ArtifactCache:
    """A directory of artifacts addressed by (kind, key).

    Args:
        root: the cache folder (created on demand).
        lock_timeout: seconds to wait for another job computing the same artifact (-1 = forever).
    """

    root: Path
    lock_timeout: float = -1
    records: list[ArtifactRecord] = field(default_factory=list)
    # Seconds of recorded get_or_compute calls nested in each open call (innermost last), so that an
    # artifact computed while computing another is not counted twice when records are summed.
    _nested: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, kind: str, key: str) -> Path:
        """Args:
            kind: artifact kind.
            key: artifact key.

        Returns:
            The final directory of the artifact (it exists only when the artifact is complete).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; choose one of {KINDS}")
        return self.root / kind / key

    def exists(self, kind: str, key: str) -> bool:
        """Returns:
        True when the artifact is complete on disk.
        """
        return self.path(kind, key).is_dir()

    @contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        lock_dir = self.root / kind
        lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_dir / f".{key}.lock"), timeout=self.lock_timeout):
            yield

    def get_or_compute(
        self, kind: str, spec: dict[str, Any], compute: Callable[[Path], None], *, record: bool = True
    ) -> tuple[Path, bool]:
        """Return the artifact for ``spec``, computing it first when it is missing.

        Args:
            kind: artifact kind (one of ``KINDS``).
            spec: the specification that determines the artifact; its hash is the key.
            compute: writes the artifact's files into the (temporary) directory it is given.
            record: add an :class:`ArtifactRecord` to ``self.records``.

        Returns:
            (final directory, True when this call computed it).
        """
        key = spec_key(spec)
        final = self.path(kind, key)
        computed = False
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            if not final.is_dir():
                with self._lock(kind, key):
                    # Another job may have finished it while this one waited for the lock.
                    if not final.is_dir():
                        self._build(final, key, spec, compute)
                        computed = True
        finally:
            elapsed = time.perf_counter() - start
            inner = self._nested.pop()
            if self._nested and record:
                self._nested[-1] += elapsed
        if record:
            self.records.append(ArtifactRecord(kind, key, computed, max(0.0, elapsed - inner)))
        return final, computed

    @staticmethod
    def _build(final: Path, key: str, spec: dict[str, Any], compute: Callable[[Path], None]) -> None:
        """Compute an artifact into a temporary directory and rename it into place (lock held)."""
        # Holding the lock means no live job is writing this key: leftovers are from killed writers.
        for stale in final.parent.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            compute(tmp)
            (tmp / "spec.json").write_text(json.dumps(spec, sort_keys=True, indent=1, default=str))
            _fsync_dir(tmp)
            os.replace(tmp, final)
            _fsync_path(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def get_or_compute_pickle(
        self, kind: str, spec: dict[str, Any], compute: Callable[[], Any], *, record: bool = True
    ) -> tuple[Any, bool]:
        """Like :meth:`get_or_compute` for a single picklable object.

        Args:
            kind: artifact kind.
            spec: the specification that determines the object.
            compute: returns the object.
            record: add an :class:`ArtifactRecord` to ``self.records``.

        Returns:
            (the object, True when this call computed it).
        """
        value: list[Any] = []

        def write(tmp: Path) -> None:
            obj = compute()
            value.append(obj)
            with open(tmp / "object.pkl", "wb") as fh:
                pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)

        path, computed = self.get_or_compute(kind, spec, write, record=record)
        if value:
            return value[0], computed
        with open(path / "object.pkl", "rb") as fh:
            return pickle.load(fh), computed


def _fsync_dir(path: Path) -> None:
    """Flush the files of ``path`` to disk so that a rename never publishes half-written data."""
    for child in path.rglob("*"):
        if child.is_file():
            _fsync_path(child)


def _fsync_path(path: Path) -> None:
    """Flush one file, or a directory's entries (so a rename survives a crash of the machine)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
