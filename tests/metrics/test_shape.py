"""Tests for the partial-whitening generalized shape metric (coreset_interp.metrics.shape)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coreset_interp.metrics import shape
from coreset_interp.metrics.shape import PreparedSide, angular_distance, angular_distance_prepared, prepare

GOLDEN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
GOLDEN_FILE = GOLDEN_DIR / "shape_metric_cases.npz"
N_GOLDEN_CASES = 45
ALPHAS = (0.0, 0.5, 1.0)


@pytest.fixture(autouse=True)
def _single_blas_thread() -> Iterator[None]:
    # The machine may be shared; oversubscribed BLAS threads make these small problems 50x slower.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    if not GOLDEN_DIR.is_dir():
        pytest.skip(f"golden folder not found: {GOLDEN_DIR}")
    with np.load(GOLDEN_FILE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def reference_distance(X: np.ndarray, Y: np.ndarray, alpha: float) -> float:
    """The golden README's formula written out plainly, as an independent check."""
    d = max(X.shape[1], Y.shape[1])
    sides = []
    for A in (X, Y):
        A = np.hstack([A, np.zeros((A.shape[0], d - A.shape[1]))])
        A = A - A.mean(axis=0)
        if alpha <= 1 - 1e-7:
            lam, V = np.linalg.eigh(A.T @ A)
            weights = alpha + (1 - alpha) / np.sqrt(np.maximum(lam, 1e-7))
            A = A @ (V * weights) @ V.T
        sides.append(A)
    Xw, Yw = sides
    cosine = np.linalg.svd(Xw.T @ Yw, compute_uv=False).sum() / (np.linalg.norm(Xw) * np.linalg.norm(Yw))
    return math.acos(min(1.0, max(-1.0, cosine)))


def relu_pair(rng: np.random.Generator, n: int, d1: int, d2: int, noise: float = 0.5) -> tuple:
    X = np.maximum(rng.standard_normal((n, d1)) @ rng.standard_normal((d1, d1)), 0.0)
    Y = np.maximum(X @ rng.standard_normal((d1, d2)) + noise * rng.standard_normal((n, d2)), 0.0)
    return X, Y


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


@pytest.mark.parametrize("case", range(N_GOLDEN_CASES))
def test_golden_case(golden: dict[str, np.ndarray], case: int) -> None:
    assert int(golden["n_cases"]) == N_GOLDEN_CASES
    key = f"case_{case:03d}"
    X, Y = golden[f"{key}_X"], golden[f"{key}_Y"]
    for alpha, expected in zip(golden[f"{key}_alpha"], golden[f"{key}_distance"], strict=True):
        got = angular_distance(X, Y, float(alpha))
        label = f"{key} {golden[f'{key}_name']} alpha={alpha}: got {got!r}, netrep {expected!r}"
        assert 0.0 <= got <= math.pi, label
        assert abs(math.cos(got) - math.cos(expected)) <= 1e-9, label
        assert abs(got - expected) <= 1e-6, label


@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_plain_formula_on_wide_and_ill_conditioned_inputs(alpha: float) -> None:
    rng = np.random.default_rng(11)
    X, Y = relu_pair(rng, 400, 150, 120)  # cross product large enough for the Gram-matrix route
    X[:, :5] = 0.0  # dead units: zero eigenvalues, clipped at the floor
    cases = [(X, Y), (X[:40], Y[:40]), (X * np.logspace(0, -4, 150), Y)]
    for A, B in cases:
        got, expected = angular_distance(A, B, alpha), reference_distance(A, B, alpha)
        assert abs(math.cos(got) - math.cos(expected)) <= 1e-9, (A.shape, B.shape)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_invariant_to_rotation_and_translation_of_one_side(alpha: float) -> None:
    rng = np.random.default_rng(1)
    X, Y = relu_pair(rng, 200, 12, 9)
    base = angular_distance(X, Y, alpha)
    moved = X @ random_rotation(rng, 12) + rng.normal(0.0, 5.0, size=12)
    assert abs(angular_distance(moved, Y, alpha) - base) < 1e-6
    assert abs(angular_distance(X, Y[:, ::-1] - 3.0, alpha) - base) < 1e-6
    assert base > 0.1  # the pair is genuinely different, so the invariance is not trivially 0 == 0


def test_isotropic_scaling_matters_only_for_partial_whitening() -> None:
    rng = np.random.default_rng(2)
    X, Y = relu_pair(rng, 300, 16, 16)
    for alpha in (0.0, 1.0):
        assert abs(angular_distance(0.01 * X, Y, alpha) - angular_distance(X, Y, alpha)) < 1e-6
    # The scatter matrix is not normalised, so at alpha = 0.5 the scale shifts the balance between the
    # constant weight and the whitening weight (golden case 011: 0 vs 0.437 for Y = 0.01 X Q).
    Q = random_rotation(rng, 16)
    assert angular_distance(X, X @ Q, 0.5) < 1e-6
    assert angular_distance(X, 0.01 * X @ Q, 0.5) > 0.05
    assert abs(angular_distance(0.01 * X, Y, 0.5) - angular_distance(X, Y, 0.5)) > 1e-3


@pytest.mark.parametrize("alpha", ALPHAS)
def test_symmetric(alpha: float) -> None:
    rng = np.random.default_rng(3)
    X, Y = relu_pair(rng, 150, 20, 7)
    assert abs(angular_distance(X, Y, alpha) - angular_distance(Y, X, alpha)) <= 1e-9
    Q = random_rotation(rng, 20)
    # Near 0 arccos magnifies rounding (1e-16 in cos is 1.5e-8 rad); the order of the sides is fixed.
    assert angular_distance(X, X @ Q, alpha) == angular_distance(X @ Q, X, alpha)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_identical_and_equivalent_inputs_give_zero(alpha: float) -> None:
    rng = np.random.default_rng(4)
    X, _ = relu_pair(rng, 100, 10, 1)
    assert angular_distance(X, X, alpha) < 1e-6
    assert angular_distance(X, X[:, rng.permutation(10)] + 7.0, alpha) < 1e-6
    # Zero padding only embeds X in more dimensions.
    assert angular_distance(X, np.hstack([X, np.zeros((100, 5))]), alpha) < 1e-6


def test_full_whitening_known_answers() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 40))
    # alpha = 0 penalises rank mismatch: a 10-of-40 column subset is at arccos(sqrt(10 / 40)) = pi / 3.
    assert abs(angular_distance(X, X[:, :10], 0.0) - math.pi / 3) < 1e-9
    # alpha = 0 with n - 1 <= min(d1, d2): both sides span the whole centred sample space.
    A, B = rng.standard_normal((20, 64)), rng.standard_normal((20, 30))
    assert angular_distance(A, B, 0.0) < 1e-6
    assert angular_distance(A, B, 1.0) > 0.1


@pytest.mark.parametrize("alpha", ALPHAS)
def test_rank_deficient_and_wide_inputs_stay_in_range(alpha: float) -> None:
    rng = np.random.default_rng(6)
    low_rank = rng.standard_normal((60, 3)) @ rng.standard_normal((3, 50))
    wide = rng.standard_normal((15, 300))
    duplicated = np.repeat(rng.standard_normal((60, 4)), 10, axis=1)
    one_column = rng.standard_normal((60, 1))
    tiny = 1e-9 * rng.standard_normal((60, 50))
    pairs = [
        (low_rank, rng.standard_normal((60, 50))),
        (wide, rng.standard_normal((15, 200))),
        (wide, wide[:, :100] ** 2),
        (duplicated, low_rank),
        (one_column, low_rank),
        (tiny, low_rank),
        (rng.standard_normal((2, 5)), rng.standard_normal((2, 3))),
    ]
    for A, B in pairs:
        got = angular_distance(A, B, alpha)
        assert math.isfinite(got) and 0.0 <= got <= math.pi, (A.shape, B.shape, got)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_zero_variance_side_has_no_angle(alpha: float) -> None:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 6))
    zeros = np.zeros((30, 6))
    constant = np.full((30, 4), 0.1)  # 0.1 is not exact in binary: a naive mean leaves rounding residue
    for A, B in [(zeros, X), (X, constant), (zeros, constant), (constant, constant)]:
        assert math.isnan(angular_distance(A, B, alpha))
        assert math.isnan(angular_distance_prepared(prepare(A, alpha), prepare(B, alpha)))
    assert not prepare(zeros, alpha).has_variance
    assert prepare(X, alpha).has_variance


@pytest.mark.parametrize(
    ("X", "Y", "alpha", "message"),
    [
        (np.ones(10), np.ones((10, 2)), 0.5, "2-D"),
        (np.ones((10, 2, 1)), np.ones((10, 2)), 0.5, "2-D"),
        (np.ones((10, 2)), np.ones((9, 2)), 0.5, "same number of rows"),
        (np.ones((1, 2)), np.ones((1, 2)), 0.5, "at least 2 rows"),
        (np.ones((5, 0)), np.ones((5, 2)), 0.5, "at least 1 column"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), np.ones((2, 2)), 0.5, "NaN or infinite"),
        (np.ones((2, 2)), np.array([[1.0, np.inf], [2.0, 3.0]]), 0.5, "NaN or infinite"),
        (np.ones((3, 2), dtype=complex), np.ones((3, 2)), 0.5, "real numbers"),
        (np.ones((3, 2)), np.ones((3, 2)), -0.1, r"alpha must be in \[0, 1\]"),
        (np.ones((3, 2)), np.ones((3, 2)), 1.5, r"alpha must be in \[0, 1\]"),
        (np.ones((3, 2)), np.ones((3, 2)), float("nan"), r"alpha must be in \[0, 1\]"),
        (np.ones((3, 2)), np.ones((3, 2)), "0.5", "alpha must be a real number"),
    ],
)
def test_bad_input_raises_value_error(X: np.ndarray, Y: np.ndarray, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        angular_distance(X, Y, alpha)


def test_overflowing_scatter_raises_value_error() -> None:
    X = np.array([[1e200, 0.0], [-1e200, 1.0], [0.0, 2.0]])
    with pytest.raises(ValueError, match="too large"):
        angular_distance(X, np.ones((3, 2)).cumsum(axis=0), 0.5)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_prepared_equals_unprepared(alpha: float) -> None:
    rng = np.random.default_rng(8)
    X, Y = relu_pair(rng, 120, 30, 20)
    prepared_x = prepare(X, alpha)
    assert isinstance(prepared_x, PreparedSide)
    assert prepared_x.n_rows == 120 and prepared_x.alpha == alpha
    for B in (Y, Y[:, :3] * 2.0, rng.standard_normal((120, 80))):
        assert angular_distance_prepared(prepared_x, prepare(B, alpha)) == angular_distance(X, B, alpha)
    with pytest.raises(ValueError):
        prepared_x.whitened[0, 0] = 1.0  # read-only: shared between comparisons


def test_prepared_mismatches_raise() -> None:
    rng = np.random.default_rng(9)
    X = rng.standard_normal((20, 4))
    with pytest.raises(ValueError, match="different alphas"):
        angular_distance_prepared(prepare(X, 0.5), prepare(X, 0.0))
    with pytest.raises(ValueError, match="row"):
        angular_distance_prepared(prepare(X, 0.5), prepare(X[:10], 0.5))
    with pytest.raises(ValueError, match="PreparedSide"):
        angular_distance_prepared(X, prepare(X, 0.5))  # type: ignore[arg-type]


def test_inputs_untouched_and_dtypes_accepted() -> None:
    rng = np.random.default_rng(10)
    X, Y = relu_pair(rng, 50, 6, 5)
    X_copy, Y_copy = X.copy(), Y.copy()
    expected = angular_distance(X, Y, 0.5)
    assert np.array_equal(X, X_copy) and np.array_equal(Y, Y_copy)
    as_float32 = angular_distance(X.astype(np.float32), Y.astype(np.float32), 0.5)
    assert abs(as_float32 - expected) < 1e-5
    counts = rng.poisson(3.0, size=(50, 6))
    assert angular_distance(counts, counts.astype(float), 0.5) < 1e-6
    assert isinstance(angular_distance(X, Y, np.float32(0.5)), float)


def test_gram_route_for_nuclear_norm_is_exact_enough_and_falls_back() -> None:
    rng = np.random.default_rng(12)
    full_rank = rng.standard_normal((200, 150))
    for M in (full_rank, full_rank.T.copy()):
        exact = np.linalg.svd(M, compute_uv=False).sum()
        total, bound = shape._gram_nuclear_norm(M)
        assert abs(total - exact) <= 1e-13 * exact
        assert bound <= shape._GRAM_TOLERANCE * total  # a well-conditioned matrix is accepted
    rank_deficient = rng.standard_normal((200, 20)) @ rng.standard_normal((20, 150))
    total, bound = shape._gram_nuclear_norm(rank_deficient)
    assert bound > shape._GRAM_TOLERANCE * total  # sqrt of noisy zero eigenvalues: rejected
    assert shape._gram_nuclear_norm(np.zeros((100, 100))) == (0.0, 0.0)
    # The whole comparison takes the Gram route for well-conditioned sides (alpha = 0 whitens them) and
    # still matches the plain formula.
    X, Y = rng.standard_normal((300, 100)), rng.standard_normal((300, 90))
    px, py = prepare(X, 0.0), prepare(Y, 0.0)
    assert shape._gram_route_promising(px.column_norms, py.column_norms)
    assert abs(math.cos(angular_distance_prepared(px, py)) - math.cos(reference_distance(X, Y, 0.0))) <= 1e-12
