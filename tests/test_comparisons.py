"""The class-outer comparison loop (coreset_interp.metrics.compare): equal to the per-fit formula, resumable
from its per-class cache after a failure mid-loop, and with peak memory independent of the class count.

Real ICE fits on small synthetic activation stores (non-negative maps with per-class low-rank structure),
so that the class count can be varied freely."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_interp.cache import ArtifactCache
from coreset_interp.interpreters import InterpretContext, get_interpreter
from coreset_interp.metrics.compare import COMPARISON_DIR, ComparedFit, PhiComparer, compare_class_outer
from coreset_interp.metrics.shape import angular_distance
from coreset_interp.models.activations import ActivationStore
from tests.helpers import store_from_maps

D, H, W = 32, 4, 4


def synthetic_store(folder: Path, n_classes: int, per_class: int, seed: int) -> ActivationStore:
    """Non-negative maps with a rank-3 structure per class (as the bench's ImageNet-shaped store)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    maps, labels = [], []
    for c in range(n_classes):
        basis = np.abs(np.random.default_rng(1000 + c).standard_normal((3, D)))
        codes = np.abs(rng.standard_normal((per_class * H * W, 3)))
        x = codes @ basis + 0.05 * np.abs(rng.standard_normal((per_class * H * W, D)))
        maps.append(x.reshape(per_class, H, W, D).transpose(0, 3, 1, 2))
        labels.append(np.full(per_class, c))
    return store_from_maps(folder, np.concatenate(maps), np.concatenate(labels), n_classes)


def make_ctx(tmp: Path, n_classes: int, val_per_class: int = 12) -> InterpretContext:
    train = synthetic_store(tmp / f"train{n_classes}", n_classes, 8, seed=1)
    val = synthetic_store(tmp / f"val{n_classes}", n_classes, val_per_class, seed=2)
    # ICE reads only the stores: no model or dataset is needed for its fits and maps.
    return InterpretContext(
        model=None,  # type: ignore[arg-type]
        dataset=None,  # type: ignore[arg-type]
        train=train,
        val=val,
        device=torch.device("cpu"),
        cache=ArtifactCache(tmp / "cache"),
        model_key=f"synthetic{n_classes}",
        progress=False,
    )


def ice_fits(ctx: InterpretContext) -> tuple:
    interp = get_interpreter("ice", n_components=3, max_iter=15)
    labels = ctx.train.labels
    full = interp.fit(ctx, np.arange(ctx.train.n), 0)
    subsets = [np.flatnonzero(np.arange(ctx.train.n) % k == 0) for k in (2, 3)]
    # Every class keeps at least one image in each subset (8 per class, every 2nd / 3rd).
    assert all(len(np.unique(labels[s])) == len(np.unique(labels)) for s in subsets)
    others = [interp.fit(ctx, s, 0) for s in subsets]
    return interp, full, others


def test_class_outer_equals_direct_formula_and_per_class(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, 3)
    interp, full, others = ice_fits(ctx)
    compared = compare_class_outer(
        interp, ctx, full, "full", [ComparedFit(f, f"k{i}") for i, f in enumerate(others)], 0.5
    )
    comparer = PhiComparer(interp, ctx, full, 0.5)
    for fit, per_class in zip(others, compared, strict=True):
        assert sorted(per_class) == [0, 1, 2]
        assert comparer.per_class(fit) == per_class
        for c, value in per_class.items():
            idx = ctx.val.class_indices(c)
            expected = angular_distance(interp.maps(full, ctx, idx), interp.maps(fit, ctx, idx), 0.5)
            assert value.phi is not None and abs(value.phi - expected) <= 1e-12
    # The torch backend gives the same numbers.
    torch_compared = PhiComparer(interp, ctx, full, 0.5, backend="torch").compare_many(
        [ComparedFit(f) for f in others]
    )
    for a, b in zip(compared, torch_compared, strict=True):
        assert all(abs(a[c].phi - b[c].phi) <= 1e-9 for c in a)


def test_failure_mid_loop_resumes_from_cached_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx(tmp_path, 4)
    interp, full, others = ice_fits(ctx)
    reference = compare_class_outer(interp, ctx, full, None, [ComparedFit(f) for f in others], 0.5)
    keyed = [ComparedFit(f, f"fit{i}") for i, f in enumerate(others)]

    calls: list[tuple[int, int]] = []  # (fit number: 0 = full, class)
    real_maps = type(interp).maps

    def counting_maps(self, fit, c_ctx, indices, *, fail_at: int | None = None):  # noqa: ANN001, ANN202
        c = int(c_ctx.val.labels[indices[0]])
        calls.append((next(i for i, f in enumerate([full, *others]) if f is fit), c))
        if fail_at is not None and c == fail_at:
            raise RuntimeError(f"injected failure at class {c}")
        return real_maps(self, fit, c_ctx, indices)

    monkeypatch.setattr(type(interp), "maps", lambda *a: counting_maps(*a, fail_at=2))
    with pytest.raises(RuntimeError, match="class 2"):
        compare_class_outer(interp, ctx, full, "full", keyed, 0.5)
    logs = sorted((tmp_path / "cache" / COMPARISON_DIR).glob("*.jsonl"))
    assert len(logs) == 2
    for path in logs:
        assert [json.loads(line)["class"] for line in path.read_text().splitlines()] == [0, 1]
    # A torn last line (a kill mid-write) is ignored: that class is recomputed.
    with open(logs[0], "a") as fh:
        fh.write('{"class": 2, "ph')

    calls.clear()
    monkeypatch.setattr(type(interp), "maps", lambda *a: counting_maps(*a))
    resumed = compare_class_outer(interp, ctx, full, "full", keyed, 0.5)
    assert {c for _, c in calls} == {2, 3}, "classes 0 and 1 must come from the cache"
    # The full side of each recomputed class is transformed once, each other fit once per class.
    assert sorted(calls) == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3)]
    assert resumed == reference

    calls.clear()
    assert compare_class_outer(interp, ctx, full, "full", keyed, 0.5) == reference
    assert calls == []


def _loop_peak(tmp: Path, n_classes: int) -> tuple[int, float]:
    ctx = make_ctx(tmp, n_classes, val_per_class=40)
    interp, full, others = ice_fits(ctx)
    fits = [ComparedFit(f, f"fit{i}") for i, f in enumerate(others)]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        compared = compare_class_outer(interp, ctx, full, "full", fits, 0.5)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert all(len(per_class) == n_classes for per_class in compared)
    return peak, float(np.mean([v.phi for v in compared[0].values()]))


def test_peak_memory_does_not_grow_with_class_count(tmp_path: Path) -> None:
    peak_4, phi_4 = _loop_peak(tmp_path / "c4", 4)
    peak_16, phi_16 = _loop_peak(tmp_path / "c16", 16)
    assert math.isfinite(phi_4) and math.isfinite(phi_16)
    # One class's prepared full side is 640 x 32 float64 = 164 kB; keeping all of them (the old loop) would
    # add 12 x 164 kB = 2 MB at 16 classes.
    one_class = 40 * H * W * D * 8
    assert peak_16 <= 1.3 * peak_4, (peak_4, peak_16)
    assert peak_16 - peak_4 < 2 * one_class, (peak_4, peak_16)
