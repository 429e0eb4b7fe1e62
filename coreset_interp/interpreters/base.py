"""The interpretation-method interface: learn relevant features R from a set of train images, turn val
activations into interpretation maps Z with them, and measure their relevance (accuracy)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from coreset_interp.registry import Registry, constructor_fields

if TYPE_CHECKING:
    # Annotations only: a method's code hash (method_versions) then does not follow these packages.
    from coreset_interp.cache import ArtifactCache
    from coreset_interp.data import ImageDataset
    from coreset_interp.models.activations import ActivationStore
    from coreset_interp.models.adapter import ModelAdapter


@dataclass
class InterpretContext:
    """Everything an interpreter may read: the model, the data and both splits' cached activations.

    Attributes:
        model: the adapter (eval mode, on ``device``).
        dataset: the image dataset (for methods that need full forward passes, e.g. VEBI).
        train: activations of the train split (interpretation is learned here).
        val: activations of the val split (evaluation happens here).
        device: torch device.
        cache: the artifact cache (for per-model artifacts such as VEBI unit features).
        model_key: cache key of the model+dataset activations, for artifacts derived from them.
        batch_size: batch size for forward passes.
        num_workers: DataLoader workers.
        progress: show progress bars.
        n_jobs: workers for per-class work (see :mod:`coreset_interp.parallel`).
    """

    model: ModelAdapter
    dataset: ImageDataset
    train: ActivationStore
    val: ActivationStore
    device: torch.device
    cache: ArtifactCache
    model_key: str
    batch_size: int = 128
    num_workers: int = 0
    progress: bool = True
    n_jobs: int = 1


@dataclass
class ClassPhi:
    """The angular distance of one class between two fits.

    Attributes:
        phi: radians in [0, pi]; None when it is undefined (a side has zero variance, or no common layer).
        per_layer: for methods compared layer by layer (VEBI), layer name -> phi of that layer (None where
            undefined); empty for methods compared on one set of maps.
    """

    phi: float | None
    per_layer: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class FigureHook:
    """What the sweep and job figures (:mod:`coreset_interp.viz`) draw for a method beyond the generic
    curves, declared by the method so that the figures name no method.

    Attributes:
        layer_units: result key (in each rho entry and in ``full``) of the method's relevant units per
            layer, layer -> count; it gets the per-layer figure (VEBI's Fig. 3). Empty = no such figure.
        layer_coverage: result key (rho entries) of the per-layer coverage of the full-data units, in %.
        layer_title: the per-layer figure's title.
        intact_reference: Fig. 2 draws the intact model's accuracy as a reference (the method's accuracy
            is judged against the model: after ablation, or of a reconstruction).
        accuracy_label: what Fig. 2's accuracy axis adds for this method (e.g. ``after ablation``).
    """

    layer_units: str = ""
    layer_coverage: str = ""
    layer_title: str = ""
    intact_reference: bool = False
    accuracy_label: str = ""


class Interpreter(ABC):
    """One interpretation method. Subclasses implement ``fit``, ``maps`` and ``evaluate``.

    A fit (the relevant features R) must be picklable: it is cached per (interpreter, version, fit
    parameters, coreset). Subclasses register with ``@INTERPRETERS.register`` (which sets :attr:`name` to
    the module's name); their constructor takes explicit keyword arguments (the YAML's flat fields), each
    kept as an attribute of the same name so that :meth:`params` can report it.
    """

    #: Registry name, equal to the YAML file name in ``conf/interpreter/`` (set by the registry).
    name: ClassVar[str] = ""
    #: Bump when the fit or the evaluation changes: it is part of every fit's and evaluation's cache key
    #: (``tests/test_method_versions.py`` notices a code change without a bump).
    version: ClassVar[int] = 1
    #: Bump when only :meth:`evaluate` changed: it is part of the val-side keys (evaluations, noise floor,
    #: cascade) but not of the fits', so cached fits stay valid. Left out of the keys while it is 1.
    evaluation_version: ClassVar[int] = 1
    #: True when the maps of a fit depend on the fit it is compared with (VEBI's top-N rule).
    paired: ClassVar[bool] = False
    #: Fields that change only :meth:`evaluate`'s numbers, not the fit (left out of fit keys).
    evaluation_only: ClassVar[frozenset[str]] = frozenset()
    #: Fields that change neither the fit nor the evaluation, only speed or memory (left out of all keys).
    speed_only: ClassVar[frozenset[str]] = frozenset()
    #: The method's own keys of every ratio entry of result.json (beyond
    #: :data:`coreset_interp.results.COMMON_RATIO_KEYS`): the one place a method's result keys are declared.
    point_metrics: ClassVar[tuple[str, ...]] = ()
    #: What the figures draw for this method beyond the generic curves (none by default).
    figure_hook: ClassVar[FigureHook] = FigureHook()

    def params(self) -> dict[str, Any]:
        """Every constructor field with its value, defaults included.

        Returns:
            A JSON-serialisable dict, field -> value.
        """
        return {f: getattr(self, f) for f in constructor_fields(type(self))}

    def fit_params(self) -> dict[str, Any]:
        """The parameters a fit depends on (part of every fit's cache key).

        Returns:
            :meth:`params` without the evaluation-only and speed-only fields.
        """
        drop = self.evaluation_only | self.speed_only
        return {k: v for k, v in self.params().items() if k not in drop}

    def evaluation_params(self) -> dict[str, Any]:
        """The parameters an evaluation of a fit depends on (part of the val-side cache keys).

        Returns:
            :meth:`fit_params` plus the evaluation-only fields.
        """
        params = self.params()
        return {**self.fit_params(), **{k: params[k] for k in sorted(self.evaluation_only)}}

    def store_parts(self, split: str) -> frozenset[str]:
        """What the method reads from a split's activation store besides g, labels and preds, so that
        one extraction pass writes it (the null reference's model extracts only this).

        Args:
            split: ``train`` or ``val``.

        Returns:
            A subset of {``maps``, ``energy``} (default: the last-conv maps of both splits).
        """
        return frozenset({"maps"})

    def bind(self, device: torch.device) -> None:
        """Settle choices that depend on the job's device before any fit is keyed (default: none; ICE
        resolves ``backend: auto`` here).

        Args:
            device: the job's torch device.
        """
        return None

    def prepare(self, ctx: InterpretContext) -> dict[str, Any]:
        """Per-model work that every fit of the method shares (e.g. VEBI's unit features of the whole train
        split, computed in the same kind of pass as the activations), done once per job before any fit so
        that the timed fits measure the method's own cost. Fits must still work without it.

        Args:
            ctx: the context.

        Returns:
            JSON-serialisable facts for result.json's ``full`` entry (default: none).
        """
        return {}

    @abstractmethod
    def fit(self, ctx: InterpretContext, indices: np.ndarray, seed: int) -> Any:
        """Learn the relevant features from some train images.

        Args:
            ctx: the context.
            indices: sorted indices into the train split (a coreset, or all of it).
            seed: seed of any randomness in the method.

        Returns:
            The fit R (picklable).
        """

    @abstractmethod
    def maps(self, fit: Any, ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
        """Interpretation maps of some val images, flattened over positions.

        Args:
            fit: a fit from :meth:`fit`.
            ctx: the context.
            indices: indices into the val split, all of one class.

        Returns:
            Z as a 2-D array (len(indices)*h'*w' x d').
        """

    def image_maps(self, fit: Any, ctx: InterpretContext, indices: np.ndarray) -> list[list[np.ndarray]]:
        """Per-image interpretation maps at their own resolution, for the heatmaps (SPEC section 4b).
        Default: :meth:`maps` of each image's class, reshaped to the last conv block's h x w.

        Args:
            fit: a fit.
            ctx: the context.
            indices: val indices (any classes).

        Returns:
            Per image (in the order of ``indices``), its maps as groups of one resolution each, every
            group a (d_g, h_g, w_g) array.
        """
        indices = np.asarray(indices, dtype=np.int64)
        _, h, w = ctx.val.map_shape
        labels = ctx.val.labels[indices]
        out: np.ndarray | None = None
        for c in np.unique(labels):
            pos = np.flatnonzero(labels == c)
            z = np.asarray(self.maps(fit, ctx, indices[pos]))
            z = z.reshape(len(pos), h, w, -1).transpose(0, 3, 1, 2)
            if out is None:
                out = np.zeros((len(indices), z.shape[1], h, w), dtype=np.float32)
            out[pos] = z
        if out is None:
            raise ValueError("image_maps: no indices")
        return [[z] for z in out]

    def paired_maps(
        self,
        fit_full: Any,
        fit_coreset: Any,
        ctx: InterpretContext,
        indices: np.ndarray,
        ctx_other: InterpretContext | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The maps Z (full data) and Z' (coreset) that the similarity metric compares.

        Args:
            fit_full: the fit on all train data.
            fit_coreset: the fit on a coreset.
            ctx: the context of ``fit_full``.
            indices: indices into the val split, all of one class.
            ctx_other: the context of ``fit_coreset`` when it belongs to another model (the null
                reference's randomised model); None = ``ctx``.

        Returns:
            (Z, Z').
        """
        return self.maps(fit_full, ctx, indices), self.maps(fit_coreset, ctx_other or ctx, indices)

    def paired_phi(
        self,
        fit_full: Any,
        fit_coreset: Any,
        ctx: InterpretContext,
        indices: np.ndarray,
        alpha: float,
        ctx_other: InterpretContext | None = None,
    ) -> ClassPhi:
        """Phi of one class for a ``paired`` method, whose maps depend on both fits (called by the comparison
        loop instead of preparing the full side once). Default: the shape metric on :meth:`paired_maps`.

        Args:
            fit_full: the fit on all train data.
            fit_coreset: the other fit (a coreset's, or another model's, see ``ctx_other``).
            ctx: the context of ``fit_full``.
            indices: indices into the val split, all of one class.
            alpha: partial-whitening alpha of the shape metric.
            ctx_other: the context of ``fit_coreset`` when it belongs to another model; None = ``ctx``.

        Returns:
            The class's phi.
        """
        from coreset_interp.metrics.shape import angular_distance_prepared, prepare

        z_full, z_other = self.paired_maps(fit_full, fit_coreset, ctx, indices, ctx_other)
        phi = angular_distance_prepared(
            prepare(np.asarray(z_full, dtype=np.float64), alpha),
            prepare(np.asarray(z_other, dtype=np.float64), alpha),
        )
        return ClassPhi(float(phi) if np.isfinite(phi) else None)

    @abstractmethod
    def evaluate(self, fit: Any, ctx: InterpretContext) -> dict[str, float]:
        """Relevance of the fit's features on the val split (the paper's Sec. 4.2).

        Args:
            fit: a fit.
            ctx: the context.

        Returns:
            At least ``accuracy`` (in [0, 1]); methods add their own keys.
        """

    def describe(self, fit: Any) -> dict[str, Any]:
        """Args:
            fit: a fit.

        Returns:
            JSON-serialisable facts about the fit for result.json (default: none).
        """
        return {}

    def compare(self, fit_full: Any, fit_coreset: Any) -> dict[str, Any]:
        """Args:
            fit_full: the fit on all train data.
            fit_coreset: the fit on a coreset.

        Returns:
            JSON-serialisable comparisons for result.json (default: none).
        """
        return {}


INTERPRETERS: Registry[Interpreter] = Registry[Interpreter]("interpreter")
