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

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from coreset_interp.interpreters.base import ClassPhi, FigureHook, InterpretContext, Interpreter
from coreset_interp.interpreters.vebi_lasso import accumulate_gram, positive_lasso_l1
from coreset_interp.interpreters.vebi_maps import image_unit_maps, native_unit_maps
from coreset_interp.interpreters.vebi_units import (
    ReluCalls,
    StagedModel,
    StopForward,
    UnitFeatures,
    UnitLayer,
    extract_unit_features,
    unit_features_spec,
)

log = logging.getLogger(__name__)


@dataclass
class VEBIFit:
    """The relevant units of every class.

    Attributes:
        layers: the unit layers (ReLU calls) of the model.
        units: per class, global unit indices by decreasing lasso weight.
        weights: per class, the matching weights.
        saturated: per class, True when the positive lasso path ended before ||w||_1 reached mu.
        mu: the L1 budget.
        seed: the fit's seed (seeds the random-unit control of the evaluation).
        n_samples: train images the fit used.
    """

    layers: list[UnitLayer]
    units: dict[int, np.ndarray]
    weights: dict[int, np.ndarray]
    saturated: dict[int, bool]
    mu: float
    seed: int
    n_samples: int
    _offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = np.asarray([layer.offset for layer in self.layers], dtype=np.int64)

    def unit_positions(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Args:
            units: global unit indices.

        Returns:
            (call index, channel) of each unit.
        """
        units = np.asarray(units, dtype=np.int64)
        calls = np.searchsorted(self._offsets, units, side="right") - 1
        return calls, units - self._offsets[calls]

    def by_layer(self, units: np.ndarray) -> dict[int, np.ndarray]:
        """Args:
            units: global unit indices.

        Returns:
            call index -> sorted channels of those units in that call.
        """
        calls, channels = self.unit_positions(units)
        return {int(c): np.sort(channels[calls == c]) for c in np.unique(calls)}

    def top(self, c: int, n: int | None = None) -> np.ndarray:
        """Args:
            c: a class.
            n: how many (None = all).

        Returns:
            The class's top-``n`` units by weight (empty for a class without units).
        """
        units = self.units.get(int(c), np.zeros(0, dtype=np.int64))
        return units if n is None else units[:n]


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

    name = "vebi"
    paired = True
    # Fig. 3 (units per layer and their coverage) from the keys describe() and compare() write.
    figure_hook = FigureHook(
        layer_units="vebi_units_per_layer",
        layer_coverage="vebi_coverage_per_layer",
        layer_title="VEBI: relevant units per layer and intersection coverage (Fig. 3)",
        intact_reference=True,
        accuracy_label="after ablation",
    )

    def __init__(
        self, mu: float = 50.0, random_draws: int = 5, working_set: int = 128, gram_batch: int = 1024
    ) -> None:
        if not mu > 0:
            raise ValueError(f"vebi mu must be > 0, got {mu}")
        if random_draws < 1:
            raise ValueError(f"vebi random_draws must be >= 1, got {random_draws}")
        super().__init__(mu=float(mu), random_draws=int(random_draws))
        self.mu = float(mu)
        self.random_draws = int(random_draws)
        # Neither changes the result, so neither is part of the cache key (params()).
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
    def _images(self, ctx: InterpretContext, indices: np.ndarray) -> Iterator[torch.Tensor]:
        data = Subset(ctx.dataset.split("val"), np.asarray(indices).tolist())
        loader = DataLoader(data, batch_size=ctx.batch_size, shuffle=False, num_workers=ctx.num_workers)
        for x, _ in loader:
            yield x.to(ctx.device)

    def _staged_model(self, ctx: InterpretContext, sample: torch.Tensor) -> StagedModel:
        if id(ctx.model) not in self._staged:
            self._staged[id(ctx.model)] = StagedModel(ctx.model, sample[:1])
        return self._staged[id(ctx.model)]

    def _capture(
        self, ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, units: np.ndarray
    ) -> np.ndarray:
        """Pooled activation maps of some units for some val images.

        Returns:
            (n, len(units), h, w) float32, channels in the order of ``units``.
        """
        _, h, w = ctx.val.map_shape
        wanted = fit.by_layer(units)
        calls, channels = fit.unit_positions(units)
        sel = {call: torch.as_tensor(ch, dtype=torch.int64) for call, ch in wanted.items()}
        out: list[np.ndarray] = []
        for x in self._images(ctx, indices):
            got = _capture_calls(
                ctx.model,
                x,
                {
                    call: lambda a, s=s: F.adaptive_avg_pool2d(
                        a.index_select(1, s.to(a.device)).float(), (h, w)
                    )
                    for call, s in sel.items()
                },
            )
            cols = [
                got[int(c)][:, int(np.searchsorted(wanted[int(c)], ch))]
                for c, ch in zip(calls, channels, strict=True)
            ]
            out.append(torch.stack(cols, dim=1).cpu().numpy())
        return np.concatenate(out)

    @staticmethod
    def _rows(z: np.ndarray) -> np.ndarray:
        # (n, k, h, w) -> image-major positions as rows, the layout of ActivationStore.positions.
        return z.transpose(0, 2, 3, 1).reshape(-1, z.shape[1])

    def _empty(self, ctx: InterpretContext, indices: np.ndarray) -> np.ndarray:
        # One constant column: a side without units has no variance, so Phi reports it as missing.
        _, h, w = ctx.val.map_shape
        return np.zeros((len(indices) * h * w, 1), dtype=np.float32)

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
            return self._empty(ctx, indices)
        return self._rows(self._capture(ctx, fit, indices, units))

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
            empty = self._empty(ctx, indices)
            return empty, empty.copy()
        a, b = fit_full.top(c, n), fit_coreset.top(c, n)
        if ctx_other is not None and ctx_other.model is not ctx.model:
            z_other = self._capture(ctx_other, fit_coreset, indices, b)
            return self._rows(self._capture(ctx, fit_full, indices, a)), self._rows(z_other)
        # One forward pass serves both sides when they share the model.
        union = np.unique(np.concatenate([a, b]))
        z = self._capture(ctx, fit_full, indices, union)
        return self._rows(z[:, np.searchsorted(union, a)]), self._rows(z[:, np.searchsorted(union, b)])

    # ------------------------------------------------------------------------------ similarity
    @staticmethod
    def layer_pairs(
        fit_full: VEBIFit, fit_other: VEBIFit, c: int
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The units compared per layer for one class.

        Args:
            fit_full: the full-data fit.
            fit_other: the other fit (same architecture).
            c: the class.

        Returns:
            call index -> (full fit's, other fit's) top-N global unit indices of that layer by weight,
            N = the smaller count in that layer; only layers where both fits have a unit of class ``c``.
        """
        if [la.key for la in fit_full.layers] != [la.key for la in fit_other.layers]:
            raise ValueError("vebi: the two fits have different unit layers (different architectures)")
        a, b = fit_full.top(c), fit_other.top(c)
        calls_a, _ = fit_full.unit_positions(a)
        calls_b, _ = fit_other.unit_positions(b)
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for call in sorted(set(calls_a.tolist()) & set(calls_b.tolist())):
            # top() is by decreasing weight, so the first units of a layer are its top ones.
            ua, ub = a[calls_a == call], b[calls_b == call]
            n = min(len(ua), len(ub))
            out[int(call)] = (ua[:n], ub[:n])
        return out

    def _capture_layers(
        self, ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, wanted: dict[int, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """Activation maps of some channels of some layers at each layer's own resolution.

        Args:
            ctx: the context (its model runs the forward passes).
            fit: a fit (its unit layers).
            indices: val indices.
            wanted: call index -> sorted channels of that call.

        Returns:
            call index -> (n, len(channels), h_call, w_call) float32.
        """
        sel = {call: torch.as_tensor(ch, dtype=torch.int64) for call, ch in wanted.items()}
        parts: dict[int, list[np.ndarray]] = {call: [] for call in wanted}
        for x in self._images(ctx, indices):
            # index_select copies: the output of an in-place ReLU is modified later in the pass.
            got = _capture_calls(
                ctx.model,
                x,
                {
                    call: lambda a, s=s: a.index_select(1, s.to(a.device)).float().cpu()
                    for call, s in sel.items()
                },
            )
            for call, t in got.items():
                parts[call].append(t.numpy())
        return {call: np.concatenate(p) for call, p in parts.items()}

    def paired_phi(
        self,
        fit_full: VEBIFit,
        fit_coreset: VEBIFit,
        ctx: InterpretContext,
        indices: np.ndarray,
        alpha: float,
        ctx_other: InterpretContext | None = None,
    ) -> ClassPhi:
        """Phi of one class, layer by layer (see the module docstring).

        Args:
            fit_full: the full-data fit.
            fit_coreset: the other fit (a coreset's, or the null reference's on another model).
            ctx: the context of ``fit_full``.
            indices: val indices of one class.
            alpha: partial-whitening alpha.
            ctx_other: the context of ``fit_coreset`` when it belongs to another model; None = ``ctx``.

        Returns:
            phi_c = the mean of the defined per-layer phi (None when no layer is common to both fits or
            none is defined), and ``per_layer`` = layer key -> phi (None where a side has no variance).
        """
        from coreset_interp.metrics.shape import angular_distance_prepared, prepare

        c = int(ctx.val.labels[indices[0]])
        pairs = self.layer_pairs(fit_full, fit_coreset, c)
        if not pairs:
            log.warning("vebi: class %d has no layer with relevant units in both fits; phi is missing", c)
            return ClassPhi(None, {})
        chans_a = {call: fit_full.unit_positions(ua)[1] for call, (ua, _) in pairs.items()}
        chans_b = {call: fit_coreset.unit_positions(ub)[1] for call, (_, ub) in pairs.items()}
        if ctx_other is None or ctx_other.model is ctx.model:
            # One forward pass serves both sides when they share the model.
            union = {call: np.union1d(chans_a[call], chans_b[call]) for call in pairs}
            maps_a = self._capture_layers(ctx, fit_full, indices, union)
            maps_b = maps_a
            pos_a = {call: np.searchsorted(union[call], chans_a[call]) for call in pairs}
            pos_b = {call: np.searchsorted(union[call], chans_b[call]) for call in pairs}
        else:
            sorted_a = {call: np.sort(ch) for call, ch in chans_a.items()}
            sorted_b = {call: np.sort(ch) for call, ch in chans_b.items()}
            maps_a = self._capture_layers(ctx, fit_full, indices, sorted_a)
            maps_b = self._capture_layers(ctx_other, fit_coreset, indices, sorted_b)
            pos_a = {call: np.searchsorted(sorted_a[call], chans_a[call]) for call in pairs}
            pos_b = {call: np.searchsorted(sorted_b[call], chans_b[call]) for call in pairs}
        per_layer: dict[str, float | None] = {}
        for call in pairs:
            z_a = self._rows(maps_a[call][:, pos_a[call]]).astype(np.float64)
            z_b = self._rows(maps_b[call][:, pos_b[call]]).astype(np.float64)
            phi = angular_distance_prepared(prepare(z_a, alpha), prepare(z_b, alpha))
            per_layer[fit_full.layers[call].key] = float(phi) if np.isfinite(phi) else None
        defined = [v for v in per_layer.values() if v is not None]
        return ClassPhi(float(np.mean(defined)) if defined else None, per_layer)

    # ------------------------------------------------------------------------------------ evaluation
    def _random_units(self, fit: VEBIFit, c: int, draw: int) -> np.ndarray:
        """As many random units per layer as class ``c`` has relevant ones there, among its other units."""
        rng = np.random.default_rng([fit.seed, draw, c])
        relevant = fit.by_layer(fit.top(c))
        picked = []
        for call, chans in relevant.items():
            layer = fit.layers[call]
            others = np.setdiff1d(np.arange(layer.channels), chans)
            take = rng.choice(others, size=min(len(chans), len(others)), replace=False)
            picked.append(layer.offset + np.sort(take))
        return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)

    def _ablated_logits(
        self, ctx: InterpretContext, fit: VEBIFit, indices: np.ndarray, unit_sets: list[np.ndarray]
    ) -> list[np.ndarray]:
        """Logits of some val images with each set of units zeroed in turn; the network up to the first
        stage holding a zeroed unit runs once and is shared by all sets."""
        results: list[list[np.ndarray]] = [[] for _ in unit_sets]
        masks = [fit.by_layer(u) for u in unit_sets]
        for x in self._images(ctx, indices):
            staged = self._staged_model(ctx, x)
            first_call = min((min(m) for m in masks if m), default=staged.n_calls)
            start = staged.stage_of_call(first_call)
            with torch.no_grad():
                h0 = staged.prefix(x, start)
                for k, mask in enumerate(masks):
                    zeroed = {c: torch.as_tensor(ch, device=x.device) for c, ch in mask.items()}

                    def ablate(i: int, a: torch.Tensor, zeroed: dict[int, torch.Tensor] = zeroed) -> Any:
                        if i not in zeroed:
                            return None
                        out = a.clone()
                        out[:, zeroed[i]] = 0
                        return out

                    with ReluCalls(ctx.model, ablate) as hooks:
                        hooks.reset(staged.calls_before(start))
                        logits = staged.suffix(h0, start)
                        hooks.check(staged.n_calls)
                    results[k].append(logits.float().cpu().numpy())
        return [np.concatenate(r) for r in results]

    def evaluate(self, fit: VEBIFit, ctx: InterpretContext) -> dict[str, float]:
        """Accuracy with each val image's class's relevant units zeroed, and the random-unit control.

        Args:
            fit: the fit.
            ctx: the context.

        Returns:
            ``accuracy`` (ablated), ``intact_accuracy``, ``ablation_drop`` (intact minus ablated accuracy),
            ``ablation_prob_drop`` (mean drop of the true class's softmax probability), and
            ``random_ablation_accuracy``, ``random_ablation_drop``, ``random_ablation_prob_drop`` (means
            over ``random_draws`` draws).
        """
        labels = ctx.val.labels
        intact = torch.from_numpy(np.asarray(ctx.val.logits, dtype=np.float32))
        p_intact = torch.softmax(intact, dim=1).numpy()[np.arange(len(labels)), labels]
        ablated = np.zeros(len(labels), dtype=bool)
        p_ablated = np.zeros(len(labels))
        rand_correct = np.zeros((self.random_draws, len(labels)), dtype=bool)
        p_rand = np.zeros((self.random_draws, len(labels)))
        for c in ctx.val.classes():
            idx = ctx.val.class_indices(int(c))
            sets = [fit.top(int(c))] + [self._random_units(fit, int(c), d) for d in range(self.random_draws)]
            if len(sets[0]) == 0:
                outs = [np.asarray(ctx.val.logits[idx], dtype=np.float32)] * len(sets)
            else:
                outs = self._ablated_logits(ctx, fit, idx, sets)
            probs = [torch.softmax(torch.from_numpy(o), dim=1).numpy()[:, int(c)] for o in outs]
            ablated[idx] = outs[0].argmax(1) == c
            p_ablated[idx] = probs[0]
            for d in range(self.random_draws):
                rand_correct[d, idx] = outs[d + 1].argmax(1) == c
                p_rand[d, idx] = probs[d + 1]
        intact_acc = float(np.mean(ctx.val.preds == labels))
        acc = float(ablated.mean())
        rand_acc = rand_correct.mean(axis=1)
        return {
            "accuracy": acc,
            "intact_accuracy": intact_acc,
            "ablation_drop": intact_acc - acc,
            "ablation_prob_drop": float(np.mean(p_intact - p_ablated)),
            "random_ablation_accuracy": float(rand_acc.mean()),
            "random_ablation_drop": float(np.mean(intact_acc - rand_acc)),
            "random_ablation_prob_drop": float(np.mean(p_intact[None, :] - p_rand)),
        }

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


def _capture_calls(
    model: torch.nn.Module, x: torch.Tensor, take: dict[int, Callable[[torch.Tensor], torch.Tensor]]
) -> dict[int, torch.Tensor]:
    """One forward pass of a batch, stopped after the last wanted ReLU call.

    Args:
        model: the adapter.
        x: the batch (on the model's device).
        take: ReLU call index -> what to keep of that call's output.

    Returns:
        call index -> ``take[call](output)``.
    """
    last = max(take)
    got: dict[int, torch.Tensor] = {}

    def grab(i: int, a: torch.Tensor) -> None:
        if i in take:
            got[i] = take[i](a)
        if i == last:
            raise StopForward

    with torch.no_grad(), ReluCalls(model, grab) as hooks:
        hooks.reset()
        with contextlib.suppress(StopForward):
            model(x)
    if set(got) != set(take):
        raise RuntimeError(f"vebi: ReLU calls {sorted(set(take) - set(got))} never happened")
    return got
