"""Image files on disk: one scan with a stat per file, the listing's digest (the cache identity of a
folder), cheap checks for broken files, and a torch Dataset that names the file it cannot decode."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

#: torchvision's ImageFolder extensions (lower case).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: ``dataset.on_bad_image`` values.
BAD_IMAGE_POLICIES = ("error", "check", "skip")


class BadImageError(ValueError):
    """An image file that cannot be decoded (its message names the file)."""


class FileEntry(NamedTuple):
    """One image file: path relative to the scanned folder, size and mtime in ns (a tuple: a million
    of them are built per ImageNet scan)."""

    rel: str
    size: int
    mtime_ns: int


def is_image(name: str) -> bool:
    """Args:
        name: a file name.

    Returns:
        Whether its extension is an image extension torchvision's ImageFolder accepts.
    """
    return name.lower().endswith(IMG_EXTENSIONS)


def scan_tree(folder: Path) -> tuple[list[str], list[FileEntry]]:
    """One walk of ``folder`` with ``os.scandir`` (following links, as ImageFolder does) and one stat
    per image file.

    Args:
        folder: the folder.

    Returns:
        (names of the immediate sub-folders, sorted; image files anywhere below, sorted by relative path).
    """
    subdirs: list[str] = []
    files: list[FileEntry] = []
    stack: list[tuple[str, str]] = [(str(folder), "")]
    while stack:
        path, prefix = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=True):
                    if not prefix:
                        subdirs.append(entry.name)
                    stack.append((entry.path, rel + "/"))
                elif entry.name.lower().endswith(IMG_EXTENSIONS):
                    st = entry.stat(follow_symlinks=True)
                    files.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
    subdirs.sort()
    files.sort(key=lambda f: f.rel)
    return subdirs, files


def listing_digest(entries: Iterable[FileEntry], labels: Iterable[int]) -> str:
    """The identity of a list of labelled files: any change of a file's relative path, size or mtime,
    or of its label, changes it.

    Args:
        entries: the files in the split's order.
        labels: their labels.

    Returns:
        A sha256 hex digest.
    """
    h = hashlib.sha256()
    for e, y in zip(entries, labels, strict=True):
        h.update(f"{e.rel}\t{int(y)}\t{e.size}\t{e.mtime_ns}\n".encode())
    return h.hexdigest()


def _tail_has(path: Path, size: int, marker: bytes, window: int = 1024) -> bool:
    with open(path, "rb") as fh:
        fh.seek(max(0, size - window))
        return marker in fh.read()


def quick_check(path: Path, size: int) -> str | None:
    """A cheap test for a broken image (no decoding): empty file, unknown header, or a JPEG without its
    end-of-image marker / a PNG without its IEND chunk near the end (a truncated download).

    Args:
        path: the file.
        size: its size in bytes.

    Returns:
        None when it looks fine, else what is wrong.
    """
    if size == 0:
        return "empty file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head[:3] == b"\xff\xd8\xff":
            return None if _tail_has(path, size, b"\xff\xd9") else "truncated JPEG (no end-of-image marker)"
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return None if _tail_has(path, size, b"IEND", 64) else "truncated PNG (no IEND chunk)"
        # Other formats: let PIL read the header only (lazy open, no decoding).
        with Image.open(path) as im:
            im.size  # noqa: B018 - parsing the header is the check
        return None
    except (OSError, ValueError, SyntaxError) as err:
        return f"{type(err).__name__}: {err}"


def check_files(root: Path, entries: list[FileEntry]) -> list[tuple[str, str]]:
    """Args:
        root: the folder the entries are relative to.
        entries: the files.

    Returns:
        (relative path, problem) of every file :func:`quick_check` finds broken.
    """
    bad = []
    for e in entries:
        problem = quick_check(root / e.rel, e.size)
        if problem is not None:
            bad.append((e.rel, problem))
    return bad


def load_rgb(path: str) -> Image.Image:
    """Decode an image to RGB.

    Args:
        path: the file.

    Returns:
        The RGB image; a broken file raises :class:`BadImageError` naming ``path``.
    """
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        # PIL's own message ("image file is truncated") does not say which file.
        raise BadImageError(
            f"cannot decode image {path}: {err} (dataset.on_bad_image=skip leaves out files that fail "
            "the cheap check; remove or replace this one)"
        ) from None


class ImageFiles(Dataset):
    """(transformed image, label) pairs of a list of files, decoded when read.

    Args:
        paths: absolute file paths.
        labels: int labels, one per path.
        transform: PIL image -> tensor.
    """

    def __init__(self, paths: list[str], labels: np.ndarray, transform: Callable[[Any], Any]) -> None:
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(load_rgb(self.paths[i])), int(self.labels[i])
