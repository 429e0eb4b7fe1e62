"""ICE's val scores: the NMF scores W of one class's val images with the components of one NMF, computed once
per (NMF, val class) and shared by everything that reads them.

The transform that produces W (max_iter coordinate-descent sweeps with the components fixed) is the expensive
step; W itself is small (rows x r: 98 KB for an ImageNet class of 50 images at r = 10) and the reconstruction
W H is one product. The Phi protocol's maps (:meth:`ICE.maps`, read by every comparison, the noise floor and
the cascade) and the true-class reconstructions of :meth:`ICE.evaluate` are the same W of the same images,
so W is an artifact of its own (kind ``transform``), keyed by the NMF's own key, the val store and the
class's rows. A context without a cache, or a fit without NMF keys, computes W each time it is asked.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from coreset_interp.interpreters.base import InterpretContext
    from coreset_interp.interpreters.ice import ICE, ICEFit


class FittedNMF(Protocol):
    """What ICE reads from a fitted NMF of either backend (scikit-learn's names)."""

    components_: np.ndarray
    n_components_: int
    reconstruction_err_: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scores W of rows x with the components fixed."""
        ...


def rows_digest(rows: np.ndarray) -> str:
    """Args:
        rows: integer indices.

    Returns:
        A 20-character digest of them (order matters).
    """
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:20]


@contextmanager
def sklearn_nmf_context() -> Iterator[None]:
    """Where scikit-learn's NMF fits and transforms run: one BLAS thread (a class's NMF is thousands of
    small products, where OpenBLAS's threads only synchronise; on this 2-core machine under load one class
    took 5.3 s with 2 threads, 0.21 s with 1) and no ConvergenceWarning (non-convergence within max_iter
    is expected on large classes and harmless for the maps)."""
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def nmf_scores(nmf: FittedNMF, x: np.ndarray) -> np.ndarray:
    """Scores W of rows ``x`` with the NMF's components fixed.

    Args:
        nmf: a fitted NMF of either backend.
        x: (m, d) non-negative rows.

    Returns:
        W (m x r).
    """
    if not isinstance(nmf, NMF):
        return nmf.transform(x)
    with sklearn_nmf_context():
        return nmf.transform(x)


def compose(nmf: FittedNMF, w: np.ndarray) -> np.ndarray:
    """Args:
        nmf: a fitted NMF.
        w: its scores of some rows.

    Returns:
        The reconstructions W H (float32).
    """
    return (w @ nmf.components_).astype(np.float32)


def class_val_scores(interp: ICE, fit: ICEFit, ctx: InterpretContext, c: int) -> np.ndarray:
    """The scores of class ``c``'s val images with the components that explain class c, computed once.

    Args:
        interp: the ICE interpreter (its name and version go into the key).
        fit: the fit.
        ctx: the context (its cache holds the scores; its val store gives the images).
        c: a val class.

    Returns:
        W (rows over the class's val positions, image-major, x r).
    """
    idx = ctx.val.class_indices(c)
    nmf = fit.for_class(c)
    nmf_key = None if fit.keys is None else fit.keys.get(-1 if fit.scope == "global" else int(c))

    def compute() -> np.ndarray:
        return nmf_scores(nmf, ctx.val.positions(idx))

    if ctx.cache is None or nmf_key is None:
        return compute()
    spec: dict[str, Any] = {
        "interpreter": interp.name,
        "part": "val_scores",
        "version": interp.version,
        "nmf": nmf_key,
        "val": ctx.val.path.name,
        "class": int(c),
        "rows": rows_digest(idx),
    }
    # Not recorded in result.json: one per (fit, class), thousands per ImageNet job.
    return ctx.cache.get_or_compute_pickle("transform", spec, compute, record=False)[0]


def true_class_reconstructions(
    interp: ICE,
    fit: ICEFit,
    ctx: InterpretContext,
    c: int,
    images: np.ndarray,
    loaded: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Reconstructions of some val images of class ``c`` with class c's components, from the shared scores.

    Args:
        interp: the ICE interpreter.
        fit: the fit.
        ctx: the context.
        c: their class.
        images: val indices, each of class ``c``.
        loaded: scores already read, by class; the class's scores are added when read. A caller that
            asks for a class's images in several pieces (evaluate's chunks, where ImageNet's file order
            mixes the classes) then reads each class's artifact once, not once per piece.

    Returns:
        (len(images) x h*w x d) float32 reconstructions.
    """
    d, h, w = ctx.val.map_shape
    members = ctx.val.class_indices(c)
    pos = np.searchsorted(members, images)
    if np.any(pos >= len(members)) or not np.array_equal(members[np.minimum(pos, len(members) - 1)], images):
        raise ValueError(f"ice: some images are not of val class {c}")
    scores = None if loaded is None else loaded.get(c)
    if scores is None:
        scores = class_val_scores(interp, fit, ctx, c)
        if loaded is not None:
            loaded[c] = scores
    picked = scores.reshape(len(members), h * w, -1)[pos].reshape(len(images) * h * w, -1)
    return compose(fit.for_class(c), picked).reshape(len(images), h * w, d)
