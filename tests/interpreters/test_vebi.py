"""VEBI: ReLU calls hooked by call order, unit energies, the Gram-form positive mu-lasso, a network whose
relevant units are known by construction, and the embedded default end to end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.linear_model import lars_path

from coreset_interp.interpreters import InterpretContext, get_interpreter
from coreset_interp.interpreters.vebi import VEBI, VEBIFit
from coreset_interp.interpreters.vebi_lasso import LowerGram, accumulate_gram, positive_lasso_l1
from coreset_interp.interpreters.vebi_units import (
    ReluCalls,
    StagedModel,
    probe_layers,
    unit_energy,
)
from coreset_interp.metrics.shape import angular_distance
from coreset_interp.models import build_architecture
from coreset_interp.models.adapter import ModelAdapter
from coreset_interp.selectors import get_selector
from tests.helpers import CLASSES, SIZE, TinyNet, tiny_context

# --------------------------------------------------------------------------------------- hooks, units


@pytest.mark.parametrize(
    ("arch", "calls", "units", "per_module"),
    [
        # stem + 8 BasicBlocks x 2 calls of the block's one ReLU module
        ("resnet18", 17, 3904, {"relu": 1, "layer1.0.relu": 2, "layer4.1.relu": 2}),
        # stem + 16 Bottlenecks x 3 calls
        ("resnet50", 49, 22720, {"relu": 1, "layer1.0.relu": 3, "layer4.2.relu": 3}),
        # 16 distinct conv ReLU modules (the small stem's classifier has none)
        ("vgg19", 16, 5504, {"features.1": 1, "features.35": 1}),
    ],
)
def test_hooks_fire_once_per_relu_call_and_stages_reproduce_the_model(
    arch: str, calls: int, units: int, per_module: dict[str, int]
) -> None:
    model = build_architecture(arch, num_classes=10, stem="small", seed=0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = probe_layers(model, x[:1])
    assert len(layers) == calls
    assert sum(layer.channels for layer in layers) == units
    assert [layer.offset for layer in layers] == list(np.cumsum([0] + [la.channels for la in layers])[:-1])
    names = [layer.module for layer in layers]
    for module, count in per_module.items():
        assert names.count(module) == count
    # The counter restarts at every forward pass: two passes, the same call numbers.
    seen: list[int] = []
    with torch.no_grad(), ReluCalls(model, lambda i, a: seen.append(i)) as hooks:
        for _ in range(2):
            hooks.reset()
            ref = model(x)
            hooks.check(calls)
    assert seen == list(range(calls)) * 2
    # Hooks are removed on exit.
    with torch.no_grad():
        model(x)
    assert len(seen) == 2 * calls
    # The staged forward pass (used to share the prefix between ablations) reproduces the model.
    with torch.no_grad():
        staged = StagedModel(model, x[:1])
        for start in (0, len(staged.stages) // 2, len(staged.stages) - 1):
            out = staged.suffix(staged.prefix(x, start), start)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert staged.n_calls == calls
    for call in range(calls):
        s = staged.stage_of_call(call)
        assert staged.first_call[s] <= call
        assert s + 1 == len(staged.stages) or call < staged.first_call[s + 1]


def test_unit_energy_is_each_layers_share_of_squared_activation() -> None:
    a = torch.zeros(2, 3, 2, 2)
    a[0, 0] = 1.0  # energy 4
    a[0, 2, 0, 0] = 2.0  # energy 4
    e = unit_energy(a)
    torch.testing.assert_close(e[0], torch.tensor([0.5, 0.0, 0.5]))
    # An image whose maps are all zero has zero features, not NaN.
    torch.testing.assert_close(e[1], torch.zeros(3))


# ------------------------------------------------------------------------------------------ the lasso


def _positive_problem(seed: int, n: int = 60, units: int = 25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, units)) ** 3  # non-negative, like unit energies
    y = (x[:, :3] @ np.array([2.0, 1.0, 0.5]) + 0.05 * rng.standard_normal(n) > 0.4).astype(float)
    return x, y


def _direct(x: np.ndarray, y: np.ndarray, mu: float) -> np.ndarray:
    _, _, coefs = lars_path(x, y, method="lasso", positive=True)
    l1 = coefs.sum(axis=0)
    k = int(np.searchsorted(l1, mu))
    assert 0 < k < len(l1), "mu must fall inside the path for this check"
    t = (mu - l1[k - 1]) / (l1[k] - l1[k - 1])
    return coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])


def test_gram_accumulated_in_batches_equals_the_product() -> None:
    x, _ = _positive_problem(0)
    targets = np.arange(len(x)) % 3
    rows = np.arange(0, len(x), 2)
    gram, xy = accumulate_gram(x.astype(np.float32), rows, targets[rows], 3, batch=7)
    xs = x[rows].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(gram.full(), xs.T @ xs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xy, xs.T @ np.eye(3)[targets[rows]], rtol=1e-12, atol=1e-12)
    full = gram.full()
    cols = np.array([0, 5, 24])
    np.testing.assert_array_equal(gram.columns(cols), full[:, cols])
    np.testing.assert_array_equal(gram.block(cols), full[np.ix_(cols, cols)])


@pytest.mark.parametrize(("seed", "mu", "working_set"), [(0, 0.5, 4), (1, 1.5, 2), (2, 1.0, 64)])
def test_gram_form_solution_equals_the_direct_solution(seed: int, mu: float, working_set: int) -> None:
    x, y = _positive_problem(seed)
    gram = LowerGram(np.asfortranarray(np.tril(x.T @ x)))
    sol = positive_lasso_l1(gram, x.T @ y, len(x), mu, working_set=working_set)
    w = np.zeros(x.shape[1])
    w[sol.units] = sol.weights
    np.testing.assert_allclose(w, _direct(x, y, mu), atol=1e-9)
    assert not sol.saturated and abs(sol.l1 - mu) < 1e-9
    assert np.all(np.diff(sol.weights) <= 0) and np.all(sol.weights > 0)
    # The constrained problem, solved by a generic optimiser, reaches no lower objective.
    res = minimize(
        lambda v: np.sum((y - x @ v) ** 2),
        np.full(x.shape[1], mu / x.shape[1]),
        jac=lambda v: -2 * x.T @ (y - x @ v),
        bounds=[(0, None)] * x.shape[1],
        constraints=[{"type": "ineq", "fun": lambda v: mu - v.sum(), "jac": lambda v: -np.ones_like(v)}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    assert np.sum((y - x @ w) ** 2) <= res.fun + 1e-7


def test_lasso_reports_saturation_and_empty_targets() -> None:
    x, y = _positive_problem(3)
    gram = LowerGram(np.asfortranarray(np.tril(x.T @ x)))
    sol = positive_lasso_l1(gram, x.T @ y, len(x), 1e6)
    assert sol.saturated and sol.l1 < 1e6 and len(sol.units) >= 1
    none = positive_lasso_l1(gram, np.zeros(x.shape[1]), len(x), 1.0)
    assert len(none.units) == 0


# --------------------------------------------------------------------- a network with known relevant units


@pytest.fixture()
def tiny(tmp_path: Path) -> InterpretContext:
    return tiny_context(tmp_path)


def test_vebi_finds_the_unit_that_carries_the_class(tiny: InterpretContext) -> None:
    vebi = VEBI(mu=1.0, random_draws=5)
    assert vebi.prepare(tiny) == {"vebi_units_total": 9, "vebi_layers": 2}
    fit = vebi.fit(tiny, np.arange(tiny.train.n), seed=0)
    assert [(la.module, la.channels) for la in fit.layers] == [("relu", 5), ("relu", 4)]
    for c in range(CLASSES):
        calls, channels = fit.unit_positions(fit.top(c))
        # The top unit is channel c of the first call; nothing constant is ever chosen.
        assert (calls[0], channels[0]) == (0, c)
        assert set(channels.tolist()) == {c}
    ev = vebi.evaluate(fit, tiny)
    assert ev["intact_accuracy"] == 1.0
    # Zeroing the class's own channel destroys the evidence; zeroing another channel barely matters.
    assert ev["ablation_drop"] > 0.5 and ev["accuracy"] < 0.5
    assert ev["ablation_prob_drop"] > 0.3
    assert ev["ablation_prob_drop"] > ev["random_ablation_prob_drop"] + 0.3
    assert ev["random_ablation_drop"] <= 0.1
    # Maps: the class's units pooled to the last block's size (6 x 6 here), rows = positions.
    idx = tiny.val.class_indices(1)
    z = vebi.maps(fit, tiny, idx)
    assert z.shape == (len(idx) * SIZE * SIZE, len(fit.top(1)))
    images = tiny.dataset.split("val").tensors[0][idx]
    np.testing.assert_allclose(z[:, 0], images[:, 1].reshape(-1).numpy(), rtol=1e-6)
    desc = vebi.describe(fit)
    assert desc["vebi_units_per_class"] == {str(c): len(fit.top(c)) for c in range(CLASSES)}
    assert sum(desc["vebi_units_per_layer"].values()) == sum(len(fit.top(c)) for c in range(CLASSES))


def test_vebi_top_n_rule_and_coverage(tiny: InterpretContext) -> None:
    """Protects the per-layer top-N rule: in each layer both fits keep their top-N units of the class by
    weight, N = the smaller count in that layer (the first version took the top-N across layers)."""
    vebi = VEBI(mu=1.0)
    full = vebi.fit(tiny, np.arange(tiny.train.n), seed=0)
    small = vebi.fit(tiny, np.arange(0, tiny.train.n, 3), seed=0)
    # Fake a coreset fit that found an extra, lower-weighted unit for class 0 in layer 0 (channel 3).
    small.units[0] = np.append(small.units[0], 3)
    small.weights[0] = np.append(small.weights[0], 1e-9)
    pairs = vebi.layer_pairs(full, small, 0)
    assert list(pairs) == [0]
    a, b = pairs[0]
    assert len(a) == len(b) == min(len(full.top(0)), len(small.top(0))) == 1
    assert 3 not in b.tolist()
    phi = vebi.paired_phi(full, small, tiny, tiny.val.class_indices(0), alpha=1.0)
    assert set(phi.per_layer) == {"0:relu"} and phi.phi == pytest.approx(0.0, abs=1e-6)
    cover = vebi.compare(full, small)
    assert set(cover["vebi_coverage_per_layer"]) == {"0:relu", "1:relu"}
    assert 0 < cover["vebi_coverage"] < 100  # the fake unit is not in the full fit
    assert vebi.compare(full, full)["vebi_coverage"] == 100.0


def _hand_fit(template: VEBIFit, units: dict[int, list[tuple[int, int, float]]]) -> VEBIFit:
    """A fit on the tiny network's real layers with given (call, channel, weight) units per class."""
    out_units, out_weights = {}, {}
    for c, triples in units.items():
        triples = sorted(triples, key=lambda t: -t[2])
        out_units[c] = np.asarray([template.layers[k].offset + ch for k, ch, _ in triples], dtype=np.int64)
        out_weights[c] = np.asarray([w for _, _, w in triples])
    return VEBIFit(template.layers, out_units, out_weights, dict.fromkeys(units, False), 1.0, 0, 1)


def test_vebi_phi_is_zero_per_layer_when_both_fits_find_the_same_units(tiny: InterpretContext) -> None:
    """Protects the per-layer comparison: two fits with the same units of each class in each layer (in a
    different cross-layer weight order) have phi 0 in every layer and phi_c 0, on one model and when the
    other fit's maps come from another (identical) model, the null reference's path."""
    vebi = VEBI(mu=1.0)
    template = vebi.fit(tiny, np.arange(tiny.train.n), seed=0)
    a = _hand_fit(template, {c: [(0, c, 3.0), (1, c, 2.0), (1, 3, 1.0)] for c in range(CLASSES)})
    b = _hand_fit(template, {c: [(1, 3, 3.0), (1, c, 2.5), (0, c, 0.5)] for c in range(CLASSES)})
    twin = TinyNet().eval()
    other = replace(tiny, model=ModelAdapter(twin, twin.features, twin.head, "tiny").eval())
    for c in range(CLASSES):
        idx = tiny.val.class_indices(c)
        for ctx_other in (None, other):
            res = vebi.paired_phi(a, b, tiny, idx, alpha=1.0, ctx_other=ctx_other)
            assert set(res.per_layer) == {"0:relu", "1:relu"}
            assert all(v == pytest.approx(0.0, abs=1e-6) for v in res.per_layer.values())
            assert res.phi == pytest.approx(0.0, abs=1e-6)


def test_vebi_old_pooled_cross_layer_top_n_was_positive_per_layer_is_zero(tiny: InterpretContext) -> None:
    """Protects against pairing units of different layers: the full fit ranks a layer-0 unit above a
    layer-1 unit, the other fit two layer-1 units above the same layer-0 unit. The first version's pooled
    top-N across layers (N = 2) compared {L0 ch0, L1 ch0} with {L1 ch0, L1 ch1}: phi > 0. Per layer both
    fits have the same top unit (L0 ch0; L1 ch0), so phi is 0. A class with no common layer is missing."""
    vebi = VEBI(mu=1.0)
    template = vebi.fit(tiny, np.arange(tiny.train.n), seed=0)
    full = _hand_fit(template, {0: [(0, 0, 3.0), (1, 0, 2.0)]})
    other = _hand_fit(template, {0: [(1, 0, 3.0), (1, 1, 2.0), (0, 0, 1.0)]})
    idx = tiny.val.class_indices(0)
    old = angular_distance(*vebi.paired_maps(full, other, tiny, idx), alpha=1.0)
    assert old > 0.1
    res = vebi.paired_phi(full, other, tiny, idx, alpha=1.0)
    assert res.per_layer == pytest.approx({"0:relu": 0.0, "1:relu": 0.0}, abs=1e-6)
    assert res.phi == pytest.approx(0.0, abs=1e-6)
    only_l1 = _hand_fit(template, {0: [(1, 0, 1.0)]})
    only_l0 = _hand_fit(template, {0: [(0, 0, 1.0)]})
    missing = vebi.paired_phi(only_l0, only_l1, tiny, idx, alpha=1.0)
    assert missing.phi is None and missing.per_layer == {}
    from coreset_interp.pipeline import summarise_phi

    summary = summarise_phi({0: res, 1: missing})
    assert summary["angular_distance_missing"] == 1
    assert summary["angular_distance"] == pytest.approx(0.0, abs=1e-6)
    assert summary["angular_distance_per_layer"]["1:relu"]["n_classes"] == 1


# ------------------------------------------------------------------------------------ embedded default


@pytest.fixture(scope="module")
def digits_vebi(digits_context: InterpretContext) -> tuple[VEBI, Any, Any]:
    vebi = get_interpreter("vebi")
    assert isinstance(vebi, VEBI)
    vebi.prepare(digits_context)
    ctx = digits_context
    full = vebi.fit(ctx, np.arange(ctx.train.n), seed=0)
    core = vebi.fit(ctx, get_selector("random").select(ctx.train.g, ctx.train.labels, 0.2, 0), seed=0)
    return vebi, full, core


def test_vebi_on_the_embedded_default(digits_context: InterpretContext, digits_vebi: Any) -> None:
    ctx = digits_context
    vebi, full, core = digits_vebi
    feats = vebi.unit_features(ctx)
    assert feats.E.shape == (ctx.train.n, 3904) and len(feats.layers) == 17
    np.testing.assert_allclose(
        feats.E[:5, : feats.layers[1].offset].sum(axis=1), np.ones(5), rtol=1e-5
    )  # one layer's features sum to 1
    counts = [len(full.top(c)) for c in range(10)]
    assert min(counts) >= 1 and sum(counts) >= 20  # several units per class
    idx = ctx.val.class_indices(4)
    # Phi per layer, on each layer's own maps: the layers where both fits have a unit of class 4.
    res = vebi.paired_phi(full, core, ctx, idx, alpha=1.0)
    pairs = vebi.layer_pairs(full, core, 4)
    assert set(res.per_layer) == {full.layers[k].key for k in pairs} and res.per_layer
    assert all(v is None or 0 <= v <= np.pi for v in res.per_layer.values())
    defined = [v for v in res.per_layer.values() if v is not None]
    assert res.phi == pytest.approx(np.mean(defined))
    maps = vebi._capture_layers(ctx, full, idx, {k: full.unit_positions(a)[1] for k, (a, _) in pairs.items()})
    for k, z in maps.items():
        # At the layer's own resolution, not pooled to the last block's 2 x 2.
        assert z.shape == (len(idx), len(pairs[k][0]), full.layers[k].height, full.layers[k].width)
    cover = vebi.compare(full, core)
    assert len(cover["vebi_coverage_per_layer"]) == 17


@pytest.mark.slow
def test_vebi_job_writes_complete_results(
    make_config: Callable[..., dict[str, Any]], digits_vebi: Any
) -> None:
    from coreset_interp.pipeline import run

    # Two control draws instead of five keep the test short; the evaluation is otherwise the default.
    overrides = ["interpreter=vebi", "interpreter.random_draws=2", "selector=random"]
    res = run(make_config([*overrides, "ratio.percents=[20]", "metric.null_reference=false"]))
    keys = {
        "accuracy",
        "intact_accuracy",
        "ablation_drop",
        "ablation_prob_drop",
        "random_ablation_drop",
        "random_ablation_prob_drop",
        "vebi_units_per_class",
        "vebi_units_per_layer",
    }
    full = res["full"]
    assert keys <= set(full) and full["prepare_seconds"] >= 0 and full["vebi_units_total"] == 3904
    # Zeroing each class's relevant units lowers the true-class probability more than random units do.
    assert full["intact_accuracy"] > 0.9
    assert full["ablation_prob_drop"] > full["random_ablation_prob_drop"]
    (entry,) = res["ratios"]
    assert keys | {"vebi_coverage_per_layer", "angular_distance", "fit_seconds"} <= set(entry)
    assert entry["angular_distance"] is not None and 0 <= entry["angular_distance"] <= np.pi
    assert len(entry["vebi_coverage_per_layer"]) == 17
    # Phi is per layer: every rho carries the per-layer means and class counts.
    per_layer = entry["angular_distance_per_layer"]
    assert per_layer and all(v["n_classes"] >= 1 for v in per_layer.values())
    assert set(per_layer) <= set(entry["vebi_coverage_per_layer"])
    # The lasso is deterministic: the job finds the units the direct full-data fit found.
    _, fit_full, _ = digits_vebi
    assert full["vebi_units_per_class"] == {str(c): len(fit_full.top(c)) for c in range(10)}
