"""Fashion-MNIST from tiny IDX files the tests write (gzip and plain), and its training targets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreset_interp.data import get_dataset
from coreset_interp.data.fashion_mnist import FashionMNISTDataset, read_idx


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root: Path, n_train: int = 30, n_val: int = 20, gz: bool = True, seed: int = 0) -> dict:
    """Random 28x28 images with labels cycling 0..9, under the four standard file names."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("val", "t10k", n_val)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{stem}-{kind}-ubyte"
            data = _idx(arr)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
        out[split] = (images, labels.astype(np.int64))
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_and_prepares_each_sample_like_digits(tmp_path: Path, gz: bool) -> None:
    raw = write_idx_set(tmp_path / "fm", gz=gz)
    np.testing.assert_array_equal(read_idx(next((tmp_path / "fm").glob("train-images*"))), raw["train"][0])
    ds = FashionMNISTDataset(root=str(tmp_path / "fm"))
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top" and ds.class_ids == list(range(10))
    np.testing.assert_array_equal(ds.labels("train"), raw["train"][1])
    np.testing.assert_array_equal(ds.labels("val"), raw["val"][1])
    images = raw["train"][0]
    mean, std = images.mean() / 255.0, images.std() / 255.0
    assert ds.mean == pytest.approx(mean) and ds.std == pytest.approx(std)
    x, y = ds.split("train")[3]
    assert y == 3 and x.shape == (3, 32, 32) and x.dtype == torch.float32
    ref = F.interpolate(
        torch.from_numpy(images[3] / 255.0).float()[None, None],
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    torch.testing.assert_close(x, ((ref - mean) / std).expand(3, 32, 32), atol=1e-5, rtol=1e-5)
    assert len(ds.split("val")) == 20


def test_caps_classes_and_fingerprint(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "fm")
    full = FashionMNISTDataset(root=str(tmp_path / "fm"))
    capped = FashionMNISTDataset(root=str(tmp_path / "fm"), max_per_class_train=2, max_per_class_val=1)
    np.testing.assert_array_equal(capped.labels("train"), np.tile(np.arange(10), 2))
    np.testing.assert_array_equal(capped.labels("val"), np.arange(10))
    sub = FashionMNISTDataset(root=str(tmp_path / "fm"), classes=["Bag", 2])
    assert sub.class_ids == [2, 8] and set(sub.labels("train")) == {2, 8} and sub.num_classes == 10
    assert FashionMNISTDataset(root=str(tmp_path / "fm"), classes=3).class_ids == [0, 1, 2]
    prints = {str(d.fingerprint()) for d in (full, capped, sub)}
    assert len(prints) == 3
    # Rewritten files (other contents, same names) change the identity.
    write_idx_set(tmp_path / "fm", n_train=40, seed=1)
    assert FashionMNISTDataset(root=str(tmp_path / "fm")).fingerprint() != full.fingerprint()


def test_missing_files_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    how = r"no IDX files .*nowhere.*apt-get install dataset-fashion-mnist.*FASHION_MNIST_ROOT"
    with pytest.raises(FileNotFoundError, match=how):
        FashionMNISTDataset(root=str(tmp_path / "nowhere"))
    write_idx_set(tmp_path / "env")
    monkeypatch.setenv("FASHION_MNIST_ROOT", str(tmp_path / "env"))
    assert len(FashionMNISTDataset().labels("train")) == 30


def test_dataset_states_its_training_targets(tmp_path: Path, make_config) -> None:
    write_idx_set(tmp_path / "fm")
    fm = make_config(["dataset=fashion_mnist", f"dataset.root={tmp_path / 'fm'}"])
    assert fm["model"]["train"]["target_accuracy"] == 0.90 and fm["model"]["train"]["min_accuracy"] == 0.88
    assert fm["model"]["train"]["epochs"] == 3 and fm["model"]["train"]["max_per_class"] == 1000
    digits = make_config([])["model"]["train"]
    assert digits["target_accuracy"] == 0.97 and digits["min_accuracy"] == 0.95 and digits["epochs"] == 6
    assert make_config(["model=vgg19"])["model"]["train"]["epochs"] == 10
    ds = get_dataset(**fm["dataset"])
    assert ds.name == "fashion_mnist" and len(ds.labels("val")) == 20


def test_training_budget_caps_the_training_data(tmp_path: Path) -> None:
    from coreset_interp.data.classes import capped_split

    write_idx_set(tmp_path / "fm")
    ds = FashionMNISTDataset(root=str(tmp_path / "fm"))
    sub = capped_split(ds, "train", 2)
    assert len(sub) == 20 and sorted(int(sub[i][1]) for i in range(20)) == sorted(list(range(10)) * 2)
    assert capped_split(ds, "train", None) is not None and len(capped_split(ds, "train", None)) == 30
