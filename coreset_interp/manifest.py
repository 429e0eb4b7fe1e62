"""Artifact manifests: every file's size and a cheap checksum, written at publish and checked on open.

The checksum hashes a file's size with its first and last MiB, so checking a multi-GB memory-mapped array
reads 2 MiB, yet catches the damage seen in practice: truncation (a full disk, a killed copy), a file
overwritten with other content, a missing file. Artifacts published before manifests existed have none and
open unverified.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_EDGE = 1 << 20


def file_digest(path: Path, size: int | None = None) -> str:
    """SHA-256 of a file's size, first MiB and last MiB (the whole file when it is at most 2 MiB).

    Args:
        path: the file.
        size: its size, when already known.

    Returns:
        Hexadecimal digest.
    """
    size = path.stat().st_size if size is None else size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE))
        if size > _EDGE:
            fh.seek(max(_EDGE, size - _EDGE))
            h.update(fh.read(_EDGE))
    return h.hexdigest()


def write_manifest(folder: Path) -> dict[str, Any]:
    """Describe every file of an artifact folder in ``manifest.json``.

    Args:
        folder: the artifact's (temporary) folder, complete.

    Returns:
        The manifest.
    """
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        size = path.stat().st_size
        files[path.relative_to(folder).as_posix()] = {"size": size, "digest": file_digest(path, size)}
    manifest = {"version": 1, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_manifest(folder: Path) -> str | None:
    """Check an artifact folder against its manifest.

    Args:
        folder: the artifact's folder.

    Returns:
        None when it matches (or has no manifest: published before manifests existed), else one phrase
        naming the first damaged file and what is wrong with it.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{path} is unreadable ({type(err).__name__})"
    for name, want in files.items():
        target = folder / name
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            return f"{target} is missing"
        if size != want["size"]:
            return f"{target} has {size} bytes, expected {want['size']} (truncated or overwritten)"
        if file_digest(target, size) != want["digest"]:
            return f"{target} does not match its checksum (overwritten or corrupted)"
    return None


def has_manifest(folder: Path) -> bool:
    """Returns:
    True when the artifact folder has a manifest (it can be verified).
    """
    return (folder / MANIFEST).is_file()
