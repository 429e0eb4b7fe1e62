"""Known-answer tests for ``kcenter``: greedy farthest-point selection from the sample nearest the mean."""

from __future__ import annotations

import numpy as np
import pytest

from coreset_interp.selectors import get_selector
from coreset_interp.selectors.kcenter import kcenter_greedy


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        # x = [0, 1, 2, 3, 10], mean 3.2 -> start at 3 (position 3, distance 0.2).
        # Farthest from {3}: 10 (7) -> position 4. Distances to {3, 10}: 0 -> 3, 1 -> 2, 2 -> 1 -> position 0.
        # Distances to {0, 3, 10}: 1 -> 1, 2 -> 1: a tie, the lowest position (1) wins.
        (0.2, [3]),
        (0.4, [3, 4]),
        (0.6, [0, 3, 4]),
        (0.8, [0, 1, 3, 4]),
    ],
)
def test_points_on_a_line(ratio: float, expected: list[int]) -> None:
    feats = np.array([0.0, 1.0, 2.0, 3.0, 10.0])[:, None]
    assert get_selector("kcenter").select(feats, np.zeros(5, dtype=int), ratio).tolist() == expected


def test_corners_of_a_square_pick_order() -> None:
    # Corners (0,0), (4,0), (0,4), (4,4) and the centre (2,2), which is the mean -> first.
    # All corners are sqrt(8) from it: tie -> position 0. Then (4,0), (0,4), (4,4) are all sqrt(8)
    # from the selected set -> position 1; then (0,4), (4,4) both at sqrt(8) -> position 2; then 3.
    feats = np.array([[0, 0], [4, 0], [0, 4], [4, 4], [2, 2]], dtype=float)
    assert kcenter_greedy(feats, 5).tolist() == [4, 0, 1, 2, 3]


def test_two_clusters_and_an_outlier() -> None:
    # Cluster A: (0,0), (1,0), (0,1); cluster B: (10,0), (11,0), (10,1); outlier (0,30).
    # Mean (32/7, 32/7); 49 x squared distances to it: 2048, 1649, 1649, 2468, 3049, 2069, 32708
    # -> tie between positions 1 and 2, the lowest (1) starts.
    # Squared distances from (1,0): outlier 901 is the largest -> position 6.
    # Min squared distance to {(1,0), (0,30)}: (0,0) 1, (0,1) 2, (10,0) 81, (11,0) 100, (10,1) 82
    # -> position 4.
    pts = np.array([[0, 0], [1, 0], [0, 1], [10, 0], [11, 0], [10, 1], [0, 30]], dtype=float)
    assert kcenter_greedy(pts, 3).tolist() == [1, 6, 4]


def test_duplicates_never_picked_twice() -> None:
    feats = np.zeros((6, 3))
    idx = get_selector("kcenter").select(feats, np.zeros(6, dtype=int), 0.5)
    assert idx.tolist() == [0, 1, 2]


def test_covering_radius_beats_random() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 5))
    labels = np.zeros(300, dtype=int)

    def radius(idx: np.ndarray) -> float:
        d = np.linalg.norm(feats[:, None, :] - feats[None, idx, :], axis=2)
        return float(d.min(axis=1).max())

    kc = radius(get_selector("kcenter").select(feats, labels, 0.1))
    rnd = np.mean([radius(get_selector("random").select(feats, labels, 0.1, seed=s)) for s in range(5)])
    assert kc < rnd
