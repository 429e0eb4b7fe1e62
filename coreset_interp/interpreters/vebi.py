"""VEBI, Visual Explanation By Interpretation (Oramas et al., ICLR 2019), as used by the paper.

Every unit (channel of every ReLU call, :mod:`vebi_units`) of every train image gets an energy feature;
a positive mu-lasso per class (:mod:`vebi_lasso`) regresses the one-hot *predicted* class on them, and the
units with non-zero weight are the class's relevant units.

Evaluation (the paper's Sec. 4.2): each val image is classified with its class's relevant units zeroed
during the forward pass; reported are the accuracy, its drop from the intact model, the mean drop of the
true class's softmax probability, and the same two drops for a control that zeroes as many randomly chosen
units per layer (drawn among the class's other units of that layer, ``random_draws`` seeded draws).

Similarity (the paper's Sec. 4.3, SPEC): :meth:`VEBI.paired_phi` compares the two fits layer by layer. For
class c and each layer (ReLU call) where both fits have at least one unit of class c, Z and Z' are that
layer's activation maps of the class's val images at the layer's own resolution, restricted to each fit's
top-N units of that layer by weight (N = the smaller count in that layer); phi is computed per layer and
phi_c is the mean over those layers. A class without a common layer has no phi (missing, never zero).
The first version pooled every unit to the last block's h x w and took the top-N across layers, so a unit
of one layer could be paired with a unit of another; that is gone. Memory: one class at a time, the
selected channels of the common layers only (n_c x sum_L N_L h_L w_L floats), one forward pass per image
batch that stops after the last needed layer.

Display maps (Sec. 4.1, :meth:`VEBI.maps`): the relevant units' activation maps, adaptive-average-pooled
to the last conv block's h x w and concatenated by decreasing lasso weight (n*h*w, k); not used by Phi.

Cost: the unit features of the whole train split are computed once per model in :meth:`VEBI.prepare`
(a cached artifact, like the last-conv activations, and outside the timed fit; the coreset is selected
from a pass over the whole dataset anyway, and these features come from the same kind of pass); a fit
only accumulates E^T E over its rows and solves the lasso, the O(n d^2) work of the paper's Sec. 4.6.
Memory: the U x U Gram matrix in float64 (122 MB for ResNet18's 3904 units, 4.1 GB for ResNet50's
22720), independent of the number of images; E is read from its memory map in batches.

Result keys: :meth:`VEBI.describe` counts relevant units per class and per layer (a layer = one ReLU
call, keyed ``"<call>:<module>"``; a unit relevant to two classes counts twice); :meth:`VEBI.compare`
gives the per-layer coverage of the paper's Fig. 3 over (class, unit) pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coreset_interp.interpreters.base import INTERPRETERS, FigureHook, InterpretContext, Interpreter
from coreset_interp.interpreters.vebi_ablation import ablation_scores
from coreset_interp.interpreters.vebi_capture import empty_maps, layer_maps, pooled_maps, rows
from coreset_interp.interpreters.vebi_fit import VEBIFit
from coreset_interp.interpreters.vebi_lasso import accumulate_gram, positive_lasso_l1
from coreset_interp.interpreters.vebi_maps import image_unit_maps, native_unit_maps
from coreset_interp.interpreters.vebi_similarity import layer_pairs, layer_phi
from coreset_interp.interpreters.vebi_units import (
    StagedModel,
    UnitFeatures,
    UnitLayer,
    extract_unit_features,
    unit_features_spec,
)

__all__ = ["VEBI", "VEBIFit"]

log = logging.getLogger(__name__)


@INTERPRETERS.register
class VEBI(Interpreter):
    """VEBI's relevant units from a constrained positive lasso per class.

    Args:
        mu: the L1 budget of each class's weights (``||w_c||_1 <= mu``). The feature scale makes it
            dataset-dependent: the port used 0.001 on ImageNet, which gives one unit per class on the
            embedded default, whose positive path saturates (4-8 units per class) from mu ~ 60-70.
        random_draws: draws of the random-unit control.
        working_set: units the lasso starts from (the most correlated); the solution does not depend on it.
        gram_batch: train rows read per step when accumulating E^T E.
    """

    paired = True
    # The random-unit control is drawn at evaluation; the lasso's working set and the Gram's batch rows
    # change speed and memory only.
    evaluation_only = frozenset({"random_draws"})
    speed_only = frozenset({"working_set", "gram_batch"})
    # Fig. 3 (units per layer and their coverage) from the keys describe() and compare() write.
    figure_hook = FigureHook(
        layer_units="vebi_units_per_layer",
        layer_coverage="vebi_coverage_per_layer",
        layer_title="VEBI: relevant units per layer and intersection coverage (Fig. 3)",
        intact_reference=True,
        accuracy_label="after ablation",
    )

    point_metrics = (
        "ablation_drop", "ablation_prob_drop", "random_ablation_drop", "random_ablation_prob_drop",
        "vebi_units_per_class", "vebi_units_per_layer", "vebi_coverage_per_layer",
    )  # fmt: skip

    def __init__(
        self, mu: float = 50.0, random_draws: int = 5, working_set: int = 128, gram_batch: int = 1024
    ) -> None:
        if not mu > 0:
            raise ValueError(f"vebi mu must be > 0, got {mu}")
        if random_draws < 1:
            raise ValueError(f"vebi random_draws must be >= 1, got {random_draws}")
        self.mu = float(mu)
        self.random_draws = int(random_draws)
        # Neither changes the result, so neither is part of a cache key (speed_only).
        self.working_set = int(working_set)
        self.gram_batch = int(gram_batch)
        self._features: dict[str, UnitFeatures] = {}
        self._staged: dict[int, StagedModel] = {}

    # ----------------------------------------------------------------------------------- features
    def unit_features(self, ctx: InterpretContext, record: bool = False) -> UnitFeatures:
        """The train split's unit features, computed once per model and cached.

        Args:
            ctx: the context.
            record: list the artifact in the job's artifact records.

        Returns:
            The features (memory-mapped).
        """
        if ctx.model_key not in self._features and ctx.train.meta:
            from coreset_interp.models.extraction import ExtractSettings, add_parts

            # Energies come from the store's own extraction pass when the job asked for them, else from
            # one more pass over its chunks, cached beside them for every later job.
            store = ctx.train
            if store.energies() is None and store.cache_backed:
                settings = ExtractSettings(
                    batch_size=ctx.batch_size, num_workers=ctx.num_workers, progress=ctx.progress
                )
                store = add_parts(
                    ctx.cache, store, ctx.model, ctx.dataset.split("train"), ctx.device, {"energy"}, settings
                )
            found = store.energies()
            if found is not None:
                E, layers = found
                self._features[ctx.model_key] = UnitFeatures(
                    store.path, E, [UnitLayer(**layer) for layer in layers]
                )
        if ctx.model_key not in self._features:

            def compute(folder: Path) -> None:
                extract_unit_features(
                    ctx.model,
                    ctx.dataset.split("train"),
                    folder,
                    ctx.device,
                    batch_size=ctx.batch_size,
                    num_workers=ctx.num_workers,
                    progress=ctx.progress,
                )

            path, _ = ctx.cache.get_or_compute(
                "unit_features", unit_features_spec(ctx.model_key), compute, record=record
            )
            feats = UnitFeatures.open(path)
            labels = np.load(path / "labels.npy")
            if not np.array_equal(labels, ctx.train.labels):
                raise ValueError("vebi: the unit features' labels do not match the train activations")
            self._features[ctx.model_key] = feats
        return self._features[ctx.model_key]

    def store_parts(self, split: str) -> frozenset[str]:
        """Args:
            split: ``train`` or ``val``.

        Returns:
            The train split's unit energies (``energy``); VEBI's maps and ablations are forward passes
            over val images, so it reads no stored maps.
        """
        return frozenset({"energy"}) if split == "train" else frozenset()

    def prepare(self, ctx: InterpretContext) -> dict[str, Any]:
        """Compute (or load) the train split's unit features before any timed fit.

        Args:
            ctx: the context.

        Returns:
            ``vebi_units_total`` and ``vebi_layers`` (number of unit layers).
        """
        feats = self.unit_features(ctx, record=True)
        return {"vebi_units_total": feats.units, "vebi_layers": len(feats.layers)}

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, ctx: InterpretContext, indices: np.ndarray, seed: int) -> VEBIFit:
        """Relevant units of every class from some train images.

        Args:
            ctx: the context.
            indices: sorted train indices.
            seed: seed of the evaluation's random-unit control (the lasso is deterministic).

        Returns:
            The fit.
        """
        indices = np.sort(np.asarray(indices, dtype=np.int64))
        if len(indices) == 0:
            raise ValueError("vebi: no train samples selected")
        feats = self.unit_features(ctx)
        num_classes = int(ctx.dataset.num_classes)
        # On a GPU the Gram products run there; on the CPU BLAS syrk does half the flops of a torch product.
        gram_device = ctx.device if ctx.device.type != "cpu" else None
        gram, xy = accumulate_gram(
            feats.E, indices, ctx.train.preds[indices], num_classes, self.gram_batch, device=gram_device
        )
        units, weights, saturated = {}, {}, {}
        # Only the dataset's chosen classes (dataset.classes) get relevant units.
        for c in ctx.dataset.class_ids:
            sol = positive_lasso_l1(gram, xy[:, c], len(indices), self.mu, working_set=self.working_set)
            units[c], weights[c], saturated[c] = sol.units, sol.weights, sol.saturated
        return VEBIFit(feats.layers, units, weights, saturated, self.mu, int(seed), len(indices))

    # --------------------------------------------------------------------------------- forward passes
    def _staged_model(self, ctx: InterpretContext, sample: torch.Tensor) -> StagedModel:
        if id(ctx.model) not in self._staged:
            self._staged[id(ctx.model)] = StagedModel(ctx.model, sample[:1])
        return self._staged[id(ctx.model)]

    def _capture(
        self, ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, units: np.ndarray
    ) -> np.ndarray:
        """Pooled maps of some units (see :func:`.vebi_capture.pooled_maps`)."""
        return pooled_maps(ctx, fit, indices, units)

    def _capture_layers(
        self, ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, wanted: dict[int, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """Maps at each layer's own resolution (see :func:`.vebi_capture.layer_maps`)."""
        return layer_maps(ctx, fit, indices, wanted)

    # ------------------------------------------------------------------------------------------ maps
    def maps(self, fit: VEBIFit, ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
        """Args:
            fit: the fit.
            ctx: the context.
            indices: val indices of one class.

        Returns:
            The class's relevant units' maps, pooled to the last conv block's size, by decreasing weight
            (len*h*w x k); one zero column when the class has no unit.
        """
        units = fit.top(int(ctx.val.labels[indices[0]]))
        if len(units) == 0:
            return empty_maps(ctx, indices)
        return rows(self._capture(ctx, fit, indices, units))

    def image_maps(self, fit: VEBIFit, ctx: InterpretContext, indices: np.ndarray) -> list[list[np.ndarray]]:
        """Each val image's class's relevant units' maps at their layers' own resolutions (heatmaps).

        Args:
            fit: the fit.
            ctx: the context.
            indices: val indices (any classes).

        Returns:
            Per image, one (units, h, w) group per layer.
        """
        return image_unit_maps(ctx, fit, indices)

    def unit_maps(
        self, fit: VEBIFit, ctx: InterpretContext, indices: np.ndarray, units: np.ndarray
    ) -> np.ndarray:
        """Args:
            fit: the fit.
            ctx: the context.
            indices: val indices.
            units: global unit indices, all of one layer.

        Returns:
            (len(indices), len(units), h, w) maps at the layer's resolution.
        """
        groups = native_unit_maps(ctx, fit, indices, units)
        if len(groups) != 1:
            raise ValueError("vebi unit_maps: the units must belong to one layer")
        return next(iter(groups.values()))

    def paired_maps(
        self,
        fit_full: VEBIFit,
        fit_coreset: VEBIFit,
        ctx: InterpretContext,
        indices: np.ndarray,
        ctx_other: InterpretContext | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both fits' pooled display maps of one class with the same number of units: the top-N by weight
        of each across layers, N = the smaller count. For figures only: Phi compares the fits layer by
        layer (:meth:`paired_phi`), never these cross-layer columns.

        Args:
            fit_full: the full-data fit.
            fit_coreset: a coreset fit (or another model's fit, see ``ctx_other``).
            ctx: the context of ``fit_full``.
            indices: val indices of one class.
            ctx_other: the context of ``fit_coreset`` when it belongs to another model (the null
                reference); None = ``ctx``.

        Returns:
            (Z, Z'), each (len*h*w x N).
        """
        c = int(ctx.val.labels[indices[0]])
        n = min(len(fit_full.top(c)), len(fit_coreset.top(c)))
        if n == 0:
            empty = empty_maps(ctx, indices)
            return empty, empty.copy()
        a, b = fit_full.top(c, n), fit_coreset.top(c, n)
        if ctx_other is not None and ctx_other.model is not ctx.model:
            z_other = self._capture(ctx_other, fit_coreset, indices, b)
            return rows(self._capture(ctx, fit_full, indices, a)), rows(z_other)
        # One forward pass serves both sides when they share the model.
        union = np.unique(np.concatenate([a, b]))
        z = self._capture(ctx, fit_full, indices, union)
        return rows(z[:, np.searchsorted(union, a)]), rows(z[:, np.searchsorted(union, b)])

    # ------------------------------------------------------------------------------ similarity
    #: The units compared per layer for one class (:func:`.vebi_similarity.layer_pairs`).
    layer_pairs = staticmethod(layer_pairs)

    #: Phi of one class, layer by layer (:func:`.vebi_similarity.layer_phi`; the base class's
    #: :meth:`Interpreter.paired_phi` contract).
    paired_phi = staticmethod(layer_phi)

    # ------------------------------------------------------------------------------------ evaluation
    def evaluate(self, fit: VEBIFit, ctx: InterpretContext) -> dict[str, float]:
        """Accuracy with each val image's class's relevant units zeroed, and the random-unit control.

        Args:
            fit: the fit.
            ctx: the context.

        Returns:
            See :func:`~coreset_interp.interpreters.vebi_ablation.ablation_scores`.
        """
        return ablation_scores(ctx, lambda x: self._staged_model(ctx, x), fit, self.random_draws)

    # ------------------------------------------------------------------------------------ reporting
    def describe(self, fit: VEBIFit) -> dict[str, Any]:
        """Returns:
        Units per class and per layer (the paper's Fig. 3 left), mu and saturation.
        """
        per_layer = {layer.key: 0 for layer in fit.layers}
        for units in fit.units.values():
            calls, _ = fit.unit_positions(units)
            for call in calls:
                per_layer[fit.layers[int(call)].key] += 1
        counts = {str(c): len(u) for c, u in sorted(fit.units.items())}
        return {
            "vebi_mu": fit.mu,
            "vebi_units_per_class": counts,
            "vebi_units_mean": float(np.mean(list(counts.values()))) if counts else 0.0,
            "vebi_units_per_layer": per_layer,
            "vebi_saturated_classes": int(sum(fit.saturated.values())),
        }

    def compare(self, fit_full: VEBIFit, fit_coreset: VEBIFit) -> dict[str, Any]:
        """Per layer, the percentage of the coreset's relevant units (as (class, unit) pairs) that the
        full-data fit also found for the same class (the paper's Fig. 3 right); None for a layer where
        the coreset found no unit.

        Args:
            fit_full: the full-data fit.
            fit_coreset: a coreset fit.

        Returns:
            ``vebi_coverage_per_layer`` and the overall ``vebi_coverage``.
        """
        found = {layer.key: 0 for layer in fit_coreset.layers}
        shared = dict.fromkeys(found, 0)
        for c, units in fit_coreset.units.items():
            full = set(fit_full.top(c).tolist())
            calls, _ = fit_coreset.unit_positions(units)
            for unit, call in zip(units.tolist(), calls.tolist(), strict=True):
                key = fit_coreset.layers[call].key
                found[key] += 1
                shared[key] += int(unit in full)
        total = sum(found.values())
        return {
            "vebi_coverage_per_layer": {
                k: (100.0 * shared[k] / found[k] if found[k] else None) for k in found
            },
            "vebi_coverage": 100.0 * sum(shared.values()) / total if total else None,
        }
