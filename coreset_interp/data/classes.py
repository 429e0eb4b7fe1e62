"""Class subsets (``dataset.classes``): which classes of a dataset a job runs on, and per-class caps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def choose_classes(
    classes: Any,
    names: Sequence[str],
    seed: int | None = None,
    dataset: str = "dataset",
    candidates: Sequence[int] | None = None,
) -> list[int]:
    """Resolve ``dataset.classes`` to class indices.

    Args:
        classes: None (every candidate class), an integer k (the first k candidates in index order, or k
            drawn with ``seed``), or a list of class names (ImageNet: wnids; image folders: folder names)
            or indices.
        names: the dataset's class names in index order.
        seed: seed of a random choice of k classes; None = the first k.
        dataset: dataset name for error messages.
        candidates: the classes the data holds (e.g. the synset folders of a partial ImageNet tree);
            None = all of ``names``. A listed class outside them is an error.

    Returns:
        Sorted class indices.
    """
    n = len(names)
    pool = sorted(int(c) for c in (range(n) if candidates is None else candidates))
    if classes is None:
        return pool
    if isinstance(classes, bool):
        raise ValueError(f"{dataset}: dataset.classes must be null, an integer or a list, got {classes!r}")
    if isinstance(classes, int):
        k = int(classes)
        if not 1 <= k <= len(pool):
            raise ValueError(
                f"{dataset}: dataset.classes={k} must be between 1 and {len(pool)} (classes present)"
            )
        if seed is None:
            return pool[:k]
        rng = np.random.default_rng(int(seed))
        return sorted(pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False))
    if isinstance(classes, str):
        classes = [c for c in classes.replace(",", " ").split() if c]
    items = list(classes)
    if not items:
        raise ValueError(f"{dataset}: dataset.classes is an empty list")
    index = {name: i for i, name in enumerate(names)}
    out: list[int] = []
    unknown: list[str] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if 0 <= item < n:
                out.append(int(item))
            else:
                unknown.append(str(item))
        elif str(item) in index:
            out.append(index[str(item)])
        else:
            unknown.append(str(item))
    if unknown:
        preview = ", ".join(list(names)[:3])
        raise ValueError(
            f"{dataset}: dataset.classes has {len(unknown)} unknown class(es) {unknown[:5]}; "
            f"valid: {n} class names ({preview}, ...) or indices 0..{n - 1}"
        )
    dupes = sorted({names[c] for c in out if out.count(c) > 1})
    if dupes:
        raise ValueError(f"{dataset}: dataset.classes lists {dupes[:5]} more than once")
    absent = [names[c] for c in sorted(set(out) - set(pool))]
    if absent:
        raise ValueError(
            f"{dataset}: dataset.classes {absent[:5]} not present in the data ({len(absent)} absent)"
        )
    return sorted(out)


def cap_per_class(labels: np.ndarray, class_ids: Sequence[int], cap: int | None) -> np.ndarray:
    """Positions of the samples a split keeps: those of the chosen classes, at most ``cap`` per class
    (the first ones in the split's order).

    Args:
        labels: int labels of the whole split.
        class_ids: the chosen classes.
        cap: at most this many per class; None keeps all.

    Returns:
        Sorted int64 positions into ``labels``.
    """
    labels = np.asarray(labels)
    if cap is not None and int(cap) < 1:
        raise ValueError(f"max_per_class must be a positive integer or null, got {cap}")
    keep = []
    for c in class_ids:
        idx = np.flatnonzero(labels == c)
        keep.append(idx if cap is None else idx[: int(cap)])
    if not keep:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def capped_split(dataset: Any, split: str, cap: int | None) -> Any:
    """A split of ``dataset`` with at most ``cap`` samples per class (the first ones), e.g. to train a
    model on a budget.

    Args:
        dataset: an :class:`~coreset_interp.data.base.ImageDataset`.
        split: ``train`` or ``val``.
        cap: at most this many per class; None = the whole split.

    Returns:
        The torch Dataset (a Subset when capped).
    """
    from torch.utils.data import Subset

    data = dataset.split(split)
    if cap is None:
        return data
    labels = dataset.labels(split)
    keep = cap_per_class(labels, sorted(set(labels.tolist())), int(cap))
    return Subset(data, keep.tolist())
