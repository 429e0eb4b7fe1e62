"""ICE: per-class NMF of last-conv maps; reconstructions are the interpretation maps the head classifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_interp.interpreters import InterpretContext, get_interpreter
from coreset_interp.interpreters.ice import ICE
from coreset_interp.models.activations import ActivationStore
from coreset_interp.pipeline import fit_interpreter
from coreset_interp.selectors import get_selector

D, H, W, RANK = 8, 3, 3, 3


def _low_rank_store(path: Path, n_per_class: int, rng: np.random.Generator, bases: list[np.ndarray]):
    """Maps whose positions are exact non-negative rank-3 mixtures of each class's own basis."""
    maps, labels = [], []
    for c, basis in enumerate(bases):
        scores = rng.random((n_per_class * H * W, RANK))
        rows = scores @ basis  # (positions, D)
        maps.append(rows.reshape(n_per_class, H, W, D).transpose(0, 3, 1, 2))
        labels += [c] * n_per_class
    maps_arr = np.concatenate(maps).astype(np.float32)
    labels_arr = np.asarray(labels, dtype=np.int64)
    return ActivationStore(
        path=path,
        maps=maps_arr,
        g=maps_arr.mean(axis=(2, 3)),
        labels=labels_arr,
        preds=labels_arr.copy(),
        logits=np.zeros((len(labels_arr), len(bases)), dtype=np.float32),
    )


@pytest.fixture()
def synthetic(tmp_path: Path) -> InterpretContext:
    rng = np.random.default_rng(0)
    # Class 0 lives on channels 0-3, class 1 on channels 4-7: disjoint supports.
    bases = []
    for c in range(2):
        b = np.zeros((RANK, D))
        b[:, 4 * c : 4 * c + 4] = rng.random((RANK, 4)) + 0.1
        bases.append(b)
    # ICE only reads the activation stores for fit and maps; no model is needed here.
    return InterpretContext(
        model=None,  # type: ignore[arg-type]
        dataset=None,  # type: ignore[arg-type]
        train=_low_rank_store(tmp_path, 20, rng, bases),
        val=_low_rank_store(tmp_path, 5, rng, bases),
        device=torch.device("cpu"),
        cache=None,  # type: ignore[arg-type]
        model_key="synthetic",
    )


def _rel_err(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def test_nmf_recovers_a_non_negative_low_rank_problem(synthetic: InterpretContext) -> None:
    ctx = synthetic
    ice = ICE(n_components=RANK, max_iter=1000)
    fit = ice.fit(ctx, np.arange(ctx.train.n), seed=0)
    assert sorted(fit.nmfs) == [0, 1] and fit.scope == "class"
    for c in (0, 1):
        idx = ctx.val.class_indices(c)
        z = ice.maps(fit, ctx, idx)
        truth = ctx.val.positions(idx)
        assert z.shape == truth.shape == (5 * H * W, D) and z.dtype == np.float32
        # Unseen val images of the class are rebuilt from the class's components almost exactly.
        assert _rel_err(z, truth) < 1e-2
        # The components stay on the class's own channels.
        comps = fit.nmfs[c].components_
        other = slice(4, 8) if c == 0 else slice(0, 4)
        assert np.abs(comps[:, other]).max() < 1e-3 * np.abs(comps).max()
    # Another class's components cannot explain the images: (almost) nothing is reconstructed.
    idx0 = ctx.val.class_indices(0)
    wrong = ICE._reconstruct(fit.nmfs[1], ctx.val.positions(idx0))
    assert _rel_err(wrong, ctx.val.positions(idx0)) > 0.9


def test_n_components_clamps_to_positions_and_channels(synthetic: InterpretContext) -> None:
    ctx = synthetic
    # More components than channels: capped at D = 8.
    fit = ICE(n_components=20, max_iter=50).fit(ctx, np.arange(ctx.train.n), seed=0)
    assert {n.n_components_ for n in fit.nmfs.values()} == {D}
    # One image per class has H*W = 9 positions; ask for 12 components: capped at 8 (channels) here.
    one_each = np.array([0, 20])
    fit1 = ICE(n_components=12, max_iter=50).fit(ctx, one_each, seed=0)
    assert {n.n_components_ for n in fit1.nmfs.values()} == {min(12, H * W, D)}


def test_bad_parameters_and_empty_classes(synthetic: InterpretContext) -> None:
    with pytest.raises(ValueError, match="n_components"):
        ICE(n_components=0)
    with pytest.raises(ValueError, match="scope"):
        ICE(scope="image")
    with pytest.raises(ValueError, match="class 1 has no selected train samples"):
        ICE().fit(synthetic, np.arange(20), seed=0)
    with pytest.raises(ValueError, match="backend"):
        ICE(backend="numpy")
    with pytest.raises(ValueError, match="dtype"):
        ICE(dtype="float16")
    assert get_interpreter("ice", n_components=4).params() == {
        "n_components": 4,
        "scope": "class",
        "max_iter": 200,
        "tol": 0.0,
        "backend": "torch",
        "dtype": "float32",
    }
    # The sklearn backend keeps the first version's parameters (and with them its fits' cache keys).
    assert get_interpreter("ice", n_components=4, backend="sklearn").params() == {
        "n_components": 4,
        "scope": "class",
        "max_iter": 200,
        "tol": 0.0,
    }


@pytest.fixture(scope="module")
def coreset(digits_context) -> np.ndarray:
    # A 20 % random coreset of the digits train split: about 29 images per class.
    ctx = digits_context
    return get_selector("random").select(ctx.train.g, ctx.train.labels, 0.2, seed=0)


def test_digits_fit_maps_and_accuracy(digits_context, coreset: np.ndarray) -> None:
    ctx = digits_context
    ice = get_interpreter("ice")
    fit = ice.fit(ctx, coreset, seed=0)
    d, h, w = ctx.val.map_shape
    assert sorted(fit.nmfs) == list(range(10))
    for c in range(10):
        assert fit.nmfs[c].components_.shape == (10, d)
        idx = ctx.val.class_indices(c)
        z = ice.maps(fit, ctx, idx)
        assert z.shape == (len(idx) * h * w, d)
        assert np.all(z >= 0) and np.all(np.isfinite(z))
    facts = ice.describe(fit)
    assert facts["nmf_components"] == 100 and facts["nmf_error"] > 0
    intact = float(np.mean(ctx.val.preds == ctx.val.labels))
    acc = ice.evaluate(fit, ctx)["accuracy"]
    # Ten components per class keep what the head needs.
    assert abs(acc - intact) <= 0.10
    # The same data and seed give the same fit (fits are cached on that assumption).
    again = ice.fit(ctx, coreset, seed=0)
    for c in range(10):
        np.testing.assert_array_equal(again.nmfs[c].components_, fit.nmfs[c].components_)


def test_digits_full_data_fit(digits_context) -> None:
    # Through the artifact cache, so the pipeline tests reuse this full-data fit.
    ctx = digits_context
    ice = get_interpreter("ice", n_components=10, scope="class", max_iter=200, tol=0.0)
    fit, seconds = fit_interpreter(ice, ctx, np.arange(ctx.train.n), 0, None)
    assert seconds > 0
    intact = float(np.mean(ctx.val.preds == ctx.val.labels))
    assert abs(ice.evaluate(fit, ctx)["accuracy"] - intact) <= 0.10


def test_digits_global_scope(digits_context, coreset: np.ndarray) -> None:
    ctx = digits_context
    ice = get_interpreter("ice", scope="global")
    fit = ice.fit(ctx, coreset, seed=0)
    # One NMF over all classes, used for every class.
    assert list(fit.nmfs) == [-1] and fit.scope == "global"
    assert fit.for_class(3) is fit.for_class(7)
    d, h, w = ctx.val.map_shape
    idx = ctx.val.class_indices(4)
    assert ice.maps(fit, ctx, idx).shape == (len(idx) * h * w, d)
    acc = ice.evaluate(fit, ctx)["accuracy"]
    # Label-free: ten components shared by ten classes still carry most of the class evidence.
    assert 0.5 < acc <= 1.0


def test_digits_tiny_classes_clamp_components(digits_context) -> None:
    ctx = digits_context
    # One image per class: 2x2 = 4 positions, so at most 4 components.
    one_each = np.array([ctx.train.class_indices(c)[0] for c in range(10)])
    fit = get_interpreter("ice").fit(ctx, one_each, seed=0)
    assert {n.n_components_ for n in fit.nmfs.values()} == {4}
    assert 0.0 <= get_interpreter("ice").evaluate(fit, ctx)["accuracy"] <= 1.0
