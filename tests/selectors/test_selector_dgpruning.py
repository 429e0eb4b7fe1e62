"""Known-answer tests for ``dgpruning`` (SPEC 1, steps 1-5), on a graph small enough to work out by hand."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from coreset_interp.selectors import get_selector
from coreset_interp.selectors.dgpruning import d2_message_passing, knn_search, symmetric_graph

# Five 1-D points, k = 1, gamma_r = 0.1.
#   positions  0   1   2   3   4
#   x          0   4   8  11  12        mean 7
#   s          7   3   1   4   5        step 1: |x - 7|
# Step 2, 1-NN (self excluded): 0 -> 1 (d 4); 1 -> 0 (d 4, tied with 2 at d 4: lowest position wins);
#   2 -> 3 (d 3); 3 -> 4 (d 1); 4 -> 3 (d 1).
#   Symmetrised: N(0) = {1}, N(1) = {0}, N(2) = {3}, N(3) = {2, 4}, N(4) = {3}.
# Step 3: kNN distances [4, 4, 3, 1, 1] -> tau = median = 3; d~01 = 4/3, d~23 = 1, d~34 = 1/3.
# Step 4: s'0 = 7 + e^(-4/3) 3           = 7.790792
#         s'1 = 3 + e^(-4/3) 7           = 4.845182
#         s'2 = 1 + e^(-1) 4             = 2.471518
#         s'3 = 4 + e^(-1) 1 + e^(-1/3) 5 = 7.950536
#         s'4 = 5 + e^(-1/3) 4           = 7.866125
# Step 5: pick 3 (7.950536); s'2 -= e^(-0.1) 7.950536 -> -4.722423, s'4 -= e^(-0.1/3) 7.950536 -> 0.176239.
#         pick 0 (7.790792); s'1 -= e^(-0.4/3) 7.790792 -> -1.973109.
#         pick 4 (0.176239); its only neighbour 3 is selected.
#         pick 1 (-1.973109), then 2.
# Plain ranking by s would start 0, 4: the forward pass lifts 3 (two close, high-score neighbours) and the
# reverse pass then pushes its neighbour 4 below 0.
X_HAND = np.array([0.0, 4.0, 8.0, 11.0, 12.0])[:, None]
ORDER_HAND = [3, 0, 4, 1, 2]


def test_hand_worked_pick_order() -> None:
    assert d2_message_passing(X_HAND, 5, k=1, gamma_r=0.1).tolist() == ORDER_HAND


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_hand_worked_selection_through_the_selector(m: int) -> None:
    idx = get_selector("dgpruning", k=1, gamma_r=0.1).select(X_HAND, np.zeros(5, dtype=int), m / 5)
    assert idx.tolist() == sorted(ORDER_HAND[:m])


def test_hand_worked_graph() -> None:
    nbr, dist = knn_search(X_HAND, 1)
    assert nbr[:, 0].tolist() == [1, 0, 3, 4, 3]
    assert dist[:, 0].tolist() == [4.0, 4.0, 3.0, 1.0, 1.0]
    indptr, indices, d = symmetric_graph(nbr, dist)
    neighbours = [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(5)]
    assert neighbours == [[1], [0], [3], [2, 4], [3]]
    # edges in CSR order: 0-1, 1-0, 2-3, 3-2, 3-4, 4-3
    assert d.tolist() == [4.0, 4.0, 3.0, 3.0, 1.0, 1.0]


def test_knn_ties_go_to_the_lowest_index() -> None:
    # Point 0 at 0 has 1 and 2 at distance 1 and 3 at distance 2: with k = 2 both 1 and 2; with k = 1 only 1.
    x = np.array([0.0, -1.0, 1.0, 2.0])[:, None]
    assert knn_search(x, 1)[0][0].tolist() == [1]
    # Point 3 at 2: 2 (d 1), then 0 (d 2) ... k = 2 -> {0, 2}, sorted.
    assert knn_search(x, 2)[0][3].tolist() == [0, 2]
    # Many exact ties: every other point of a regular simplex is equally far (6 * I keeps the centred
    # coordinates, 5 and -1, and so every computed distance exact).
    nbr, _ = knn_search(6.0 * np.eye(6), 3)
    assert nbr[0].tolist() == [1, 2, 3] and nbr[5].tolist() == [0, 1, 2]


def test_chunked_knn_equals_one_block() -> None:
    rng = np.random.default_rng(0)
    x = np.maximum(0.0, rng.normal(size=(97, 16)))
    full = knn_search(x, 5)
    for block in (1, 7, 50):
        chunked = knn_search(x, 5, block_rows=block)
        np.testing.assert_array_equal(full[0], chunked[0])
        np.testing.assert_array_equal(full[1], chunked[1])


def test_knn_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 8))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    expected = np.sort(np.argsort(d, axis=1, kind="stable")[:, :5], axis=1)
    nbr, dist = knn_search(x, 5)
    np.testing.assert_array_equal(nbr, expected)
    np.testing.assert_allclose(dist, np.take_along_axis(d, nbr, axis=1), rtol=1e-12)


def test_graph_is_symmetric() -> None:
    rng = np.random.default_rng(2)
    nbr, dist = knn_search(rng.normal(size=(40, 3)), 3)
    indptr, indices, d = symmetric_graph(nbr, dist)
    edges = {
        (i, int(j)): w
        for i in range(40)
        for j, w in zip(indices[indptr[i] : indptr[i + 1]], d[indptr[i] : indptr[i + 1]], strict=True)
    }
    for (i, j), w in edges.items():
        assert edges[(j, i)] == w
    for i in range(40):  # kNN edges all survive
        assert set(nbr[i].tolist()) <= {j for (a, j) in edges if a == i}


def test_invariant_to_scale_rotation_and_translation() -> None:
    # tau normalisation makes the method scale-free; Euclidean distances make it rotation-free.
    rng = np.random.default_rng(3)
    x = np.maximum(0.0, rng.normal(size=(80, 6)) + rng.integers(0, 3, size=(80, 1)))
    labels = np.zeros(80, dtype=int)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    sel = get_selector("dgpruning")
    a = sel.select(x, labels, 0.2)
    np.testing.assert_array_equal(a, sel.select(x * 1000.0, labels, 0.2))
    np.testing.assert_array_equal(a, sel.select(x @ q + 3.0, labels, 0.2))


def test_large_distances_do_not_underflow() -> None:
    # GAP-like distances ~100: without tau every exp(-d) would be 0 and this would equal plain ranking.
    x = X_HAND * 100.0
    assert d2_message_passing(x, 5, k=1).tolist() == ORDER_HAND


def test_small_classes_fall_back_to_random_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    x = np.arange(5, dtype=float)[:, None]
    sel = get_selector("dgpruning", k=5)
    with caplog.at_level(logging.WARNING, logger="coreset_interp.selectors.dgpruning"):
        a = sel.select(x, np.zeros(5, dtype=int), 0.4, seed=0)
    assert "n_c <= k" in caplog.text
    assert len(a) == 2
    expected = get_selector("random").select(x, np.zeros(5, dtype=int), 0.4, seed=0)
    np.testing.assert_array_equal(a, expected)


def test_zero_distances_are_handled() -> None:
    # All samples identical: tau = 0 would divide by zero; the selector must still return m samples.
    x = np.ones((10, 4))
    idx = get_selector("dgpruning", k=2).select(x, np.zeros(10, dtype=int), 0.3)
    assert len(idx) == 3


def test_rejects_bad_hyperparameters() -> None:
    for bad in ({"k": 0}, {"k": 2.5}, {"k": True}, {"gamma_r": -1.0}, {"gamma_r": float("nan")}):
        with pytest.raises(ValueError):
            get_selector("dgpruning", **bad)


def test_params_round_trip() -> None:
    assert get_selector("dgpruning", k=7, gamma_r=0.5).params() == {"k": 7, "gamma_r": 0.5}
