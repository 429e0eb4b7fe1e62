"""Known-answer tests for ``moderate``: the middle window of the distances to the class mean."""

from __future__ import annotations

import numpy as np
import pytest

from coreset_interp.selectors import get_selector
from coreset_interp.selectors.moderate import moderate_window


def _one_d(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)[:, None]


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        # x = [-5, -1, 0, 2, 4], mean 0, distances r = [5, 1, 0, 2, 4].
        # Ascending order of r: positions 2 (0), 1 (1), 3 (2), 4 (4), 0 (5).
        (0.2, [3]),  # m = 1, start = (5 - 1) // 2 = 2 -> order[2] = 3
        (0.4, [1, 3]),  # m = 2, start = 1 -> order[1:3] = 1, 3
        (0.6, [1, 3, 4]),  # m = 3, start = 1 -> order[1:4] = 1, 3, 4
        (0.8, [1, 2, 3, 4]),  # m = 4, start = 0 -> order[0:4]: drops the farthest, 0
        (1.0, [0, 1, 2, 3, 4]),
    ],
)
def test_middle_window_by_hand(ratio: float, expected: list[int]) -> None:
    feats = _one_d([-5, -1, 0, 2, 4])
    idx = get_selector("moderate").select(feats, np.zeros(5, dtype=int), ratio)
    assert idx.tolist() == expected


def test_ties_keep_index_order() -> None:
    # x = [-2, 2, -1, 1, 0], mean 0, r = [2, 2, 1, 1, 0]; stable order: 4, 2, 3, 0, 1.
    r = np.abs(np.array([-2.0, 2.0, -1.0, 1.0, 0.0]))
    assert moderate_window(r, 1).tolist() == [3]  # start 2
    assert moderate_window(r, 2).tolist() == [2, 3]  # start 1
    assert moderate_window(r, 3).tolist() == [2, 3, 0]  # start 1: position 0 beats its tie 1


def test_uses_the_class_mean_not_the_median_and_works_per_class() -> None:
    # Class 7: x = [0, 1, 2, 3, 14] -> mean 4 (median would be 2), r = [4, 3, 2, 1, 10];
    # order 3, 2, 1, 0, 4; m = 1 (rho 0.2) -> start 2 -> position 1.
    # With the median as centre r would be [2, 1, 0, 1, 12] and the middle sample position 3.
    # Class 1 (2-D, interleaved): points (0,0), (3,4), (6,8) -> mean (3,4), r = [5, 0, 5];
    # order 1, 0, 2; m = 1 -> start 1 -> its position 0.
    feats = np.array([[0, 0], [0, 0], [1, 0], [2, 0], [3, 4], [3, 0], [6, 8], [14, 0]], dtype=float)
    labels = np.array([7, 1, 7, 7, 1, 7, 1, 7])
    idx = get_selector("moderate").select(feats, labels, 0.2)
    # class 7 positions -> global [0, 2, 3, 5, 7]; class 1 positions -> global [1, 4, 6]
    assert idx.tolist() == [1, 2]


def test_invariant_to_translation_and_rotation() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 4))
    labels = np.repeat([0, 1], 20)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    sel = get_selector("moderate")
    a = sel.select(feats, labels, 0.3)
    b = sel.select(feats @ q + 5.0, labels, 0.3)
    np.testing.assert_array_equal(a, b)
