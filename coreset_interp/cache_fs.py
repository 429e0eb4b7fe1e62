"""The artifact cache's file-system side: the cache folder's usability check and the atomic publish itself
(build in a temporary folder, flush, rename into place), with its helpers (setting a damaged artifact aside,
telling whether a temporary folder's writer still runs).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coreset_interp.locks import process_alive
from coreset_interp.manifest import MANIFEST, verify_manifest, write_manifest


class CacheDirError(ValueError):
    """The cache folder cannot be used (a file, read-only, not creatable)."""


def check_cache_dir(root: Path, create: bool = False) -> Path:
    """Fail early, in one line naming it, when the cache folder cannot hold artifacts. Without ``create``
    a folder that does not exist yet is not created (a job that then fails validation leaves nothing
    behind): its nearest existing parent must be a writable folder.

    Args:
        root: the cache folder.
        create: create the folder (with its parents) and probe a real write in it.

    Returns:
        The folder.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CacheDirError(f"cache_dir {root} is a file, not a folder; set cache_dir to a folder")
    if not root.exists() and not create:
        parent = next(p for p in root.parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise CacheDirError(
                f"cache_dir {root} cannot be created ({parent} is not a writable folder); "
                "set cache_dir to a writable folder"
            )
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise CacheDirError(
            f"cache_dir {root} is not writable ({err.strerror or err}); set cache_dir to a writable folder"
        ) from err
    return root


def publish(final: Path, key: str, spec: dict[str, Any], compute: Callable[[Path], None]) -> None:
    """Compute an artifact into a temporary directory and rename it into place (the caller holds its lock).

    Args:
        final: the artifact's final folder.
        key: its key.
        spec: its specification (written as ``spec.json``).
        compute: writes the artifact's files into the temporary folder it is given.
    """
    # Leftovers of killed writers on this host go; another host's may belong to a live job whose lock
    # was broken (a stalled heartbeat), so they are left to `coreset-interp-cache gc`.
    for stale in final.parent.glob(f".tmp-{key}-*"):
        if tmp_owner_alive(stale) is not True:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}-{os.getpid()}@{socket.gethostname()}"
    tmp.mkdir(parents=True)
    try:
        compute(tmp)
        (tmp / "spec.json").write_text(json.dumps(spec, sort_keys=True, indent=1, default=str))
        write_manifest(tmp)
        fsync_tree(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            # Another host built it too (its lock was broken, or flock is node-local): theirs counts.
            if not (final / MANIFEST).is_file() or verify_manifest(final) is not None:
                raise
        fsync_path(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def tmp_owner_alive(tmp: Path) -> bool | None:
    """Whether the writer of a temporary artifact folder (``.tmp-<key>-<id>-<pid>@<host>``) still runs.

    Args:
        tmp: the temporary folder.

    Returns:
        True/False for a writer on this host, True for another host's (cannot be told; assumed alive),
        None for a folder without an owner in its name.
    """
    owner = tmp.name.rsplit("-", 1)[-1]
    if "@" not in owner:
        return None
    pid, host = owner.split("@", 1)
    alive = process_alive({"host": host, "pid": pid})
    return True if alive is None else alive


def discard(final: Path, key: str) -> None:
    """Move a damaged artifact out of the way (lock held): one rename, then delete it."""
    aside = final.parent / f".damaged-{key}-{uuid.uuid4().hex[:8]}"
    os.replace(final, aside)
    shutil.rmtree(aside, ignore_errors=True)


def fsync_tree(path: Path) -> None:
    """Flush the files of ``path`` to disk so that a rename never publishes half-written data."""
    for child in path.rglob("*"):
        if child.is_file():
            fsync_path(child)


def fsync_path(path: Path) -> None:
    """Flush one file, or a directory's entries (so a rename survives a crash of the machine)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
