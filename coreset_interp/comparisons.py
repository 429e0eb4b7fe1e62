"""The class-outer comparison loop: Phi of one full-data fit against many fits, one class at a time.

For each val class c the full-data side (maps of the full fit, centred and whitened) is prepared once,
compared with every other fit (each rho's coreset fit and the null reference) and dropped before the next
class, so memory holds one class, never all of them. Paired methods (VEBI, whose full-side maps depend on
the coreset fit) go through ``Interpreter.paired_phi`` per pair instead.

Every (full fit, other fit, alpha, class) result is appended to a small per-pair log in the cache as soon
as it is computed, so a job killed mid-loop resumes at its first uncompared class. A log is one JSON line
per class (``<cache>/comparison/<key>.jsonl``); a line is written with one ``write`` call and fsynced, so
a crash leaves at most a torn last line, which is ignored on reading (that class is recomputed). Two jobs
appending the same pair (the null reference is shared by every selector's job) write identical values.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from coreset_interp.cache import ArtifactCache, spec_key
from coreset_interp.interpreters import ClassPhi, InterpretContext, Interpreter
from coreset_interp.metrics.shape import angular_distance_prepared, prepare
from coreset_interp.metrics.shape_torch import angular_distance_prepared_torch, prepare_torch

log = logging.getLogger(__name__)

#: Folder (under the cache root) of the per-pair comparison logs.
COMPARISON_DIR = "comparison"
#: Version of what a comparison log holds; bump when the metric's numbers change.
COMPARISON_VERSION = 1
BACKENDS = ("auto", "numpy", "torch")


@dataclass(frozen=True)
class ComparedFit:
    """One fit to compare with the full-data fit.

    Attributes:
        fit: the fit.
        key: its cache key (the fit artifact's key), or None to compute without caching the results.
        ctx: its context when it belongs to another model (the null reference); None = the full fit's.
    """

    fit: Any
    key: str | None = None
    ctx: InterpretContext | None = None


def comparison_key(
    interp: Interpreter, full_key: str, other_key: str, alpha: float, val_full: str, val_other: str
) -> str:
    """Cache key of the comparison log of one pair of fits.

    Args:
        interp: the interpreter (its name and parameters).
        full_key: the full-data fit's key.
        other_key: the other fit's key.
        alpha: partial-whitening alpha.
        val_full: the full fit's val activations (folder name = key).
        val_other: the other fit's val activations.

    Returns:
        The hex key.
    """
    return spec_key(
        {
            "version": COMPARISON_VERSION,
            "interpreter": interp.name,
            "params": interp.fit_params(),
            "full": full_key,
            "other": other_key,
            "alpha": float(alpha),
            "val": val_full,
            "val_other": val_other,
        }
    )


class ComparisonLog:
    """The append-only per-class results of one pair (see the module docstring).

    Args:
        path: the log file, or None for a log that keeps nothing (uncached comparisons).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[int, ClassPhi]:
        """Returns:
        The classes already compared (a torn or unparsable line is skipped, so that class is redone).
        """
        if self.path is None or not self.path.is_file():
            return {}
        out: dict[int, ClassPhi] = {}
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
                out[int(row["class"])] = ClassPhi(row["phi"], dict(row.get("per_layer") or {}))
            except (ValueError, KeyError, TypeError):
                log.warning("comparison log %s: skipping a damaged line", self.path)
        return out

    def append(self, c: int, value: ClassPhi) -> None:
        """Record one class's result durably.

        Args:
            c: the class.
            value: its phi.
        """
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"class": int(c), "phi": value.phi, "per_layer": value.per_layer}) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A torn last line (a writer killed mid-write) is closed first, so this line stays whole.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _log_path(
    interp: Interpreter, ctx: InterpretContext, full_key: str | None, other: ComparedFit, alpha: float
) -> Path | None:
    if full_key is None or other.key is None:
        return None
    val_other = (other.ctx or ctx).val.path.name
    key = comparison_key(interp, full_key, other.key, alpha, ctx.val.path.name, val_other)
    return ctx.cache.root / COMPARISON_DIR / f"{key}.jsonl"


def resolve_backend(backend: str, device: torch.device) -> str:
    """Args:
        backend: ``auto`` (torch on CUDA, numpy on the CPU, where both measure alike), ``numpy`` or ``torch``.
        device: the job's device.

    Returns:
        ``numpy`` or ``torch``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"metric.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "torch" if device.type == "cuda" else "numpy"
    return backend


def _finite_or_none(phi: float) -> float | None:
    return float(phi) if math.isfinite(phi) else None


def compare_class_outer(
    interp: Interpreter,
    ctx: InterpretContext,
    fit_full: Any,
    full_key: str | None,
    others: Sequence[ComparedFit],
    alpha: float,
    *,
    backend: str = "numpy",
    desc: str = "compare",
) -> list[dict[int, ClassPhi]]:
    """Phi per val class between ``fit_full`` and each of ``others``, class-outer, with cached results.

    Args:
        interp: the interpreter.
        ctx: the full fit's context (its val split defines the classes).
        fit_full: the full-data fit.
        full_key: its cache key; None disables result caching for every pair.
        others: the fits to compare with.
        alpha: partial-whitening alpha.
        backend: ``numpy`` or ``torch`` (float64 on ``ctx.device``).
        desc: progress bar label.

    Returns:
        For each of ``others`` in order, phi per class.
    """
    logs = [ComparisonLog(_log_path(interp, ctx, full_key, o, alpha)) for o in others]
    results = [entry.load() for entry in logs]
    classes = [int(c) for c in ctx.val.classes()]
    reused = sum(len(r) for r in results)
    if reused:
        log.info("comparisons: reusing %d cached (pair, class) results", reused)
    if backend == "torch":
        prep: Any = lambda z: prepare_torch(np.asarray(z), alpha, ctx.device)  # noqa: E731
        distance: Any = angular_distance_prepared_torch
    else:
        prep = lambda z: prepare(np.asarray(z, dtype=np.float64), alpha)  # noqa: E731
        distance = angular_distance_prepared
    # One BLAS thread for these per-class problems (a few hundred rows): measured under load on this
    # 2-core machine, prepare + compare of a (144, 512) pair took 1.9 s with 2 OpenBLAS threads, 0.023 s
    # with 1.
    with threadpool_limits(limits=1, user_api="blas"):
        for c in tqdm(classes, desc=desc, disable=not ctx.progress, leave=False):
            pending = [i for i in range(len(others)) if c not in results[i]]
            if not pending:
                continue
            idx = ctx.val.class_indices(c)
            if interp.paired:
                for i in pending:
                    o = others[i]
                    value = interp.paired_phi(fit_full, o.fit, ctx, idx, alpha, o.ctx)
                    results[i][c] = value
                    logs[i].append(c, value)
                continue
            full_side = prep(interp.maps(fit_full, ctx, idx))
            for i in pending:
                o = others[i]
                other_side = prep(interp.maps(o.fit, o.ctx or ctx, idx))
                value = ClassPhi(_finite_or_none(distance(full_side, other_side)))
                del other_side
                results[i][c] = value
                logs[i].append(c, value)
            # Dropped before the next class: peak memory is one class's, whatever the class count.
            del full_side
    return [{c: r[c] for c in classes if c in r} for r in results]


def comparison_cache_size(cache: ArtifactCache) -> int:
    """Args:
        cache: the artifact cache.

    Returns:
        Number of comparison logs it holds (for the planner's "would reuse" listing).
    """
    folder = cache.root / COMPARISON_DIR
    return len(list(folder.glob("*.jsonl"))) if folder.is_dir() else 0
