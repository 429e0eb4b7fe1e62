"""DGPruning builds each class's kNN graph once and reuses it for every rho, with unchanged selections."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from coreset_interp.selectors import dgpruning, get_selector


@pytest.fixture()
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [60, 45, 80])
    feats = rng.normal(size=(len(labels), 16)) * 5 + labels[:, None] * 10.0
    return feats.astype(np.float32), labels


def test_graph_built_once_per_class_and_selections_unchanged(
    blobs: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    feats, labels = blobs
    ratios = [0.05, 0.1, 0.3, 0.5, 0.95]
    # Today's behaviour: a fresh selector (and graph) per rho.
    fresh = [get_selector("dgpruning").select(feats, labels, r, seed=0) for r in ratios]
    built: list[int] = []
    real = dgpruning.knn_search

    def counting(x: np.ndarray, k: int, block_rows: Any = None) -> Any:
        built.append(len(x))
        return real(x, k, block_rows)

    monkeypatch.setattr(dgpruning, "knn_search", counting)
    sel = get_selector("dgpruning")
    reused = [sel.select(feats, labels, r, seed=0) for r in ratios]
    for a, b in zip(fresh, reused, strict=True):
        np.testing.assert_array_equal(a, b)
    # One graph per class over all five ratios.
    assert sorted(built) == [45, 60, 80]
    # Other features (another model's, another class content) get their own graphs.
    sel.select(feats * 2.0, labels, 0.3, seed=0)
    assert len(built) == 6


def test_pipeline_reuses_one_selector_per_job(digits_workspace: Any, make_config: Any) -> None:
    from coreset_interp.pipeline import select_coreset

    cfg = make_config(["selector=dgpruning"])
    a, _, key_a = select_coreset(digits_workspace, cfg, 0.1, 0)
    b, _, key_b = select_coreset(digits_workspace, cfg, 0.3, 0)
    # Other tests share the session workspace: count only this selector's entries.
    sels = [
        v
        for k, v in digits_workspace.extras.items()
        if isinstance(k, tuple) and k[0] == "selector" and getattr(v, "name", None) == "dgpruning"
    ]
    assert len(sels) == 1 and key_a != key_b and len(a) < len(b)
