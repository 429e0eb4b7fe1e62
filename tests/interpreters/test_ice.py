"""ICE: per-class NMF of last-conv maps; reconstructions are the interpretation maps the head classifies."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from coreset_interp.cache import ArtifactCache
from coreset_interp.interpreters import InterpretContext, get_interpreter
from coreset_interp.interpreters.ice import ICE
from coreset_interp.models.activations import ActivationStore
from coreset_interp.pipeline import fit_interpreter
from coreset_interp.selectors import get_selector
from tests.helpers import store_from_maps

D, H, W, RANK = 8, 3, 3, 3


def _disjoint_bases(rng: np.random.Generator) -> list[np.ndarray]:
    """Class 0 lives on channels 0-3, class 1 on channels 4-7: disjoint supports."""
    bases = []
    for c in range(2):
        b = np.zeros((RANK, D))
        b[:, 4 * c : 4 * c + 4] = rng.random((RANK, 4)) + 0.1
        bases.append(b)
    return bases


def _low_rank_store(path: Path, n_per_class: int, rng: np.random.Generator, bases: list[np.ndarray]):
    """Maps whose positions are exact non-negative rank-3 mixtures of each class's own basis."""
    maps, labels = [], []
    for c, basis in enumerate(bases):
        scores = rng.random((n_per_class * H * W, RANK))
        rows = scores @ basis  # (positions, D)
        maps.append(rows.reshape(n_per_class, H, W, D).transpose(0, 3, 1, 2))
        labels += [c] * n_per_class
    return store_from_maps(path, np.concatenate(maps), np.asarray(labels), len(bases))


@pytest.fixture()
def synthetic(tmp_path: Path) -> InterpretContext:
    rng = np.random.default_rng(0)
    bases = _disjoint_bases(rng)
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
    first = {"n_components": 4, "scope": "class", "max_iter": 200, "tol": 0.0}
    torch_keys = {**first, "backend": "torch", "dtype": "float32"}
    # params() is every field with its value; fit keys leave out the evaluation-only candidates.
    torch_ice = get_interpreter("ice", n_components=4, backend="torch")
    assert torch_ice.params() == {**first, "candidates": 5, "backend": "torch", "dtype": "float32"}
    assert torch_ice.fit_params() == torch_keys
    assert torch_ice.evaluation_params() == {**torch_keys, "candidates": 5}
    # The sklearn backend keeps the first version's fit parameters.
    assert get_interpreter("ice", n_components=4, backend="sklearn").fit_params() == first
    # auto (the default) is settled by the job's device before any fit is keyed: an unresolved auto never
    # shares a key with a backend; the CPU gets scikit-learn (it keeps the first version's numbers), CUDA
    # torch. A bound torch backend keys its device's solver (sketched HALS on the CPU, HALS on a GPU).
    auto = get_interpreter("ice", n_components=4)
    assert auto.fit_params() == {**first, "backend": "auto", "dtype": "float32"}
    auto.bind(torch.device("cpu"))
    assert auto.fit_params() == first and auto.backend == "sklearn"
    on_gpu = get_interpreter("ice", n_components=4)
    on_gpu.bind(torch.device("cuda"))
    assert on_gpu.fit_params() == {**torch_keys, "solver": "hals"}
    torch_ice.bind(torch.device("cpu"))
    assert torch_ice.fit_params() == {**torch_keys, "solver": "sketched"}
    for bad in (0, -1, True, "some", 2.5):
        with pytest.raises(ValueError, match="candidates"):
            ICE(candidates=bad)  # type: ignore[arg-type]


def _support_head(bias_1: float) -> nn.Module:
    """A real head on GAP features: logit 0 = sum of channels 0-3, logit 1 = sum of 4-7 plus ``bias_1``
    (so an all-zero map is classified as class 1)."""
    linear = nn.Linear(D, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0, :4] = 1.0
        linear.weight[1, 4:] = 1.0
        linear.bias.copy_(torch.tensor([0.0, bias_1]))
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), linear).eval()


def _headed_store(path: Path, maps: np.ndarray, labels: np.ndarray, head: nn.Module, extra: int = 0):
    """A store whose logits/preds are the head's own (the intact model), with ``extra`` logit columns of
    classes that have no components (a class subset keeps the full label index)."""
    with torch.no_grad():
        logits = head(torch.from_numpy(maps)).numpy()
    if extra:
        # The unfitted classes rank highest: candidates must still come from the fitted ones.
        logits = np.concatenate([logits, np.full((len(maps), extra), 100.0, np.float32)], axis=1)
    return ActivationStore(
        path=path,
        maps=maps,
        g=maps.mean(axis=(2, 3)),
        labels=labels,
        preds=logits.argmax(1),
        logits=logits.astype(np.float32),
    )


@pytest.fixture()
def mislabelled(tmp_path: Path) -> tuple[InterpretContext, np.ndarray]:
    """Train as ``synthetic``; val adds 3 images labelled 1 whose maps are class 0's (the model gets them
    wrong). Returns the context and the indices of those images."""
    rng = np.random.default_rng(0)
    bases = _disjoint_bases(rng)
    head = _support_head(bias_1=0.5)
    train = _low_rank_store(tmp_path, 20, rng, bases)
    val = _low_rank_store(tmp_path, 5, rng, bases)
    odd = _low_rank_store(tmp_path, 3, rng, bases[:1])
    maps = np.concatenate([val.maps, odd.maps])
    labels = np.concatenate([val.labels, np.ones(3, dtype=np.int64)])
    ctx = InterpretContext(
        model=SimpleNamespace(head=head),  # type: ignore[arg-type]
        dataset=None,  # type: ignore[arg-type]
        train=train,
        val=_headed_store(tmp_path, maps, labels, head),
        device=torch.device("cpu"),
        cache=None,  # type: ignore[arg-type]
        model_key="synthetic",
    )
    return ctx, np.arange(val.n, val.n + 3)


def test_accuracy_is_label_free_and_true_class_accuracy_sees_the_label(mislabelled) -> None:
    """Protects the label-free ``accuracy``: images the model gets wrong are reconstructed with the
    candidate class that explains them best, not with their label's components. The first version picked
    the ground-truth class: its number was 1.0 here although the model misses 3 of 13 images (an
    all-zero reconstruction with the label's components is classified as the label)."""
    ctx, odd = mislabelled
    intact = float(np.mean(ctx.val.preds == ctx.val.labels))
    assert intact == pytest.approx(10 / 13) and np.all(ctx.val.preds[odd] == 0)
    ice = ICE(n_components=RANK, max_iter=1000)
    fit = ice.fit(ctx, np.arange(ctx.train.n), seed=0)
    ev = ice.evaluate(fit, ctx)
    assert ev["accuracy"] == pytest.approx(intact)
    assert ev["ice_choice_accuracy"] == pytest.approx(intact)
    # The old rule's number, kept under a name that says it reads the label.
    assert ev["accuracy_true_class"] == 1.0 and ev["intact_accuracy"] == pytest.approx(intact)
    # Candidates follow the intact model's ranking: with one candidate, the model's own prediction.
    assert np.array_equal(ice.candidate_classes(fit, ctx.val.logits)[:, 0], ctx.val.preds)
    top1 = ICE(n_components=RANK, max_iter=1000, candidates=1)
    assert top1.evaluate(fit, ctx)["accuracy"] == pytest.approx(intact)


def test_candidates_come_from_the_fitted_classes_only(mislabelled, tmp_path: Path) -> None:
    """Protects class subsets (labels keep their full index, only chosen classes are fitted): classes
    without components are never candidates, even when the model ranks them first."""
    ctx, _ = mislabelled
    head = ctx.model.head
    val = _headed_store(tmp_path, np.asarray(ctx.val.maps), ctx.val.labels, head, extra=1)
    ctx = InterpretContext(**{**ctx.__dict__, "val": val})
    ice = ICE(n_components=RANK, max_iter=1000, candidates="all")
    fit = ice.fit(ctx, np.arange(ctx.train.n), seed=0)
    cands = ice.candidate_classes(fit, val.logits)
    assert cands.shape == (val.n, 2) and set(np.unique(cands).tolist()) == {0, 1}
    assert ICE(n_components=RANK, candidates=1).candidate_classes(fit, val.logits).shape == (val.n, 1)
    assert ice.evaluate(fit, ctx)["accuracy"] == pytest.approx(10 / 13)


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
    ev = ice.evaluate(fit, ctx)
    # Ten components per class keep what the head needs.
    assert abs(ev["accuracy"] - intact) <= 0.10 and ev["accuracy_true_class"] >= ev["accuracy"] - 0.02
    # The same data and seed give the same fit (fits are cached on that assumption).
    again = ice.fit(ctx, coreset, seed=0)
    for c in range(10):
        np.testing.assert_array_equal(again.nmfs[c].components_, fit.nmfs[c].components_)


def test_digits_full_data_fit(digits_context) -> None:
    """Protects the label-free full-data accuracy on the embedded default: near the intact model, not the
    1.000 of the first version (which read each image's label); with one candidate it is exactly the
    intact model's accuracy (an image reconstructed with a class's components is classified as that
    class), and the true-class number, which sees the label, stays beside it."""
    # Through the artifact cache, so the pipeline tests reuse this full-data fit.
    ctx = digits_context
    ice = get_interpreter("ice", n_components=10, scope="class", max_iter=200, tol=0.0)
    fit, seconds = fit_interpreter(ice, ctx, np.arange(ctx.train.n), 0, None)
    assert seconds > 0
    intact = float(np.mean(ctx.val.preds == ctx.val.labels))
    ev = ice.evaluate(fit, ctx)
    assert abs(ev["accuracy"] - intact) <= 0.02
    assert ev["accuracy_true_class"] == 1.0 > intact
    top1 = get_interpreter("ice", n_components=10, scope="class", max_iter=200, tol=0.0, candidates=1)
    assert top1.evaluate(fit, ctx)["accuracy"] == pytest.approx(intact)


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
    ev = ice.evaluate(fit, ctx)
    # Label-free: ten components shared by ten classes still carry most of the class evidence.
    assert 0.5 < ev["accuracy"] <= 1.0 and ev["accuracy_true_class"] == ev["accuracy"]


def test_digits_tiny_classes_clamp_components(digits_context) -> None:
    ctx = digits_context
    # One image per class: 2x2 = 4 positions, so at most 4 components.
    one_each = np.array([ctx.train.class_indices(c)[0] for c in range(10)])
    fit = get_interpreter("ice").fit(ctx, one_each, seed=0)
    assert {n.n_components_ for n in fit.nmfs.values()} == {4}
    assert 0.0 <= get_interpreter("ice").evaluate(fit, ctx)["accuracy"] <= 1.0


def _count_transformed_rows(fit: Any) -> dict[int, list[int]]:
    """Wrap each NMF's ``transform`` so that the rows it is given are counted per class."""
    counts: dict[int, list[int]] = {c: [] for c in fit.nmfs}
    for c, nmf in fit.nmfs.items():

        def counted(x: np.ndarray, _inner: Any = nmf.transform, _c: int = c) -> np.ndarray:
            counts[_c].append(len(x))
            return _inner(x)

        nmf.transform = counted
    return counts


def test_val_scores_are_computed_once_and_shared(mislabelled, tmp_path: Path) -> None:
    """Protects "each (fit, class) transform of the val maps is computed once": the Phi maps and the
    evaluation's true-class reconstructions read one cached W per (fit, class). Before, evaluate
    transformed every image with every candidate class and maps() transformed each class's images again,
    so each NMF saw n_val + n_class rows instead of n_val; the second round (a fit read back from the
    cache, as in the next job of a sweep) transforms only the images whose candidate is another class."""
    ctx, _ = mislabelled
    ctx = InterpretContext(**{**ctx.__dict__, "cache": ArtifactCache(tmp_path / "cache")})
    ice = ICE(n_components=RANK, max_iter=1000, backend="sklearn", candidates="all")
    fit = ice.fit(ctx, np.arange(ctx.train.n), seed=0)
    bare = ice.evaluate(fit, InterpretContext(**{**ctx.__dict__, "cache": None}))
    direct = {c: ICE._reconstruct(fit.nmfs[c], ctx.val.positions(ctx.val.class_indices(c))) for c in (0, 1)}
    hw = H * W
    frozen = pickle.dumps(fit)
    counts = _count_transformed_rows(fit)
    assert ice.evaluate(fit, ctx) == bare
    for c in (0, 1):
        np.testing.assert_array_equal(ice.maps(fit, ctx, ctx.val.class_indices(c)), direct[c])
    # Every image transformed once per NMF (both classes are every image's candidates).
    assert {c: sum(v) for c, v in counts.items()} == {0: ctx.val.n * hw, 1: ctx.val.n * hw}
    again = pickle.loads(frozen)
    counts = _count_transformed_rows(again)
    for c in (0, 1):
        np.testing.assert_array_equal(ice.maps(again, ctx, ctx.val.class_indices(c)), direct[c])
    assert ice.evaluate(again, ctx) == bare
    others = {c: ctx.val.n - len(ctx.val.class_indices(c)) for c in (0, 1)}
    assert {c: sum(v) for c, v in counts.items()} == {c: others[c] * hw for c in (0, 1)}
    # The scores are keyed by the fit: another coreset's fit gets its own maps, not this fit's.
    half = np.flatnonzero(np.arange(ctx.train.n) % 2 == 0)
    other_fit = ice.fit(ctx, half, seed=0)
    z = ice.maps(other_fit, ctx, ctx.val.class_indices(0))
    np.testing.assert_array_equal(
        z, ICE._reconstruct(other_fit.nmfs[0], ctx.val.positions(ctx.val.class_indices(0)))
    )
    assert not np.array_equal(z, direct[0])
