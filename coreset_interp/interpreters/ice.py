"""ICE, Invertible Concept-based Explanations (Zhang et al., AAAI 2021).

Per class, the non-negative last-conv activations of the class's images are stacked as rows over spatial
positions and factorised with NMF; the components H_c (r x d) are the relevant features. A new activation
A is explained by its NMF scores W with H_c fixed, and its reconstruction A^ = W H_c is the interpretation
map (depth d), which the model's head can classify.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from coreset_interp.interpreters.base import InterpretContext, Interpreter

log = logging.getLogger(__name__)


@dataclass
class ICEFit:
    """Fitted NMF models: one per class (``scope='class'``) or one shared under key -1 (``'global'``)."""

    nmfs: dict[int, NMF]
    scope: str

    def for_class(self, c: int) -> NMF:
        """Args:
            c: a class label.

        Returns:
            The NMF that explains images of class ``c``.
        """
        return self.nmfs[-1] if self.scope == "global" else self.nmfs[int(c)]


class ICE(Interpreter):
    """ICE with scikit-learn's NMF.

    Args:
        n_components: r, components per class (fewer when a class has fewer positions or channels).
        scope: ``class`` (one NMF per class; evaluation uses each image's ground-truth class, as the paper)
            or ``global`` (one NMF over all selected images; label-free evaluation).
        max_iter: NMF iterations.
        tol: NMF tolerance (0 = always ``max_iter`` iterations, so cost is proportional to the data).
    """

    name = "ice"

    def __init__(self, n_components: int = 10, scope: str = "class", max_iter: int = 200, tol: float = 0.0):
        if n_components < 1:
            raise ValueError(f"ice n_components must be >= 1, got {n_components}")
        if scope not in ("class", "global"):
            raise ValueError(f"ice scope must be 'class' or 'global', got {scope!r}")
        super().__init__(n_components=int(n_components), scope=scope, max_iter=int(max_iter), tol=float(tol))
        self.n_components = int(n_components)
        self.scope = scope
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def _fit_nmf(self, x: np.ndarray, seed: int, what: str) -> NMF:
        r = min(self.n_components, x.shape[0], x.shape[1])
        if r < self.n_components:
            log.warning("ice: %s has only %d positions x %d channels; using %d components", what, *x.shape, r)
        nmf = NMF(n_components=r, init="nndsvda", max_iter=self.max_iter, tol=self.tol, random_state=seed)
        # One BLAS thread: a class's NMF is thousands of small products, where OpenBLAS's threads only
        # synchronise; on this 2-core machine under load one class took 5.3 s with 2 threads, 0.21 s with 1.
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # Non-convergence within max_iter is expected on large classes and harmless for the maps.
            warnings.simplefilter("ignore", ConvergenceWarning)
            nmf.fit(x)
        return nmf

    def fit(self, ctx: InterpretContext, indices: np.ndarray, seed: int) -> ICEFit:
        """Args:
            ctx: the context.
            indices: train indices to learn from.
            seed: NMF random_state.

        Returns:
            The fitted NMF models.
        """
        indices = np.asarray(indices)
        if self.scope == "global":
            return ICEFit({-1: self._fit_nmf(ctx.train.positions(indices), seed, "the coreset")}, "global")
        labels = ctx.train.labels[indices]
        nmfs = {}
        for c in ctx.train.classes():
            sel = indices[labels == c]
            if len(sel) == 0:
                raise ValueError(f"ice: class {c} has no selected train samples")
            nmfs[int(c)] = self._fit_nmf(ctx.train.positions(sel), seed, f"class {c}")
        return ICEFit(nmfs, "class")

    @staticmethod
    def _reconstruct(nmf: NMF, x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            w = nmf.transform(x)
        return (w @ nmf.components_).astype(np.float32)

    def maps(self, fit: ICEFit, ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
        """Args:
            fit: the fit.
            ctx: the context.
            indices: val indices of one class.

        Returns:
            Reconstructions A^ as rows over positions (len*h*w x d).
        """
        c = int(ctx.val.labels[indices[0]])
        return self._reconstruct(fit.for_class(c), ctx.val.positions(indices))

    def evaluate(self, fit: ICEFit, ctx: InterpretContext) -> dict[str, float]:
        """Accuracy of the head on each val image's reconstruction (with its ground-truth class's
        components when ``scope='class'``).

        Args:
            fit: the fit.
            ctx: the context.

        Returns:
            ``{"accuracy"}``.
        """
        d, h, w = ctx.val.map_shape
        correct = 0
        for c in ctx.val.classes():
            idx = ctx.val.class_indices(c)
            z = self.maps(fit, ctx, idx)
            a_hat = torch.from_numpy(z.reshape(len(idx), h, w, d).transpose(0, 3, 1, 2).copy())
            with torch.no_grad():
                logits = torch.cat(
                    [ctx.model.head(b.to(ctx.device)).cpu() for b in a_hat.split(ctx.batch_size)]
                )
            correct += int((logits.argmax(1).numpy() == ctx.val.labels[idx]).sum())
        return {"accuracy": correct / ctx.val.n}

    def describe(self, fit: ICEFit) -> dict[str, Any]:
        """Returns:
        Mean NMF reconstruction error and component counts.
        """
        errs = [float(n.reconstruction_err_) for n in fit.nmfs.values()]
        return {
            "nmf_components": int(sum(n.n_components_ for n in fit.nmfs.values())),
            "nmf_error": float(np.mean(errs)),
        }
