"""VEBI's Gram products E^T E and E^T L in torch on the job's device equal the NumPy/BLAS result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_interp.interpreters.vebi_lasso import accumulate_gram, positive_lasso_l1


def _energies(path: Path, n: int = 301, units: int = 40) -> np.ndarray:
    """Stored per-layer energies: a float32 memory map whose rows sum to 1 per layer, as VEBI's E."""
    rng = np.random.default_rng(0)
    e = rng.random((n, units)) ** 3
    e[:, :20] /= e[:, :20].sum(axis=1, keepdims=True)
    e[:, 20:] /= e[:, 20:].sum(axis=1, keepdims=True)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=e.shape)
    mm[:] = e
    mm.flush()
    return np.load(path, mmap_mode="r")


def _check_device(device: str, tmp_path: Path) -> None:
    E = _energies(tmp_path / "E.npy")
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(E), 120, replace=False))  # a coreset
    targets = rng.integers(0, 4, len(rows))
    ref_gram, ref_xy = accumulate_gram(E, rows, targets, 4, batch=16)
    gram, xy = accumulate_gram(E, rows, targets, 4, batch=16, device=device)
    np.testing.assert_allclose(gram.full(), ref_gram.full(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(xy, ref_xy, rtol=1e-12, atol=1e-15)
    cols = np.array([0, 7, 39])
    np.testing.assert_allclose(gram.columns(cols), ref_gram.columns(cols), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gram.block(cols), ref_gram.block(cols), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gram.diagonal(), ref_gram.diagonal(), rtol=1e-12, atol=1e-15)
    # The known answer: the dense products of the selected rows.
    x = np.asarray(E[rows], dtype=np.float64)
    np.testing.assert_allclose(gram.full(), x.T @ x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(xy, x.T @ np.eye(4)[targets], rtol=1e-12, atol=1e-15)
    # And the lasso solved from either Gram picks the same units with the same weights.
    for c in range(4):
        a = positive_lasso_l1(ref_gram, ref_xy[:, c], len(rows), 0.5, working_set=8)
        b = positive_lasso_l1(gram, xy[:, c], len(rows), 0.5, working_set=8)
        np.testing.assert_array_equal(a.units, b.units)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-8, atol=1e-12)


def test_torch_gram_on_cpu_equals_numpy(tmp_path: Path) -> None:
    _check_device("cpu", tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_torch_gram_on_cuda_equals_numpy(tmp_path: Path) -> None:
    _check_device("cuda", tmp_path)
