"""The artifact cache's contract: compute once, then hit; keys ignore dict order; failures leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coreset_interp.cache import ArtifactCache, spec_key


def test_computes_once_then_hits(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    calls: list[Path] = []

    def compute(folder: Path) -> None:
        calls.append(folder)
        (folder / "value.txt").write_text("42")

    spec = {"model": "resnet18", "split": "train"}
    path, computed = cache.get_or_compute("activations", spec, compute)
    assert computed is True and len(calls) == 1
    assert path == tmp_path / "activations" / spec_key(spec)
    assert (path / "value.txt").read_text() == "42"
    # The spec is stored beside the artifact, for humans and for debugging.
    assert json.loads((path / "spec.json").read_text()) == spec
    assert cache.exists("activations", spec_key(spec))

    again, computed = ArtifactCache(tmp_path).get_or_compute("activations", spec, compute)
    assert again == path and computed is False and len(calls) == 1
    # Another kind with the same spec is another artifact.
    _, computed = cache.get_or_compute("coreset", spec, compute)
    assert computed is True and len(calls) == 2


def test_pickle_artifacts_round_trip(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    value, computed = cache.get_or_compute_pickle("fit", {"k": 1}, lambda: {"components": [1.5, 2.5]})
    assert computed and value == {"components": [1.5, 2.5]}
    value, computed = cache.get_or_compute_pickle("fit", {"k": 1}, lambda: pytest.fail("recomputed"))
    assert not computed and value == {"components": [1.5, 2.5]}


def test_key_ignores_dict_order_but_not_values() -> None:
    a = {"model": {"arch": "resnet18", "seed": 0}, "ratio": 0.2}
    b = {"ratio": 0.2, "model": {"seed": 0, "arch": "resnet18"}}
    assert spec_key(a) == spec_key(b)
    assert len(spec_key(a)) == 20 and int(spec_key(a), 16) >= 0
    assert spec_key(a) != spec_key({**a, "ratio": 0.3})
    assert spec_key(a) != spec_key({**a, "model": {"arch": "resnet18", "seed": 1}})


def test_failed_compute_leaves_no_artifact_and_no_temp_dir(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        cache.get_or_compute("checkpoint", {"x": 1}, broken)
    folder = tmp_path / "checkpoint"
    assert not cache.exists("checkpoint", spec_key({"x": 1}))
    # Only the lock file may remain: no final directory, no temporary one.
    assert [p for p in folder.iterdir() if not p.name.endswith(".lock")] == []
    # The next call computes it for real.
    _, computed = cache.get_or_compute("checkpoint", {"x": 1}, lambda f: (f / "ok").write_text("1"))
    assert computed


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown artifact kind"):
        ArtifactCache(tmp_path).path("weights", "abc")


def test_from_config_reads_the_cache_block_of_the_composed_config(tmp_path: Path) -> None:
    from tests.conftest import compose_config

    cfg = compose_config([f"cache_dir={tmp_path}", "cache.heartbeat=5s"])
    cache = ArtifactCache.from_config(cfg)
    # conf/config.yaml: lock_timeout 12h, stale_after 10m, on_damaged rebuild.
    assert (cache.lock_timeout, cache.stale_after, cache.heartbeat) == (43200.0, 600.0, 5.0)
    assert cache.on_damaged == "rebuild" and cache.root == tmp_path
    # No second copy of the defaults in the code: a config without the key is an error.
    del cfg["cache"]["heartbeat"]
    with pytest.raises(KeyError, match="heartbeat"):
        ArtifactCache.from_config(cfg)
