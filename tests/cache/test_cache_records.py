"""The records an artifact cache keeps for result.json: computed flags, and times that can be summed."""

from __future__ import annotations

import time
from pathlib import Path

from coreset_interp.cache import ArtifactCache


def test_records_flag_computed_and_reused(tmp_path: Path) -> None:
    """The first use computes, the second (another job's cache object) reuses."""
    first = ArtifactCache(tmp_path)
    value, computed = first.get_or_compute_pickle("coreset", {"rho": 0.1}, lambda: [1, 2, 3])
    assert (value, computed) == ([1, 2, 3], True)
    second = ArtifactCache(tmp_path)
    value, computed = second.get_or_compute_pickle("coreset", {"rho": 0.1}, lambda: [9])
    assert (value, computed) == ([1, 2, 3], False)
    assert [(r.kind, r.computed) for r in first.records] == [("coreset", True)]
    assert [(r.kind, r.computed) for r in second.records] == [("coreset", False)]
    assert first.records[0].key == second.records[0].key


def test_nested_compute_time_is_not_counted_twice(tmp_path: Path) -> None:
    """An artifact computed while computing another has its own record; the outer record excludes it."""
    cache = ArtifactCache(tmp_path)

    def inner() -> int:
        time.sleep(0.3)
        return 1

    def outer() -> int:
        cache.get_or_compute_pickle("activations", {"inner": 1}, inner)
        time.sleep(0.1)
        return 2

    cache.get_or_compute_pickle("fit", {"outer": 1}, outer)
    by_kind = {r.kind: r for r in cache.records}
    assert [r.kind for r in cache.records] == ["activations", "fit"]
    assert by_kind["activations"].seconds >= 0.3
    assert 0.1 <= by_kind["fit"].seconds < 0.3
