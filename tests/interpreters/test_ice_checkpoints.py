"""ICE per-class checkpoints (a killed fit resumes at its first unfinished class), class-parallel fits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coreset_interp.cache import ArtifactCache
from coreset_interp.interpreters.ice import ICE
from coreset_interp.pipeline import fit_interpreter


class _Recording(ICE):
    """ICE that records which classes it fits and can fail at one of them (a job dying mid-fit)."""

    def __init__(self, fail_at: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.fail_at = fail_at
        self.fitted: list[int] = []

    def _fit_nmf(self, x: np.ndarray, seed: int, what: str, device: Any = "cpu") -> Any:
        c = int(what.split()[-1])
        if c == self.fail_at:
            raise RuntimeError(f"killed at class {c}")
        self.fitted.append(c)
        return super()._fit_nmf(x, seed, what, device)


def _components(fit: Any) -> dict[int, np.ndarray]:
    return {c: n.components_ for c, n in fit.nmfs.items()}


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_killed_full_fit_resumes_at_its_first_unfinished_class(
    digits_context: Any, tmp_path: Path, backend: str
) -> None:
    params = {"max_iter": 50, "backend": backend}
    ctx = replace(digits_context, cache=ArtifactCache(tmp_path / "a"), n_jobs=1)
    all_idx = np.arange(ctx.train.n)
    dying = _Recording(fail_at=4, **params)
    with pytest.raises(RuntimeError, match="killed at class 4"):
        fit_interpreter(dying, ctx, all_idx, 0, None)
    assert dying.fitted == [0, 1, 2, 3]
    assert not any((tmp_path / "a" / "fit_full").glob("[!.]*"))  # the fit itself was not published
    rerun = _Recording(**params)
    fit, _ = fit_interpreter(rerun, ctx, all_idx, 0, None)
    # Classes 0-3 came from their checkpoints; only the unfinished ones were computed.
    assert rerun.fitted == [4, 5, 6, 7, 8, 9]
    uninterrupted = _Recording(**params)
    cold = replace(ctx, cache=ArtifactCache(tmp_path / "b"))
    reference, _ = fit_interpreter(uninterrupted, cold, all_idx, 0, None)
    assert uninterrupted.fitted == list(range(10))
    got, want = _components(fit), _components(reference)
    assert sorted(got) == list(range(10))
    for c in range(10):
        np.testing.assert_array_equal(got[c], want[c])


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_class_parallel_fit_equals_sequential(digits_context: Any, backend: str) -> None:
    ice = ICE(max_iter=50, backend=backend)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(digits_context.train.n, 600, replace=False))
    seq = ice.fit(replace(digits_context, cache=None, n_jobs=1), idx, seed=0)
    par = ice.fit(replace(digits_context, cache=None, n_jobs=2), idx, seed=0)
    assert list(par.nmfs) == list(seq.nmfs)
    for c in seq.nmfs:
        np.testing.assert_array_equal(par.nmfs[c].components_, seq.nmfs[c].components_)
        assert par.nmfs[c].reconstruction_err_ == seq.nmfs[c].reconstruction_err_


def test_checkpoints_are_keyed_by_the_class_rows(digits_context: Any, tmp_path: Path) -> None:
    # Two coresets that share class 0's rows but differ elsewhere share class 0's checkpoint only.
    ctx = replace(digits_context, cache=ArtifactCache(tmp_path), n_jobs=1)
    labels = ctx.train.labels
    first = np.sort(np.concatenate([np.flatnonzero(labels == c)[:5] for c in range(10)]))
    second = np.sort(np.concatenate([np.flatnonzero(labels == c)[: 5 if c == 0 else 6] for c in range(10)]))
    ICE(max_iter=20).fit(ctx, first, seed=0)
    again = _Recording(max_iter=20)
    again.fit(ctx, second, seed=0)
    assert again.fitted == list(range(1, 10))
    other_seed = _Recording(max_iter=20)
    other_seed.fit(ctx, first, seed=1)
    assert other_seed.fitted == list(range(10))
