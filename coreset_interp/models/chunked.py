"""A read-only row view over several memory-mapped chunk files, indexed like one array.

An activation store writes a split as chunks of consecutive rows (one file per chunk, each published on
its own, so a killed extraction resumes at the first missing chunk). Readers index the rows as if they
were one ``(n, ...)`` array; a read touches only the chunks, and within them the rows, that it asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class ChunkedRows:
    """Rows ``[0, n)`` stored as consecutive chunks.

    Args:
        parts: the chunks in row order (memory maps or arrays with equal trailing shape and dtype).
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        if not parts:
            raise ValueError("ChunkedRows needs at least one chunk")
        tail, dtype = parts[0].shape[1:], parts[0].dtype
        for p in parts:
            if p.shape[1:] != tail or p.dtype != dtype:
                raise ValueError(
                    f"chunks disagree: {p.shape[1:]} {p.dtype} vs {tail} {dtype} (a store mixing builds?)"
                )
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in parts[:-1]]).astype(np.int64)
        self._n = int(self.starts[-1] + len(parts[-1]))
        self.dtype = dtype
        self.shape = (self._n, *tail)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self._n

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype, copy=False)

    def _rows(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1:
            raise IndexError("ChunkedRows takes an int, a slice or a 1-D index array")
        if len(index) and (index.min() < -self._n or index.max() >= self._n):
            raise IndexError(f"row index out of range for {self._n} rows")
        index = np.where(index < 0, index + self._n, index)
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        chunk = np.searchsorted(self.starts, index, side="right") - 1
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            out[sel] = self.parts[int(c)][index[sel] - self.starts[c]]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            return self[rows][(slice(None), *rest)] if not np.isscalar(rows) else self[rows][rest]
        if isinstance(key, slice):
            return self._rows(np.arange(self._n)[key])
        if np.isscalar(key):
            return self._rows(np.asarray([int(key)]))[0]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self._rows(key)


def rows_view(parts: Sequence[np.ndarray]) -> np.ndarray | ChunkedRows:
    """Args:
        parts: chunks in row order.

    Returns:
        The only chunk itself when there is one (a plain memory map), else a :class:`ChunkedRows`.
    """
    return parts[0] if len(parts) == 1 else ChunkedRows(parts)
