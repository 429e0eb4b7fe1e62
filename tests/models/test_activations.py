"""The activation store of a split: streamed to .npy files, read back memory-mapped, per class or by index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from coreset_interp.cache import ArtifactCache
from coreset_interp.models import get_model
from coreset_interp.models.activations import ActivationStore, extract_activations
from coreset_interp.pipeline import activations_for


def test_store_shapes_and_memory_map(digits_workspace) -> None:
    ws = digits_workspace
    for store, n in ((ws.train, 1437), (ws.val, 360)):
        assert store.n == n
        # resnet18 with the small stem on 32x32 digits: 512 channels on a 2x2 grid.
        assert store.map_shape == (512, 2, 2)
        assert store.maps.shape == (n, 512, 2, 2) and store.maps.dtype == np.float32
        # Maps are read from disk on demand, never loaded whole.
        assert isinstance(store.maps, np.memmap)
        assert store.g.shape == (n, 512) and store.g.dtype == np.float32
        # Only the val split keeps logits (VEBI's intact probabilities); train logits are never read.
        assert (store.logits is None) if store is ws.train else (store.logits.shape == (n, 10))
        assert store.labels.dtype == np.int64 and store.preds.dtype == np.int64
        np.testing.assert_array_equal(store.classes(), np.arange(10))
    np.testing.assert_array_equal(ws.train.labels, ws.dataset.labels("train"))
    np.testing.assert_array_equal(ws.val.labels, ws.dataset.labels("val"))


def test_g_is_the_spatial_mean_of_the_maps(digits_workspace) -> None:
    store = digits_workspace.train
    maps = np.asarray(store.maps)
    np.testing.assert_allclose(store.g, maps.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    # Post-ReLU maps.
    assert maps.min() >= 0.0


def test_preds_are_the_models_predictions(digits_workspace) -> None:
    ws = digits_workspace
    np.testing.assert_array_equal(ws.val.preds, ws.val.logits.argmax(1))
    x = ws.dataset.split("val").tensors[0]
    with torch.no_grad():
        logits = ws.model(x.to(ws.device)).cpu().numpy()
    np.testing.assert_allclose(ws.val.logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ws.val.preds, logits.argmax(1))


def test_read_maps_and_positions_keep_the_requested_order(digits_workspace) -> None:
    store = digits_workspace.val
    idx = np.array([7, 2, 300, 2, 0])
    # A small chunk forces several slices of the memory map.
    maps = store.read_maps(idx, chunk=2)
    assert maps.dtype == np.float32 and maps.shape == (5, 512, 2, 2)
    for row, i in enumerate(idx):
        np.testing.assert_array_equal(maps[row], store.maps[i])
    pos = store.positions(idx)
    # Image-major rows over (h, w) positions, channels as columns.
    assert pos.shape == (5 * 4, 512)
    for row, i in enumerate(idx):
        for y in range(2):
            for x in range(2):
                np.testing.assert_array_equal(pos[row * 4 + y * 2 + x], store.maps[i][:, y, x])


def test_class_indices(digits_workspace) -> None:
    store = digits_workspace.val
    for c in range(10):
        idx = store.class_indices(c)
        np.testing.assert_array_equal(idx, np.flatnonzero(store.labels == c))
        assert np.all(np.diff(idx) > 0)
    assert sum(len(store.class_indices(c)) for c in range(10)) == store.n


def test_streamed_extraction_float32_and_float16(digits_workspace, tmp_path: Path) -> None:
    ws = digits_workspace
    # 37 images in batches of 8: the last batch is partial.
    data = Subset(ws.dataset.split("val"), list(range(37)))
    x = torch.stack([data[i][0] for i in range(37)])
    with torch.no_grad():
        a = ws.model.features(x).numpy()
    stores = {}
    for dtype in ("float32", "float16"):
        folder = tmp_path / dtype
        folder.mkdir()
        meta = extract_activations(
            ws.model, data, folder, ws.device, batch_size=8, dtype=dtype, progress=False
        )
        assert {k: meta[k] for k in ("n", "map_shape", "dtype", "chunks")} == {
            "n": 37,
            "map_shape": [512, 2, 2],
            "dtype": dtype,
            "chunks": [[0, 37]],
        }
        stores[dtype] = ActivationStore.open(folder)
    s32, s16 = stores["float32"], stores["float16"]
    np.testing.assert_allclose(s32.maps, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(s32.labels, ws.val.labels[:37])
    assert s16.maps.dtype == np.float16
    # float16 halves the file; GAP vectors and logits stay float32; reads come back as float32.
    assert (s16.path / "maps.npy").stat().st_size < 0.6 * (s32.path / "maps.npy").stat().st_size
    assert s16.g.dtype == np.float32 and s16.logits.dtype == np.float32
    got = s16.read_maps(np.arange(37))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(s16.g, s32.g)


def test_extraction_rejects_bad_input(digits_workspace, tmp_path: Path) -> None:
    ws = digits_workspace
    with pytest.raises(ValueError, match="dtype"):
        extract_activations(ws.model, ws.dataset.split("val"), tmp_path, ws.device, dtype="int8")
    with pytest.raises(ValueError, match="empty"):
        extract_activations(ws.model, Subset(ws.dataset.split("val"), []), tmp_path, ws.device)


def test_cache_key_follows_the_model_spec(digits_workspace, make_config, tmp_path: Path) -> None:
    ws = digits_workspace
    cfg = make_config()
    cache = ArtifactCache(tmp_path / "cache")
    mspec = get_model(**cfg["model"]).spec(ws.dataset)
    # The key hashes the specification only, so a fresh cache folder gives the session's key.
    store, key = activations_for(cache, ws.model, mspec, ws.dataset, "val", ws.device, cfg)
    assert key == ws.activation_keys["val"]
    np.testing.assert_array_equal(store.g, ws.val.g)
    again, key_again = activations_for(cache, ws.model, mspec, ws.dataset, "val", ws.device, cfg)
    assert key_again == key and [r.computed for r in cache.records] == [True, False]
    # Another model (here: another training seed) or another split: another key.
    other = get_model(**make_config(["model.train.seed=1"])["model"]).spec(ws.dataset)
    assert other != mspec
    _, key_other = activations_for(cache, ws.model, other, ws.dataset, "val", ws.device, cfg)
    assert key_other != key
    assert ws.activation_keys["train"] != key
