"""Torch NMF against scikit-learn's NMF (init nndsvda, cd solver, Frobenius loss) on the same data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf
from sklearn.exceptions import ConvergenceWarning

from coreset_interp.linalg import fit_nmf, nndsvda_init, nnls_hals, randomized_svd
from coreset_interp.linalg.nmf import frobenius_error


def _sklearn(x: np.ndarray, r: int, max_iter: int, tol: float = 0.0) -> NMF:
    nmf = NMF(n_components=r, init="nndsvda", max_iter=max_iter, tol=tol, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(x)
    return nmf


@pytest.fixture(scope="module")
def low_rank() -> np.ndarray:
    """A non-negative rank-6 matrix plus 10 % non-negative noise (so the rank-8 objective is not ~0)."""
    rng = np.random.default_rng(0)
    x = rng.random((800, 6)) @ rng.random((6, 80)) + 0.1 * rng.random((800, 80))
    return x.astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("max_iter", [200])
@pytest.mark.parametrize("solver", ["sketched", "hals"])
def test_objective_within_one_percent_of_sklearn(
    low_rank: np.ndarray, dtype: str, max_iter: int, solver: str
) -> None:
    ref = _sklearn(low_rank.astype(dtype), 8, max_iter)
    ours = fit_nmf(low_rank, 8, max_iter=max_iter, dtype=dtype, solver=solver)
    assert ours.components_.dtype == np.dtype(dtype) and ours.components_.shape == (8, 80)
    assert np.all(ours.components_ >= 0) and ours.n_iter_ == max_iter and ours.n_components_ == 8
    assert abs(ours.reconstruction_err_ - ref.reconstruction_err_) <= 0.01 * ref.reconstruction_err_


def test_nndsvda_matches_sklearn_initialisation() -> None:
    # A clear spectral gap: both randomized SVDs find the same top singular pairs, so the NNDSVDa factors
    # agree up to the SVD's accuracy.
    rng = np.random.default_rng(1)
    x = (rng.random((400, 5)) @ rng.random((5, 60)) + 1e-3 * rng.random((400, 60))).astype(np.float64)
    w_ref, h_ref = _initialize_nmf(x, 4, init="nndsvda", random_state=0)
    wt, h = nndsvda_init(torch.from_numpy(x), 4, seed=0)
    np.testing.assert_allclose(wt.T.numpy(), w_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h.numpy(), h_ref, rtol=1e-6, atol=1e-8)
    # Zeros of NNDSVD are filled with the mean of X ("a"); sklearn's factors have such entries here.
    filled = h_ref == x.mean()
    assert filled.any() and np.allclose(h.numpy()[filled], x.mean())


def test_randomized_svd_equals_exact_svd_on_both_orientations() -> None:
    rng = np.random.default_rng(2)
    for shape in [(300, 40), (40, 300)]:
        # A decaying spectrum (singular values 2^-j), where 7 power iterations are accurate.
        u0 = np.linalg.qr(rng.standard_normal((shape[0], 40 if shape[0] > 40 else shape[0])))[0]
        v0 = np.linalg.qr(rng.standard_normal((shape[1], u0.shape[1])))[0]
        x = torch.from_numpy(u0 * 2.0 ** -np.arange(u0.shape[1]) @ v0.T)
        u, s, v = randomized_svd(x, 5, seed=3)
        s_exact = torch.linalg.svdvals(x)[:5]
        torch.testing.assert_close(s, s_exact, rtol=1e-8, atol=1e-10)
        assert u.shape == (shape[0], 5) and v.shape == (5, shape[1])
        torch.testing.assert_close(u.T @ u, torch.eye(5, dtype=x.dtype), atol=1e-10, rtol=0)


def test_transform_equals_sklearn_transform_with_the_same_components(low_rank: np.ndarray) -> None:
    ours = fit_nmf(low_rank, 8, max_iter=100, dtype="float64")
    ref = _sklearn(low_rank.astype(np.float64), 8, 100)
    # sklearn's transform with our components: the same NNLS by the same coordinate descent from W = 0.
    ref.components_ = ours.components_.copy()
    new = low_rank[:200].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w_ref = ref.transform(new)
    np.testing.assert_allclose(ours.transform(new), w_ref, rtol=1e-6, atol=1e-9)


def test_nnls_of_an_exact_product_recovers_it() -> None:
    rng = np.random.default_rng(4)
    h = torch.from_numpy(rng.random((3, 30)))
    w = torch.from_numpy(rng.random((50, 3)))
    wt = nnls_hals(w @ h, h, max_iter=2000)
    torch.testing.assert_close(wt.T, w, rtol=1e-6, atol=1e-8)


def test_blocked_single_pass_sweep_equals_two_pass_sweep(low_rank: np.ndarray) -> None:
    one = fit_nmf(low_rank, 8, max_iter=30, dtype="float64", block_bytes=0, solver="hals")
    blocked = fit_nmf(low_rank, 8, max_iter=30, dtype="float64", block_bytes=64 * 80 * 8, solver="hals")
    np.testing.assert_allclose(blocked.components_, one.components_, rtol=1e-9, atol=1e-12)


def test_relative_tolerance_stops_early_as_sklearn(low_rank: np.ndarray) -> None:
    ours = fit_nmf(low_rank, 8, max_iter=500, tol=1e-3, dtype="float64")
    ref = _sklearn(low_rank.astype(np.float64), 8, 500, tol=1e-3)
    assert 1 < ours.n_iter_ < 500
    # The same stopping rule stops near the same sweep (the iterates differ by the randomized SVD's
    # probes of the initialisation).
    assert abs(ours.n_iter_ - ref.n_iter_) <= max(2, ref.n_iter_ // 4)


def test_frobenius_error_and_bad_input() -> None:
    rng = np.random.default_rng(5)
    x, wt, h = (torch.from_numpy(rng.random(s)) for s in [(70, 9), (2, 70), (2, 9)])
    assert np.isclose(frobenius_error(x, wt, h), float(torch.linalg.norm(x - wt.T @ h)), rtol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        fit_nmf(-np.ones((5, 4)), 2)
    with pytest.raises(ValueError, match="n_components"):
        fit_nmf(np.ones((5, 4)), 5)
    with pytest.raises(ValueError, match="dtype"):
        fit_nmf(np.ones((5, 4)), 2, dtype="float16")


def test_digits_class_activations_within_one_percent_of_sklearn(digits_context) -> None:
    # Real post-ReLU maps of one class of the embedded default (positions x 512 channels).
    ctx = digits_context
    x = ctx.train.positions(ctx.train.class_indices(3))
    ref = _sklearn(x, 10, 200)
    ours = fit_nmf(x, 10, max_iter=200)
    assert abs(ours.reconstruction_err_ - ref.reconstruction_err_) <= 0.01 * ref.reconstruction_err_


def test_sketched_solver_is_the_cpu_default_and_far_cheaper_per_sweep(low_rank: np.ndarray) -> None:
    from coreset_interp.linalg.nmf import default_solver

    assert default_solver("cpu") == "sketched" and default_solver("cuda") == "hals"
    auto = fit_nmf(low_rank, 8, max_iter=50, dtype="float64")
    sketched = fit_nmf(low_rank, 8, max_iter=50, dtype="float64", solver="sketched")
    exact = fit_nmf(low_rank, 8, max_iter=50, dtype="float64", solver="hals")
    np.testing.assert_array_equal(auto.components_, sketched.components_)
    # Different iterates (the sketch is rank 18 of 80 columns), the same objective to well within 1 %.
    assert not np.allclose(sketched.components_, exact.components_, rtol=1e-6)
    assert abs(sketched.reconstruction_err_ / exact.reconstruction_err_ - 1) < 0.002
    with pytest.raises(ValueError, match="solver"):
        fit_nmf(low_rank, 8, solver="mu")
