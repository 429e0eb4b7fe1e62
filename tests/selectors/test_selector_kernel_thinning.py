"""Tests for ``kernel_thinning`` (CTE on goodpoints): exact sizes, the trimming rule, and MMD quality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from coreset_interp.selectors import class_budget, get_selector
from coreset_interp.selectors.kernel_thinning import (
    gaussian_kernel_matrix,
    greedy_trim,
    halving_rounds,
    squared_mmd,
)


def _mixture(seed: int, n: int = 240, d: int = 8) -> np.ndarray:
    """A Gaussian mixture with 4 unequal components, the shape of one class of CNN features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(4, d))
    comp = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    return centres[comp] + rng.normal(size=(n, d))


def test_halving_rounds() -> None:
    assert halving_rounds(1300, 65) == 4  # 1300 // 16 = 81 >= 65 > 1300 // 32 = 40
    assert halving_rounds(1300, 650) == 1
    assert halving_rounds(1300, 651) == 0
    assert halving_rounds(5, 1) == 2
    assert halving_rounds(1, 1) == 0


def test_kernel_matrix_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)) * 5
    K = gaussian_kernel_matrix(x, 7.0)
    direct = np.exp(-((x[:, None] - x[None]) ** 2).sum(axis=2) / 7.0)
    np.testing.assert_allclose(K, direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_array_equal(np.diag(K), 1.0)


def test_greedy_trim_takes_the_best_single_removal_each_step() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2))
    K = gaussian_kernel_matrix(x, 4.0)
    current = np.arange(0, 30, 2)
    while len(current) > 5:
        by_brute_force = min((squared_mmd(K, np.delete(current, r)), r) for r in range(len(current)))
        trimmed = greedy_trim(K, current, len(current) - 1)
        np.testing.assert_array_equal(trimmed, np.delete(current, by_brute_force[1]))
        current = trimmed


def test_greedy_trim_by_hand() -> None:
    # Three points with K = [[1, a, 0], [a, 1, 0], [0, 0, 1]], a = 0.9 (0 and 1 close, 2 far).
    # Row means: [(1 + a)/3, (1 + a)/3, 1/3]; MMD^2(S) = mean K[S, S] - 2 mean_{i in S} rowmean_i + mean K.
    #   keep {0, 1}: (2 + 2a)/4 - 2 (1 + a)/3          = 0.95 - 1.2667 = -0.3167 (+ mean K)
    #   keep {0, 2} or {1, 2}: 2/4 - ((1 + a)/3 + 1/3) = 0.50 - 0.9667 = -0.4667 (+ mean K)
    # Dropping 0 or dropping 1 tie; the lowest position (0) is dropped.
    a = 0.9
    K = np.array([[1, a, 0], [a, 1, 0], [0, 0, 1.0]])
    assert greedy_trim(K, np.arange(3), 2).tolist() == [1, 2]


@pytest.mark.parametrize("refine", [True, False])
def test_exact_size_for_every_budget(refine: bool) -> None:
    x = _mixture(2, n=37, d=3)
    sel = get_selector("kernel_thinning", refine=refine)
    labels = np.zeros(37, dtype=int)
    for m in range(1, 38):
        idx = sel.select(x, labels, m / 37, seed=m)
        assert len(idx) == class_budget(37, m / 37) == m


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_tiny_classes(n: int) -> None:
    x = np.arange(n, dtype=float)[:, None]
    for ratio in (0.05, 0.5, 1.0):
        idx = get_selector("kernel_thinning").select(x, np.zeros(n, dtype=int), ratio, seed=1)
        assert len(idx) == class_budget(n, ratio)


def test_proportional_representation_of_separated_clusters() -> None:
    # 12 samples near 0 and 4 near 100 (kernel between the clusters = 0): an MMD-optimal 4-point coreset
    # must take 3 from the big cluster and 1 from the small one, for every seed.
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.05, 12), rng.normal(100, 0.05, 4)])[:, None]
    for seed in range(5):
        idx = get_selector("kernel_thinning").select(x, np.zeros(16, dtype=int), 0.25, seed=seed)
        assert np.sum(idx < 12) == 3 and np.sum(idx >= 12) == 1


def test_default_bandwidth_is_2d() -> None:
    x = _mixture(4, n=64, d=5)
    labels = np.zeros(64, dtype=int)
    a = get_selector("kernel_thinning").select(x, labels, 0.2, seed=5)
    b = get_selector("kernel_thinning", sigma2=10.0).select(x, labels, 0.2, seed=5)
    np.testing.assert_array_equal(a, b)
    assert get_selector("kernel_thinning").params() == {"sigma2": None, "delta": 0.5, "refine": True}


def test_mmd_below_random_on_gaussian_mixtures() -> None:
    ratios = (0.05, 0.1, 0.2, 0.5)
    kt_sel, rnd_sel = get_selector("kernel_thinning"), get_selector("random")
    for ratio in ratios:
        kt_mmd, rnd_mmd = [], []
        for seed, rep in itertools.product(range(4), range(3)):
            x = _mixture(10 + seed)
            K = gaussian_kernel_matrix(x, 2.0 * x.shape[1])
            labels = np.zeros(len(x), dtype=int)
            kt_mmd.append(squared_mmd(K, kt_sel.select(x, labels, ratio, seed=rep)))
            rnd_mmd.append(squared_mmd(K, rnd_sel.select(x, labels, ratio, seed=rep)))
        # Random subsets are ~1 / m from the class in MMD^2; kernel thinning should be well below.
        assert np.mean(kt_mmd) < 0.8 * np.mean(rnd_mmd), (ratio, np.mean(kt_mmd), np.mean(rnd_mmd))


def test_large_budgets_are_deterministic() -> None:
    # For m > n / 2 no halving happens: trimming and refinement of the whole class use no randomness.
    x = _mixture(5, n=50, d=3)
    labels = np.zeros(50, dtype=int)
    sel = get_selector("kernel_thinning")
    np.testing.assert_array_equal(sel.select(x, labels, 0.8, seed=0), sel.select(x, labels, 0.8, seed=1))


def test_rejects_bad_hyperparameters() -> None:
    for bad in ({"sigma2": 0.0}, {"sigma2": -1.0}, {"sigma2": float("inf")}, {"delta": 0.0}, {"delta": 1.0}):
        with pytest.raises(ValueError):
            get_selector("kernel_thinning", **bad)
