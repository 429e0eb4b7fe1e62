"""A damaged artifact heals or names itself: every artifact carries a manifest checked on open; a truncated
activation file, a truncated memory-mapped array and a garbage fit pickle are each rebuilt under the lock with
one warning naming the file, or (``on_damaged=error``) fail in one line naming the path and what to do.
Artifacts from before manifests still open."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coreset_interp.cache import ArtifactCache, DamagedArtifactError, DamagedArtifactWarning, spec_key
from coreset_interp.manifest import file_digest, verify_manifest


def _truncate(path: Path, keep: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(keep)


@pytest.fixture(scope="module")
def val_source(digits_workspace: Any, make_config: Any) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """The trained digits model, its spec, a small split of digits (90 val images: a quick extraction) and
    the composed job config of the extraction (one in-process batch, no progress bar)."""
    from coreset_interp.data.digits import DigitsDataset
    from coreset_interp.models import get_model

    small = DigitsDataset(image_size=32, val_fraction=0.05, split_seed=0)
    cfg = make_config(["batch_size=256", "num_workers=0", "progress=false"])
    return digits_workspace, get_model(**cfg["model"]).spec(digits_workspace.dataset), small, cfg


def _val_activations(source: tuple[Any, dict[str, Any], Any, dict[str, Any]], cache: ArtifactCache) -> Any:
    from coreset_interp.pipeline import activations_for

    ws, mspec, small, cfg = source
    store, key = activations_for(cache, ws.model, mspec, small, "val", ws.device, cfg)
    return store, cache.path("activations", key)


@pytest.mark.parametrize("name", ["maps.npy", "g.npy"])
def test_truncated_activation_file_is_rebuilt_with_one_warning(
    val_source: Any, tmp_path: Path, name: str
) -> None:
    """Truncate one file of the real val activations (maps.npy, memory-mapped on open, lives in its chunk's
    artifact; g.npy in the store's folder): the next open warns once naming that file and rebuilds that
    artifact; a third open reuses the rebuilt one silently."""
    cache = ArtifactCache(tmp_path / "cache")
    store, store_folder = _val_activations(val_source, cache)
    folder = store.part_path("maps", 0) if name == "maps.npy" else store_folder
    want_g, want_maps = np.array(store.g), np.array(store.maps)
    del store
    size = (folder / name).stat().st_size
    _truncate(folder / name, size // 2)
    with pytest.raises(Exception, match="(?i)mmap|read|size|shape|EOF|pickle"):
        np.load(folder / name, mmap_mode="r") if name == "maps.npy" else np.load(folder / name)

    fresh = ArtifactCache(tmp_path / "cache")
    with pytest.warns(DamagedArtifactWarning) as caught:
        store, again = _val_activations(val_source, fresh)
    assert again == store_folder
    msgs = [str(w.message) for w in caught if issubclass(w.category, DamagedArtifactWarning)]
    assert len(msgs) == 1 and str(folder / name) in msgs[0] and "rebuilding" in msgs[0], msgs
    np.testing.assert_array_equal(store.g, want_g)
    np.testing.assert_array_equal(store.maps, want_maps)
    assert (folder / name).stat().st_size == size and verify_manifest(folder) is None
    # g.npy: the store itself is rebuilt; maps.npy: its chunk is rebuilt and the store reused.
    assert [r.computed for r in fresh.records] == [name == "g.npy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedArtifactWarning)
        _val_activations(val_source, ArtifactCache(tmp_path / "cache"))
    assert not list(folder.parent.glob(".damaged-*")) and not list(folder.parent.glob(".tmp-*"))


def test_garbage_fit_pickle_is_rebuilt_or_names_itself(tmp_path: Path) -> None:
    """A fit pickle overwritten with garbage of the same size (the checksum, not the size, catches it):
    ``on_damaged=error`` fails in one line naming it and what to do; ``rebuild`` recomputes with a warning."""
    spec = {"interpreter": "ice", "what": "garbage"}
    calls: list[int] = []

    def compute() -> dict[str, Any]:
        calls.append(1)
        return {"W": np.arange(12.0).reshape(3, 4), "n": 3}

    root = tmp_path / "cache"
    value, computed = ArtifactCache(root).get_or_compute_pickle("fit", spec, compute)
    pkl = root / "fit" / spec_key(spec) / "object.pkl"
    size = pkl.stat().st_size
    pkl.write_bytes(b"invalid literal for int() " * (size // 26) + b"x" * (size % 26))
    assert pkl.stat().st_size == size

    with pytest.raises(DamagedArtifactError) as info:
        ArtifactCache(root, on_damaged="error").get_or_compute_pickle("fit", spec, compute)
    msg = str(info.value)
    assert "\n" not in msg and str(pkl) in msg and "checksum" in msg
    assert f"rm -rf {pkl.parent}" in msg and "cache.on_damaged=rebuild" in msg
    assert len(calls) == 1

    with pytest.warns(DamagedArtifactWarning, match=f"damaged artifact {pkl.parent}: {pkl} does not match"):
        again, computed = ArtifactCache(root).get_or_compute_pickle("fit", spec, compute)
    assert computed and len(calls) == 2
    np.testing.assert_array_equal(again["W"], value["W"])
    with open(pkl, "rb") as fh:
        assert pickle.load(fh)["n"] == 3


def test_truncated_memmap_array_with_on_damaged_error_names_the_file(tmp_path: Path) -> None:
    """A memory-mapped array written as the extraction does (open_memmap), then truncated: one-line error."""
    root = tmp_path / "cache"

    def compute(folder: Path) -> None:
        arr = np.lib.format.open_memmap(folder / "maps.npy", mode="w+", dtype=np.float16, shape=(64, 8, 4, 4))
        arr[:] = 1.5
        arr.flush()
        del arr

    folder, _ = ArtifactCache(root).get_or_compute("activations", {"split": "train"}, compute)
    _truncate(folder / "maps.npy", 1000)
    with pytest.raises(DamagedArtifactError, match=f"{folder / 'maps.npy'} has 1000 bytes, expected"):
        ArtifactCache(root, on_damaged="error").get_or_compute("activations", {"split": "train"}, compute)
    with pytest.warns(DamagedArtifactWarning, match="maps.npy has 1000 bytes"):
        folder, computed = ArtifactCache(root).get_or_compute("activations", {"split": "train"}, compute)
    assert computed and float(np.load(folder / "maps.npy", mmap_mode="r")[-1, -1, -1, -1]) == 1.5


def test_manifest_checks_both_ends_of_a_big_file_and_missing_files(tmp_path: Path) -> None:
    """The digest covers the last MiB of a multi-MiB file (a change there is caught, a change in the middle
    is not: that is the price of a cheap check); a removed file is named."""
    root = tmp_path / "cache"

    def compute(folder: Path) -> None:
        (folder / "big.bin").write_bytes(bytes(5 << 20))
        (folder / "small.json").write_text("{}")

    folder, _ = ArtifactCache(root).get_or_compute("coreset", {"k": 1}, compute)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"big.bin", "small.json", "spec.json"}
    assert manifest["files"]["big.bin"]["digest"] == file_digest(folder / "big.bin")
    with open(folder / "big.bin", "r+b") as fh:
        fh.seek(3 << 20)
        fh.write(b"\x01")  # middle: not read by the cheap check
    assert verify_manifest(folder) is None
    with open(folder / "big.bin", "r+b") as fh:
        fh.seek((5 << 20) - 10)
        fh.write(b"\x01")
    assert "big.bin does not match its checksum" in str(verify_manifest(folder))
    os.remove(folder / "small.json")
    assert verify_manifest(folder) is not None


def test_artifact_without_manifest_still_opens(tmp_path: Path) -> None:
    """An artifact published before manifests existed is reused as it is (unverified), not rebuilt; a
    garbage pickle in one is still caught when it cannot be read."""
    root = tmp_path / "cache"
    spec = {"old": True}
    old = root / "fit_full" / spec_key(spec)
    old.mkdir(parents=True)
    with open(old / "object.pkl", "wb") as fh:
        pickle.dump({"legacy": 1}, fh)
    (old / "spec.json").write_text(json.dumps(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedArtifactWarning)
        value, computed = ArtifactCache(root).get_or_compute_pickle("fit_full", spec, lambda: {"new": 1})
    assert value == {"legacy": 1} and not computed and not (old / "manifest.json").exists()

    (old / "object.pkl").write_bytes(b"garbage")
    with pytest.warns(DamagedArtifactWarning, match="object.pkl|cannot be read"):
        value, computed = ArtifactCache(root).get_or_compute_pickle("fit_full", spec, lambda: {"new": 1})
    assert value == {"new": 1} and computed and (old / "manifest.json").is_file()
