"""The float64 torch path of the shape metric against the numpy reference and the golden cases."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_interp.metrics.shape import angular_distance
from coreset_interp.metrics.shape_torch import (
    TorchPreparedSide,
    angular_distance_prepared_torch,
    angular_distance_torch,
    prepare_torch,
)

GOLDEN_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "golden" / "shape_metric_cases.npz"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_golden_cases_to_1e6_rad() -> None:
    if not GOLDEN_FILE.is_file():
        pytest.skip(f"golden file not found: {GOLDEN_FILE}")
    with np.load(GOLDEN_FILE, allow_pickle=False) as golden:
        n_cases = int(golden["n_cases"])
        checked = 0
        for case in range(n_cases):
            key = f"case_{case:03d}"
            X, Y = golden[f"{key}_X"], golden[f"{key}_Y"]
            for alpha, expected in zip(golden[f"{key}_alpha"], golden[f"{key}_distance"], strict=True):
                got = angular_distance_torch(X, Y, float(alpha))
                if math.isnan(float(expected)):
                    assert math.isnan(got), key
                    continue
                label = f"{key} alpha={alpha}: torch {got!r}, netrep {expected!r}"
                assert abs(got - float(expected)) <= 1e-6, label
                assert abs(math.cos(got) - math.cos(float(expected))) <= 1e-9, label
                checked += 1
    assert checked >= n_cases


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(60, 8, 5), (30, 70, 40), (200, 96, 96)])
def test_matches_numpy_reference(alpha: float, shape: tuple[int, int, int]) -> None:
    n, d1, d2 = shape
    rng = np.random.default_rng(n + d1)
    X = np.maximum(rng.standard_normal((n, d1)) @ rng.standard_normal((d1, d1)), 0.0)
    Y = np.maximum(X @ rng.standard_normal((d1, d2)) + 0.5 * rng.standard_normal((n, d2)), 0.0)
    expected = angular_distance(X, Y, alpha)
    got = angular_distance_torch(torch.from_numpy(X), Y, alpha)
    assert abs(got - expected) <= 1e-6
    assert abs(math.cos(got) - math.cos(expected)) <= 1e-9
    # Prepared once and reused gives the same number, in either argument order.
    px, py = prepare_torch(X, alpha), prepare_torch(Y, alpha)
    assert isinstance(px, TorchPreparedSide)
    assert angular_distance_prepared_torch(px, py) == angular_distance_prepared_torch(py, px)
    assert abs(angular_distance_prepared_torch(px, py) - got) <= 1e-12


def test_zero_variance_and_bad_input() -> None:
    X = np.random.default_rng(0).random((10, 3))
    assert math.isnan(angular_distance_torch(X, np.ones((10, 2))))
    with pytest.raises(ValueError, match="alpha"):
        prepare_torch(X, 1.5)
    with pytest.raises(ValueError, match="same number of rows"):
        angular_distance_torch(X, X[:5])
    with pytest.raises(ValueError, match="different alphas"):
        angular_distance_prepared_torch(prepare_torch(X, 0.5), prepare_torch(X, 0.0))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare_torch(torch.from_numpy(bad))


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(3)
    X, Y = rng.random((120, 40)), rng.random((120, 30))
    assert abs(angular_distance_torch(X, Y, 0.5, "cuda") - angular_distance(X, Y, 0.5)) <= 1e-6
