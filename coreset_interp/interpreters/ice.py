"""ICE, Invertible Concept-based Explanations (Zhang et al., AAAI 2021).

Per class, the non-negative last-conv activations of the class's images are stacked as rows over spatial
positions and factorised with NMF; the components H_c (r x d) are the relevant features. A new activation
A is explained by its NMF scores W with H_c fixed, and its reconstruction A^ = W H_c is the interpretation
map (depth d), which the model's head can classify.

Two accuracies (result keys):

- ``accuracy`` (label-free, the default number): each val image is reconstructed with the components of
  each of its ``candidates`` classes (the intact model's top-k among the fitted classes, read from the val
  logits of the activation store; ``all`` = every fitted class), the reconstruction with the smallest
  squared error is kept and the head classifies it. No label is read.
- ``accuracy_true_class`` (sees the label): each image is reconstructed with its ground-truth class's
  components. Reconstructing with a class's components makes the head predict that class (measured on the
  embedded default: 900 of 900 images reconstructed with another class's components), so this number
  mostly measures the label, not the features; it is kept for comparison with the first version.

The Phi protocol (the paper's Sec. 3.3) stays per class: :meth:`ICE.maps` of class c's val images use
R_c, by definition of the comparison.

Two NMF backends solve the same problem: ``torch`` (:mod:`coreset_interp.linalg.nmf`, on the job's device,
HALS on the initialisation's randomized sketch of the class on a CPU, HALS on the class itself on a GPU)
and ``sklearn`` (scikit-learn's ``NMF``, the first version). Each class's NMF is a cached checkpoint of its
own (kind ``fit``, keyed by the method's parameters, the seed, the train activations and the class's rows),
so a killed fit resumes at its first unfinished class; classes run on ``ctx.n_jobs`` workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import NMF

from coreset_interp.cache import spec_key
from coreset_interp.interpreters.base import INTERPRETERS, FigureHook, InterpretContext, Interpreter
from coreset_interp.interpreters.ice_scores import (
    FittedNMF,
    class_val_scores,
    compose,
    nmf_scores,
    rows_digest,
    sklearn_nmf_context,
    true_class_reconstructions,
)
from coreset_interp.linalg.nmf import default_solver, fit_nmf, resolve_dtype
from coreset_interp.parallel import parallel_map

log = logging.getLogger(__name__)

BACKENDS = ("torch", "sklearn")


@dataclass
class ICEFit:
    """Fitted NMF models: one per class (``scope='class'``) or one shared under key -1 (``'global'``).

    Each model is a ``sklearn.decomposition.NMF`` (backend ``sklearn``) or a
    :class:`~coreset_interp.linalg.nmf.TorchNMF` (backend ``torch``); both have ``components_``,
    ``n_components_``, ``reconstruction_err_`` and ``transform(x)``.
    """

    nmfs: dict[int, FittedNMF]
    scope: str
    #: Each NMF's cache key (same keys as ``nmfs``), which the shared val scores are keyed by
    #: (:mod:`coreset_interp.interpreters.ice_scores`); None for a fit from before the keys were kept.
    keys: dict[int, str] | None = None

    def for_class(self, c: int) -> FittedNMF:
        """Args:
            c: a class label.

        Returns:
            The NMF that explains images of class ``c``.
        """
        return self.nmfs[-1] if self.scope == "global" else self.nmfs[int(c)]


@INTERPRETERS.register
class ICE(Interpreter):
    """ICE with a per-class NMF (torch or scikit-learn).

    Args:
        n_components: r, components per class (fewer when a class has fewer positions or channels).
        scope: ``class`` (one NMF per class) or ``global`` (one NMF over all selected images).
        max_iter: NMF iterations.
        tol: NMF tolerance (0 = always ``max_iter`` iterations, so cost is proportional to the data).
        candidates: classes tried per val image by the label-free ``accuracy``: the intact model's top-k
            among the fitted classes (an integer >= 1), or ``all`` (every fitted class, exact).
        backend: ``torch`` (on the job's device), ``sklearn``, or ``auto`` (torch on CUDA, scikit-learn on
            the CPU). On the CPU the torch NMF's sketched solver is 5x faster than scikit-learn's for one
            63,700 x 2048 class (``scripts/bench_nmf.py``), objective within 0.2 %, but its components
            differ more: on the embedded default Phi moved by up to 0.11 rad in a class, so ``auto`` keeps
            scikit-learn (the first version's numbers) on the CPU. ``auto`` is resolved by :meth:`bind`
            (or at the first fit, from the context's device).
        dtype: floating type of the torch backend (``float32`` or ``float64``).
    """

    # The label-free accuracy's candidate classes change the evaluation only, not the NMFs.
    evaluation_only = frozenset({"candidates"})
    # 2: the true-class reconstructions come from the shared per-class val scores (the same W as the Phi
    # maps), transformed in per-class batches instead of mixed chunks.
    evaluation_version = 2
    # A reconstruction is judged against the model's predictions: the intact model is Fig. 2's reference.
    figure_hook = FigureHook(intact_reference=True)

    def __init__(
        self,
        n_components: int = 10,
        scope: str = "class",
        max_iter: int = 200,
        tol: float = 0.0,
        candidates: int | str = 5,
        backend: str = "auto",
        dtype: str = "float32",
    ) -> None:
        if n_components < 1:
            raise ValueError(f"ice n_components must be >= 1, got {n_components}")
        if scope not in ("class", "global"):
            raise ValueError(f"ice scope must be 'class' or 'global', got {scope!r}")
        if candidates != "all" and (
            isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
        ):
            raise ValueError(f"ice candidates must be an integer >= 1 or 'all', got {candidates!r}")
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(f"ice backend must be one of {(*BACKENDS, 'auto')}, got {backend!r}")
        resolve_dtype(dtype)
        self.candidates = candidates
        self.n_components = int(n_components)
        self.scope = scope
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.dtype = dtype
        self.backend = backend
        # The torch solver of the bound device (see bind); None until then.
        self._solver: str | None = None

    def fit_params(self) -> dict[str, Any]:
        """Returns:
        The NMF's parameters; the sklearn backend keys without ``backend`` and ``dtype`` (the first
        version's fit parameters; ``dtype`` is the torch backend's), an unresolved ``auto`` keys as
        itself so that it never shares a key with either backend.
        """
        params = super().fit_params()
        if self.backend == "sklearn":
            params.pop("backend")
            params.pop("dtype")
        elif self.backend == "torch" and self._solver is not None:
            # Bound: the device's solver gives different components, so it is part of the fit's key.
            params["solver"] = self._solver
        return params

    def bind(self, device: torch.device) -> None:
        """Resolve ``backend: auto`` for the job's device (torch on CUDA, scikit-learn otherwise).

        Args:
            device: the job's torch device.
        """
        if self.backend == "auto":
            self.backend = "torch" if torch.device(device).type == "cuda" else "sklearn"
        if self.backend == "torch":
            # Sketched HALS on the CPU, HALS on X on a GPU (coreset_interp.linalg.nmf.default_solver).
            self._solver = default_solver(device)

    def _fit_nmf(self, x: np.ndarray, seed: int, what: str, device: torch.device | str = "cpu") -> FittedNMF:
        r = min(self.n_components, x.shape[0], x.shape[1])
        if r < self.n_components:
            log.warning("ice: %s has only %d positions x %d channels; using %d components", what, *x.shape, r)
        if self.backend == "torch":
            return fit_nmf(
                x,
                r,
                max_iter=self.max_iter,
                tol=self.tol,
                seed=seed,
                device=device,
                dtype=self.dtype,
                solver=self._solver or default_solver(device),
            )
        nmf = NMF(n_components=r, init="nndsvda", max_iter=self.max_iter, tol=self.tol, random_state=seed)
        with sklearn_nmf_context():
            nmf.fit(x)
        return nmf

    def fit(self, ctx: InterpretContext, indices: np.ndarray, seed: int) -> ICEFit:
        """Args:
            ctx: the context (its cache holds the per-class checkpoints; ``n_jobs`` classes run at once).
            indices: train indices to learn from.
            seed: NMF random_state.

        Returns:
            The fitted NMF models.
        """
        self.bind(ctx.device)
        indices = np.asarray(indices)
        if self.scope == "global":
            x = ctx.train.positions(indices)
            key = spec_key(self._class_spec(ctx, -1, indices, seed))
            return ICEFit({-1: self._fit_nmf(x, seed, "the coreset", ctx.device)}, "global", {-1: key})
        labels = ctx.train.labels[indices]
        groups: dict[int, np.ndarray] = {}
        for c in ctx.train.classes():
            sel = indices[labels == c]
            if len(sel) == 0:
                raise ValueError(f"ice: class {c} has no selected train samples")
            groups[int(c)] = sel
        specs = {c: self._class_spec(ctx, c, sel, seed) for c, sel in groups.items()}
        nmfs: dict[int, FittedNMF] = {}
        # A context without a cache (unit tests on bare activation stores) fits without checkpoints.
        cache = ctx.cache
        for c, spec in specs.items():
            if cache is not None and cache.exists("fit", spec_key(spec)):
                nmfs[c] = cache.get_or_compute_pickle("fit", spec, _missing, record=False)[0]
        todo = [c for c in groups if c not in nmfs]
        if nmfs and todo:
            log.info("ice: %d of %d classes from checkpoints; fitting %d", len(nmfs), len(groups), len(todo))

        def work(c: int) -> FittedNMF:
            return self._fit_nmf(ctx.train.positions(groups[c]), seed, f"class {c}", ctx.device)

        def checkpoint(i: int, nmf: FittedNMF) -> None:
            c = todo[i]
            if cache is not None:
                cache.get_or_compute_pickle("fit", specs[c], lambda: nmf, record=False)
            nmfs[c] = nmf

        parallel_map(
            work,
            todo,
            ctx.n_jobs,
            on_result=checkpoint,
            progress=ctx.progress and len(todo) > 1,
            desc="ice classes",
        )
        return ICEFit({c: nmfs[c] for c in groups}, "class", {c: spec_key(specs[c]) for c in groups})

    def _class_spec(self, ctx: InterpretContext, c: int, rows: np.ndarray, seed: int) -> dict[str, Any]:
        """What determines one class's NMF (class -1: the global one): the method, the seed, the train
        activations and its rows."""
        return {
            "interpreter": self.name,
            "part": "class_nmf" if c >= 0 else "global_nmf",
            "version": self.version,
            "params": self.fit_params(),
            "seed": int(seed),
            "train": ctx.model_key,
            "class": int(c),
            "rows": rows_digest(rows),
        }

    @staticmethod
    def _reconstruct(nmf: FittedNMF, x: np.ndarray) -> np.ndarray:
        return compose(nmf, nmf_scores(nmf, x))

    def maps(self, fit: ICEFit, ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
        """The Phi protocol's maps: class c's val images reconstructed with R_c (the paper's Sec. 3.3).

        Args:
            fit: the fit.
            ctx: the context.
            indices: val indices of one class.

        Returns:
            Reconstructions A^ as rows over positions (len*h*w x d). A whole class's images are
            reconstructed from its shared val scores (computed once per fit and class).
        """
        c = int(ctx.val.labels[indices[0]])
        if np.array_equal(indices, ctx.val.class_indices(c)):
            return compose(fit.for_class(c), class_val_scores(self, fit, ctx, c))
        return self._reconstruct(fit.for_class(c), ctx.val.positions(indices))

    def candidate_classes(self, fit: ICEFit, logits: np.ndarray) -> np.ndarray:
        """The classes tried for each image by the label-free accuracy.

        Args:
            fit: the fit (its fitted classes; a class subset keeps the full label index, so logits may
                have columns of classes without components).
            logits: the intact model's logits of some images (n x classes).

        Returns:
            (n x k) class labels, the highest-ranked fitted classes first.
        """
        fitted = np.asarray(sorted(c for c in fit.nmfs if c >= 0), dtype=np.int64)
        if len(fitted) == 0:
            raise ValueError("ice: the fit has no class components")
        if fitted.max() >= logits.shape[1]:
            raise ValueError(f"ice: fitted class {fitted.max()} has no logit column ({logits.shape[1]})")
        k = len(fitted) if self.candidates == "all" else min(int(self.candidates), len(fitted))
        scores = np.asarray(logits, dtype=np.float32)[:, fitted]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return fitted[order]

    def _head_correct(self, ctx: InterpretContext, a_hat: np.ndarray, labels: np.ndarray) -> int:
        """How many of some reconstructions (n x h*w x d, image-major positions) the head classifies as
        their label."""
        d, h, w = ctx.val.map_shape
        maps = torch.from_numpy(a_hat.reshape(len(a_hat), h, w, d).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            logits = torch.cat([ctx.model.head(b.to(ctx.device)).cpu() for b in maps.split(ctx.batch_size)])
        return int((logits.argmax(1).numpy() == labels).sum())

    def evaluate(self, fit: ICEFit, ctx: InterpretContext) -> dict[str, float]:
        """Accuracy of the head on each val image's reconstruction, label-free and with the true class.

        Val images are read in chunks; within a chunk each class's NMF reconstructs the images that have it
        as a candidate or as their label, so an image costs ``candidates`` reconstructions (one more when its
        label is not a candidate). The true-class reconstructions come from the class's shared val scores
        (:func:`~coreset_interp.interpreters.ice_scores.class_val_scores`), the same W as the Phi maps, so
        each (fit, class) transform is computed once for both.

        Args:
            fit: the fit.
            ctx: the context.

        Returns:
            ``accuracy`` (label-free: the candidate class with the smallest reconstruction error),
            ``accuracy_true_class`` (the ground-truth class's components: sees the label), ``intact_accuracy``
            and ``ice_choice_accuracy`` (share of images whose smallest-error class is the true class).
            With ``scope='global'`` one NMF serves every image and the two accuracies are equal.
        """
        labels = np.asarray(ctx.val.labels)
        d, h, w = ctx.val.map_shape
        intact = float(np.mean(ctx.val.preds == labels))
        if fit.scope == "global":
            correct = 0
            # Class by class: each class's reconstructions are its shared val scores (the Phi maps' W).
            for c in ctx.val.classes():
                idx = ctx.val.class_indices(int(c))
                rec = true_class_reconstructions(self, fit, ctx, int(c), idx)
                correct += self._head_correct(ctx, rec, labels[idx])
            acc = correct / ctx.val.n
            return {"accuracy": acc, "accuracy_true_class": acc, "intact_accuracy": intact}
        cands = self.candidate_classes(fit, np.asarray(ctx.val.logits))
        unfitted = sorted(set(np.unique(labels).tolist()) - set(fit.nmfs))
        if unfitted:
            raise ValueError(f"ice: val class(es) {unfitted[:10]} have no components in the fit")
        # Images per chunk: about 64 MB per array of reconstructions (160 ImageNet ResNet50 images).
        chunk = max(1, (64 << 20) // (h * w * d * 4))
        free = true = hits = 0
        # Each class's scores, read once for all chunks (W is rows x r: 98 KB per ImageNet class).
        loaded: dict[int, np.ndarray] = {}
        for start in range(0, ctx.val.n, chunk):
            idx = np.arange(start, min(start + chunk, ctx.val.n))
            x = ctx.val.positions(idx).reshape(len(idx), h * w, d)
            cand, lab = cands[idx], labels[idx]
            best_err = np.full(len(idx), np.inf)
            best_cls = np.full(len(idx), -1, dtype=np.int64)
            best = np.zeros_like(x)
            by_label = np.zeros_like(x)
            for c in np.union1d(cand, lab):
                is_cand, is_true = (cand == c).any(axis=1), lab == c
                rows = np.flatnonzero(is_cand | is_true)
                own = is_true[rows]
                rec = np.empty((len(rows), h * w, d), dtype=np.float32)
                if own.any():
                    rec[own] = true_class_reconstructions(self, fit, ctx, int(c), idx[rows[own]], loaded)
                if not own.all():
                    other = x[rows[~own]].reshape(-1, d)
                    rec[~own] = self._reconstruct(fit.for_class(int(c)), other).reshape(-1, h * w, d)
                by_label[rows[own]] = rec[own]
                scored = is_cand[rows]
                err = ((rec[scored] - x[rows[scored]]) ** 2).sum(axis=(1, 2))
                r = rows[scored]
                better = err < best_err[r]
                best_err[r[better]], best_cls[r[better]] = err[better], c
                best[r[better]] = rec[scored][better]
            free += self._head_correct(ctx, best, lab)
            true += self._head_correct(ctx, by_label, lab)
            hits += int((best_cls == lab).sum())
        n = ctx.val.n
        return {
            "accuracy": free / n,
            "accuracy_true_class": true / n,
            "intact_accuracy": intact,
            "ice_choice_accuracy": hits / n,
        }

    def describe(self, fit: ICEFit) -> dict[str, Any]:
        """Returns:
        Mean NMF reconstruction error and component counts.
        """
        errs = [float(n.reconstruction_err_) for n in fit.nmfs.values()]
        return {
            "nmf_components": int(sum(n.n_components_ for n in fit.nmfs.values())),
            "nmf_error": float(np.mean(errs)),
        }


def _missing() -> Any:
    raise RuntimeError("ice: a class checkpoint vanished between its check and its read")
