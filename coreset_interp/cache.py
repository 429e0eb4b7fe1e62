"""Content-addressed artifact cache shared by every job of every sweep.

An artifact (checkpoint, activations, coreset, interpreter fit) is a directory ``<root>/<kind>/<key>``
where ``key`` hashes exactly the specification that determines it. A directory is built under a temporary
name and renamed into place only when complete, so a job killed mid-write (even by SIGKILL) never leaves
anything a later job would read as valid; the next job finds no final directory and rebuilds it (and
removes the dead writer's temporary directory). A file lock per artifact makes concurrent jobs that need
the same missing artifact compute it once while the others wait (:mod:`coreset_interp.locks`: an ``flock``
where it works plus a lease file with a heartbeat, so a lock of a dead job, local or remote, is broken and a
wait ends after ``cache.lock_timeout`` naming the holder). Finding the artifact complete at publish time
(another host built it too) counts as success. Every artifact carries a manifest
(:mod:`coreset_interp.manifest`) that is checked on open: a damaged artifact is rebuilt under its lock with
one warning naming it, or names itself in an error (``cache.on_damaged``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coreset_interp.cache_fs import (
    CacheDirError,
    check_cache_dir,
    discard,
    publish,
    tmp_owner_alive,
)
from coreset_interp.locks import (
    ArtifactLock,
    LockSettings,
    LockTimeoutError,
    parse_duration,
    probe_flock,
)
from coreset_interp.manifest import verify_manifest

__all__ = [
    "KINDS",
    "ArtifactCache",
    "ArtifactRecord",
    "CacheDirError",
    "DamagedArtifactError",
    "DamagedArtifactWarning",
    "LockTimeoutError",
    "check_cache_dir",
    "spec_key",
    "tmp_owner_alive",
]

ON_DAMAGED = ("rebuild", "error")


class DamagedArtifactError(RuntimeError):
    """A cached artifact fails its manifest or cannot be read, and ``cache.on_damaged=error``."""


class DamagedArtifactWarning(UserWarning):
    """A cached artifact was damaged and is being rebuilt."""


KINDS = (
    "checkpoint",
    "activations",
    "unit_features",
    "coreset",
    "fit",
    "fit_full",
    "evaluation",
    # ICE's val scores per (NMF, val class), shared by its maps and its evaluation.
    "transform",
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
        records: uses recorded so far.
        stale_after: seconds after which a lock holder's silent heartbeat counts as dead.
        heartbeat: seconds between a lock holder's heartbeats.
        on_damaged: ``rebuild`` (warn and rebuild under the lock) or ``error``.
        locking: ``auto`` (probe whether flock works), ``flock`` or ``lease`` (lease files only).
    """

    root: Path
    lock_timeout: float = -1
    records: list[ArtifactRecord] = field(default_factory=list)
    stale_after: float = 600.0
    heartbeat: float = 30.0
    on_damaged: str = "rebuild"
    locking: str = "auto"
    #: Folders verified by this instance (verification reads 2 MiB per file: once per job is enough).
    _verified: set[Path] = field(default_factory=set, init=False, repr=False)
    # Seconds of recorded get_or_compute calls nested in each open call (innermost last), so that an
    # artifact computed while computing another is not counted twice when records are summed.
    _nested: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.on_damaged not in ON_DAMAGED:
            raise ValueError(f"cache.on_damaged must be one of {ON_DAMAGED}, got {self.on_damaged!r}")
        if self.locking not in ("auto", "flock", "lease"):
            raise ValueError(f"cache locking must be auto, flock or lease, got {self.locking!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ArtifactCache:
        """The cache of a job config: ``cache_dir`` and the ``cache`` block.

        Args:
            cfg: the resolved job config.

        Returns:
            The cache (not yet checked: see :meth:`check`).
        """
        # Indexed, not .get(key, default): conf/config.yaml is the one place these defaults live.
        block = cfg["cache"]
        return cls(
            Path(cfg["cache_dir"]),
            lock_timeout=parse_duration(block["lock_timeout"], "cache.lock_timeout"),
            stale_after=parse_duration(block["stale_after"], "cache.stale_after"),
            heartbeat=parse_duration(block["heartbeat"], "cache.heartbeat"),
            on_damaged=str(block["on_damaged"]),
        )

    def check(self) -> str:
        """Check the cache folder (one-line :class:`CacheDirError` when unusable) and probe its locking.

        Returns:
            One line saying which lock this file system gets.
        """
        check_cache_dir(self.root, create=True)
        works, line = probe_flock(self.root)
        if self.locking == "auto":
            self.locking = "flock" if works else "lease"
        return line

    def _settings(self) -> LockSettings:
        return LockSettings(timeout=self.lock_timeout, stale_after=self.stale_after, heartbeat=self.heartbeat)

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

    def spec(self, kind: str, key: str) -> dict[str, Any] | None:
        """The spec an artifact was published with, for tools that describe artifacts (the report).

        Args:
            kind: artifact kind.
            key: artifact key.

        Returns:
            Its ``spec.json``, or None when the artifact is absent or the file unreadable.
        """
        try:
            spec = json.loads((self.path(kind, key) / "spec.json").read_text())
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def sound(self, kind: str, key: str) -> bool:
        """Whether an artifact is published and passes its manifest, for callers that read its files
        without :meth:`get_or_compute` (the chunks of an activation store). A damaged one is set aside
        under its lock with one warning naming the file, so that its builder rebuilds it.

        Args:
            kind: artifact kind.
            key: artifact key.

        Returns:
            True when it can be read as it is.
        """
        final = self.path(kind, key)
        warned: list[str] = []
        if not final.is_dir() or self._usable(final, None, warned):
            return final.is_dir()
        with self._lock(kind, key):
            if final.exists() and not self._usable(final, None, warned):
                discard(final, key)
        return False

    def lock(self, kind: str, key: str) -> ArtifactLock:
        """The lock of one artifact (for tools that must not touch an artifact a job is building).

        Args:
            kind: artifact kind.
            key: artifact key.

        Returns:
            An unacquired lock (use it as a context manager).
        """
        lock_dir = self.root / kind
        lock_dir.mkdir(parents=True, exist_ok=True)
        if self.locking == "auto":
            self.locking = "flock" if probe_flock(lock_dir)[0] else "lease"
        return ArtifactLock(lock_dir / f".{key}", self._settings(), self.locking == "flock", f"{kind}/{key}")

    @contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        with self.lock(kind, key):
            yield

    def damage(self, final: Path, validate: Callable[[Path], None] | None = None) -> str | None:
        """What is wrong with a published artifact folder, if anything.

        Args:
            final: the artifact's folder.
            validate: an extra reader check (raises when the content cannot be read).

        Returns:
            None when it is sound, else one phrase naming the damaged file.
        """
        if final in self._verified:
            return None
        problem = verify_manifest(final)
        if problem is None and validate is not None:
            try:
                validate(final)
            except Exception as err:  # noqa: BLE001 - any reader error means the content is damaged
                problem = f"{final} cannot be read ({type(err).__name__}: {str(err)[:200]})"
        if problem is None:
            self._verified.add(final)
        return problem

    def _usable(self, final: Path, validate: Callable[[Path], None] | None, warned: list[str]) -> bool:
        if not final.is_dir():
            return False
        problem = self.damage(final, validate)
        if problem is None:
            return True
        if self.on_damaged == "error":
            raise DamagedArtifactError(
                f"damaged artifact {final}: {problem}; remove it (rm -rf {final}) or set "
                "cache.on_damaged=rebuild to rebuild it"
            )
        if not warned:
            warnings.warn(
                f"damaged artifact {final}: {problem}; rebuilding it", DamagedArtifactWarning, stacklevel=3
            )
            warned.append(problem)
        return False

    def get_or_compute(
        self,
        kind: str,
        spec: dict[str, Any],
        compute: Callable[[Path], None],
        *,
        record: bool = True,
        validate: Callable[[Path], None] | None = None,
    ) -> tuple[Path, bool]:
        """Return the artifact for ``spec``, computing it first when it is missing or damaged.

        Args:
            kind: artifact kind (one of ``KINDS``).
            spec: the specification that determines the artifact; its hash is the key.
            compute: writes the artifact's files into the (temporary) directory it is given.
            record: add an :class:`ArtifactRecord` to ``self.records``.
            validate: reads a published artifact and raises when it is unreadable (beyond the manifest).

        Returns:
            (final directory, True when this call computed it).
        """
        key = spec_key(spec)
        final = self.path(kind, key)
        computed = False
        warned: list[str] = []
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            if not self._usable(final, validate, warned):
                with self._lock(kind, key):
                    # Another job may have finished (or repaired) it while this one waited for the lock.
                    if not self._usable(final, validate, warned):
                        if final.exists():
                            discard(final, key)
                        publish(final, key, spec, compute)
                        self._verified.add(final)
                        computed = True
        finally:
            elapsed = time.perf_counter() - start
            inner = self._nested.pop()
            if self._nested and record:
                self._nested[-1] += elapsed
        if record:
            self.records.append(ArtifactRecord(kind, key, computed, max(0.0, elapsed - inner)))
        return final, computed

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

        def load(folder: Path) -> None:
            # Also catches a garbage pickle in an artifact from before manifests.
            with open(folder / "object.pkl", "rb") as fh:
                value[:] = [pickle.load(fh)]

        path, computed = self.get_or_compute(kind, spec, write, record=record, validate=load)
        if value:
            return value[0], computed
        load(path)
        return value[0], computed
